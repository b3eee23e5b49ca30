"""Enqueued and scheduled invocations: checking and storing them.

`golemish invoke --at TIME / --in DELAY` and ``POST .../invocations`` both end in
:func:`enqueue`, which checks the call now (an unknown function or bad argument
is refused at once, not when it is due) and stores it in the store's durable
queue (golemish.oplog.invocations). A running server's scheduler
(server/scheduler.py) runs it when it is due; without a server it waits in the
store until one starts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .errors import ArgumentError
from .executor import Runtime, parse_worker_id

_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
#: A schedule further ahead than this is surely a mistake (a timestamp in ms?).
MAX_DELAY_S = 366 * 86400.0


def parse_delay(text: str) -> float:
    """``10m``, ``1h30m``, ``2.5s``, ``500ms`` or plain seconds -> seconds."""
    t = text.strip().lower()
    try:
        seconds = float(t)
    except ValueError:
        parts = _PART.findall(t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise ArgumentError(f"--in {text!r}: expected a duration such as 30s, 10m, "
                                "1h30m or 500ms") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 <= seconds <= MAX_DELAY_S:
        raise ArgumentError(f"--in {text!r}: expected 0 to {MAX_DELAY_S / 86400:.0f} days")
    return seconds


def parse_at(text: str) -> float:
    """An ISO 8601 time (local time without an offset) or unix seconds -> unix seconds."""
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ArgumentError(f"--at {text!r}: expected an ISO 8601 time such as "
                            "2026-12-03T18:00 or 2026-12-03T18:00:00+01:00, or unix "
                            "seconds") from None


def check_due(at_s: float, now_s: float | None = None) -> int:
    """A due time in unix seconds -> ns, refusing one absurdly far away."""
    now_s = time.time() if now_s is None else now_s
    if not at_s - now_s <= MAX_DELAY_S or at_s < 0:
        raise ArgumentError(f"due time {at_s} is not within a year from now")
    return int(max(at_s, 0) * 1e9)


def enqueue(rt: Runtime, worker: str, function: str, args: Sequence[str], *,
            env: Sequence[tuple[str, str]] = (), idempotency_key: str | None = None,
            due_ns: int | None = None) -> tuple[dict[str, Any], bool]:
    """Check the call and store it; returns (record, created). ``due_ns`` None: now."""
    parse_worker_id(worker)
    if not function:
        raise ArgumentError("an invocation needs a function name")
    rt.prepare(worker, function, list(args))  # NotFoundError / ArgumentError now
    now = rt.clock.time_ns()
    return rt.store.invocations.enqueue({
        "worker": worker, "function": function, "args": list(args),
        "env": [list(p) for p in env], "idempotency_key": idempotency_key,
        "due_ns": now if due_ns is None else due_ns, "created_ns": now})


def describe_due(rec: dict[str, Any]) -> str:
    return datetime.fromtimestamp(rec["due_ns"] / 1e9).isoformat(timespec="seconds")
