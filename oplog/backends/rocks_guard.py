"""The write guard: what RocksDB acknowledged, kept outside its write-ahead log.

Without fsync, acknowledged writes live in the WAL until a flush. A WAL file that
is deleted or cut short loses them, and RocksDB cannot tell: the MANIFEST only
knows what was flushed, so the store opens with an older state and every check of
its own consistency passes. The guard is a 16-byte file (``golemish.seq``: a magic
word and the sequence number of the newest acknowledged write) that the writer
updates through a shared mapping after every write — a store into the page cache,
which survives a process crash as the WAL does — and that every open compares with
the sequence number RocksDB recovered. A store whose recovered sequence is behind
its guard has lost acknowledged writes: that is reported, never opened as if whole.
"""

from __future__ import annotations

import mmap
import os
import struct

from ..errors import CorruptionError

GUARD_FILE = "golemish.seq"
_MAGIC = b"GOLEMSQ1"
_LAYOUT = struct.Struct("<8sQ")
_SEQ = struct.Struct("<Q")

RECOVER_HINT = ("nothing was changed; `golemish store recover` reports what is lost and, "
                "if you confirm, accepts the store as it now is")


def read_guard(path: str) -> int | None:
    """The acknowledged sequence number; None when the store has no guard file.

    Raises CorruptionError when the file is there but damaged.
    """
    try:
        with open(os.path.join(path, GUARD_FILE), "rb") as f:
            raw = f.read(_LAYOUT.size + 1)
    except FileNotFoundError:
        return None
    if len(raw) != _LAYOUT.size or raw[:8] != _MAGIC:
        raise CorruptionError("write guard", os.path.join(path, GUARD_FILE),
                              "damaged (wrong size or magic)", hint=RECOVER_HINT)
    return _LAYOUT.unpack(raw)[1]


def verify(path: str, recovered: int) -> None:
    """Refuse a store whose recovered state is older than what was acknowledged."""
    guard = read_guard(path)
    if guard is None:
        raise CorruptionError("write guard", os.path.join(path, GUARD_FILE), "missing",
                              hint=RECOVER_HINT)
    if recovered < guard:
        raise CorruptionError(
            "write-ahead log", path,
            f"acknowledged writes are missing: the store recovered up to sequence number "
            f"{recovered}, but writes up to {guard} were acknowledged (a log file was "
            "deleted or cut short)", hint=RECOVER_HINT)


class Guard:
    """The writer's mapping of the guard file."""

    def __init__(self, path: str, sequence: int) -> None:
        fd = os.open(os.path.join(path, GUARD_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, _LAYOUT.size)
            self._map: mmap.mmap | None = mmap.mmap(fd, _LAYOUT.size)
        finally:
            os.close(fd)
        _LAYOUT.pack_into(self._map, 0, _MAGIC, sequence)

    def advance(self, sequence: int) -> None:
        if self._map is not None:
            _SEQ.pack_into(self._map, 8, sequence)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
