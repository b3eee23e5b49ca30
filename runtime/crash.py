"""Crash injection: ``GOLEMISH_CRASH_AT=<point>:<n>[,<point>:<n>...]``.

The process kills itself with SIGKILL the n-th time (1-based) it reaches a named
point. Nothing is flushed or cleaned up, exactly as with an outside ``kill -9``;
only our own stdout/stderr buffers are flushed first so that what a user saw
before the crash is what the guest had printed.
"""

from __future__ import annotations

import os
import signal
import sys

from .errors import CrashPointError

POINTS = {
    "before-oplog-append": "before any oplog entry is appended",
    "after-oplog-append": "after any oplog entry is appended (it may still wait in memory "
                          "for the next commit; one that commits is written by then)",
    "before-commit": "before the entries waiting in memory are written (an effect, shown "
                     "output, the invocation's end or a suspension is next)",
    "after-commit": "after waiting entries are written, before what follows leaves the "
                    "process",
    "after-host-call": "after a host call ran live, before its result is recorded",
    "before-invocation": "after the invocation is appended (in memory), before the guest "
                         "runs",
    "after-invocation": "after the invocation's result is recorded, before it is returned",
    "mid-snapshot-write": "after a snapshot is captured and compressed, before its batch is written",
    "after-snapshot-write": "after a snapshot's batch (pages, manifest, entry) is written",
}


class CrashPoints:
    """Counts arrivals at named points and kills the process at the configured one."""

    def __init__(self, spec: str | None = None) -> None:
        self._targets: dict[str, int] = {}
        self._counts: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in (spec or "").split(","))):
            point, _, n = part.partition(":")
            if point not in POINTS:
                raise CrashPointError(f"unknown crash point {point!r}; known: "
                                      f"{', '.join(sorted(POINTS))}")
            try:
                count = int(n or "1")
            except ValueError:
                count = 0
            if count < 1:
                raise CrashPointError(f"crash point {part!r}: the count must be a whole "
                                      "number >= 1")
            self._targets[point] = count

    @classmethod
    def from_env(cls) -> CrashPoints:
        return cls(os.environ.get("GOLEMISH_CRASH_AT"))

    @property
    def armed(self) -> bool:
        return bool(self._targets)

    def hit(self, point: str) -> None:
        target = self._targets.get(point)
        if target is None:
            return
        n = self._counts.get(point, 0) + 1
        self._counts[point] = n
        if n == target:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # a closed pipe must not stop the crash
                    pass
            os.kill(os.getpid(), signal.SIGKILL)
