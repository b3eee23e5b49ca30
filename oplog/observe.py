"""A backend wrapper that tells an observer about every commit (for metrics).

``open_store(..., observer=o)`` wraps the backend: each ``write``/``put`` is timed
and ``o.committed(entries, seconds, synced)`` is called with the number of oplog
entries in it. With ``sync`` each commit is one fsync, so its time is the fsync
latency. Everything else passes straight through. Without an observer nothing is
wrapped and the hot path is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .backends.base import Backend, Op


class ObservedBackend:
    def __init__(self, backend: Backend, observer: Any, synced: bool) -> None:
        self._inner, self._observer, self._synced = backend, observer, synced

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if callable(value):  # bound once: later calls skip __getattr__
            setattr(self, name, value)
        return value

    def put(self, table: str, key: bytes, value: bytes) -> None:
        t0 = time.perf_counter()
        self._inner.put(table, key, value)
        self._observer.committed(int(table == "oplog"), time.perf_counter() - t0, self._synced)

    def write(self, ops: Sequence[Op]) -> None:
        t0 = time.perf_counter()
        self._inner.write(ops)
        entries = sum(1 for op in ops if op[0] == "oplog")
        self._observer.committed(entries, time.perf_counter() - t0, self._synced)
