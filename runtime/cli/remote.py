"""CLI commands through a server: calls that give back what the in-process calls give.

Each function takes a ``cli_client.Client`` and returns the object the Runtime (or
runtime/versions.py) returns in-process, rebuilt from the JSON, so that a
command prints the same either way. Output the server collected from a guest is
written with ``write`` (stream, bytes) as the in-process command would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from ..errors import Suspended
from .client import Client, ServerError

Write = Callable[[int, bytes], None]


def _out(body: dict[str, Any], write: Write) -> None:
    for stream, name in ((1, "stdout"), (2, "stderr")):
        if body.get(name):
            write(stream, body[name].encode())


def _finished(f: dict[str, Any] | None) -> dict[str, Any] | None:
    if f and f.get("results") is not None:
        f = {**f, "results": [tuple(v) if isinstance(v, list) else v for v in f["results"]]}
    return f


def _report(rec: dict[str, Any] | None) -> Any:
    from ..worker import RecoveryReport
    if rec is None:
        return None
    return RecoveryReport(**{**rec, "finished": _finished(rec.get("finished"))})


def _suspended(client: Client, worker: str, e: ServerError) -> Suspended:
    """The Suspended a 409 worker-suspended stands for (what in-process raises)."""
    meta = client.get(client.worker_path(worker)).get("suspended") or {}
    return Suspended(worker, promise=meta.get("promise"), until_ns=meta.get("until_ns"))


def remote_resume(client: Client, worker: str, wait: bool, write: Write) -> Any:
    """`worker resume [--wait]`: the RecoveryReport, or raises Suspended."""
    path = client.worker_path(worker, "/resume")
    while True:
        try:
            status, body = client.post(path)
        except ServerError as e:
            if e.code != "worker-suspended":
                raise
            s = _suspended(client, worker, e)
            if not (wait and s.until_ns):
                raise s from None
            time.sleep(max(0.05, s.until_ns / 1e9 - time.time()))
            continue
        _out(body, write)
        if status == 202:
            s = Suspended(worker, promise=body.get("promise"), until_ns=body.get("until_ns"))
            if not (wait and s.until_ns):
                raise s
            time.sleep(max(0.05, s.until_ns / 1e9 - time.time()))
            continue
        return _report(body.get("recovery"))


def remote_complete(client: Client, promise: str, data: str,
                    write: Write) -> tuple[dict[str, Any], Any]:
    """`promise complete`: (promise, RecoveryReport-like or Suspended)."""
    from urllib.parse import quote
    _, body = client.post(f"/promises/{quote(promise, safe='/')}/complete", {"data": data})
    _out(body, write)
    p = {"id": promise, "worker": body["worker"]}
    if body.get("status") == "suspended":
        return p, Suspended(body["worker"], promise=body.get("next_promise"),
                            until_ns=body.get("until_ns"))
    return p, SimpleNamespace(finished=_finished(body.get("finished")))


def component_usage(client: Client) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    for w in client.get("/workers"):
        key = (w.get("component", ""), w.get("version", -1))
        counts[key] = counts.get(key, 0) + 1
    return counts


def component(client: Client, name: str, version: int | None) -> dict[str, Any]:
    from urllib.parse import quote
    return client.get(f"/components/{quote(name, safe='')}", version=version)


def versions_op(client: Client, worker: str, op: str, body: dict[str, Any]) -> Any:
    """revert / fork / update: the result dataclass's fields as attributes."""
    return SimpleNamespace(**client.post(client.worker_path(worker, f"/{op}"), body)[1])
