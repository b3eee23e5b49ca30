"""In-memory backend for tests and ephemeral runs. Nothing survives the process."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence

from ..errors import StoreClosedError
from ..stats import CommitStats
from .base import TABLES, Op


class MemoryBackend:
    """Tables are dicts plus a key list that is sorted lazily, before a scan.

    Oplog appends arrive in key order per worker but interleave across workers, so
    keeping the list sorted on every insert would cost O(n) per put. One lock makes
    puts, batches and the sorting safe for many threads (a server's workers).
    """

    def __init__(self) -> None:
        self.location = "memory://"
        self._data: dict[str, dict[bytes, bytes]] | None = {t: {} for t in TABLES}
        self._keys: dict[str, list[bytes]] = {t: [] for t in TABLES}
        self._unsorted: set[str] = set()
        self._lock = threading.Lock()
        self.stats = CommitStats()  # commits only: nothing here is ever fsynced

    def _sorted_keys(self, table: str) -> list[bytes]:
        keys = self._keys[table]
        if table in self._unsorted:
            keys.sort()
            self._unsorted.discard(table)
        return keys

    def _table(self, table: str) -> dict[bytes, bytes]:
        if self._data is None:
            raise StoreClosedError("store is closed")
        return self._data[table]

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._table(table).get(key)

    def get_many(self, table: str, keys: Sequence[bytes], *,
                 bulk: bool = False) -> list[bytes | None]:
        data = self._table(table)
        return [data.get(k) for k in keys]

    def _set(self, table: str, key: bytes, value: bytes | None) -> None:
        data = self._table(table)
        if value is None:
            if data.pop(key, None) is not None:
                keys = self._sorted_keys(table)
                del keys[bisect.bisect_left(keys, key)]
            return
        if key not in data:
            keys = self._keys[table]
            if keys and key < keys[-1]:
                self._unsorted.add(table)
            keys.append(key)
        data[key] = bytes(value)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        with self._lock:
            self._set(table, key, value)

    def write(self, ops: Sequence[Op]) -> None:
        with self._lock:
            for table, _, _ in ops:  # validate first so a bad batch changes nothing
                self._table(table)
            for table, key, value in ops:
                self._set(table, key, value)

    def scan(self, table: str, start: bytes, end: bytes | None = None, *,
             reverse: bool = False, bulk: bool = False) -> Iterator[tuple[bytes, bytes]]:
        with self._lock:
            data = self._table(table)
            keys = self._sorted_keys(table)
            lo = bisect.bisect_left(keys, start)
            hi = len(keys) if end is None else bisect.bisect_left(keys, end)
            # Copy the slice so writes during iteration don't disturb it.
            chosen = keys[lo:hi]
        for k in (reversed(chosen) if reverse else chosen):
            v = data.get(k)
            if v is not None:
                yield k, v

    def close(self) -> None:
        with self._lock:
            self._data = None
