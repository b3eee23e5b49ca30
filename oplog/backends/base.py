"""The small interface every storage backend implements.

A backend is an ordered key-value store with named tables, atomic multi-key
writes and range scans. Everything golemish stores (components, workers, oplog
entries, snapshot pages) is laid out on top of it by :mod:`golemish.oplog.store`,
so a new backend only has to get these few operations right — and the shared
contract suite in ``tests/unit/test_store_contract.py`` checks that it does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from ..stats import CommitStats

#: Every table golemish uses. Backends create them when a store is first opened.
TABLES = ("meta", "components", "wasm", "compiled", "workers", "oplog", "archive", "pages",
          "snapshots", "idempotency", "promises", "pagespaces", "invocations",
          # the shared page store (oplog/pagestore.py)
          "cpages", "pagerefs", "bases")

#: One write in an atomic batch: (table, key, value), value None deletes the key.
Op = tuple[str, bytes, "bytes | None"]


class Backend(Protocol):
    """Ordered key-value storage with tables. Keys sort as unsigned bytes."""

    #: Where the data lives, for messages (a path or a URL).
    location: str
    #: Counters and observers of commits and fsyncs (see golemish.oplog.stats).
    stats: CommitStats

    def get(self, table: str, key: bytes) -> bytes | None:
        """The value under ``key``, or None."""
        ...

    def get_many(self, table: str, keys: Sequence[bytes], *,
                 bulk: bool = False) -> list[bytes | None]:
        """The values under ``keys``, in order (None for a missing one), in one call.

        ``bulk`` as for scan: data the caller verifies itself (snapshot pages).
        """
        ...

    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Write one key. Durable against a process crash when it returns."""
        ...

    def write(self, ops: Sequence[Op]) -> None:
        """Apply all ops atomically: after a crash either all or none are visible.

        Durable against a process crash when it returns (and against power loss
        when the backend was opened with ``sync``); safe from many threads at once.
        """
        ...

    def scan(self, table: str, start: bytes, end: bytes | None = None, *,
             reverse: bool = False, bulk: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Items with ``start <= key < end`` (end None: no upper bound), in key order.

        ``bulk``: a one-off read of data the caller verifies itself (snapshot pages):
        the engine may skip its own checksums and leave its cache alone.
        """
        ...

    def close(self) -> None:
        """Release the store. Further calls raise StoreClosedError."""
        ...
