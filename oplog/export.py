"""A worker's oplog as one self-contained, checksummed file (``golemish worker export``).

Layout (all integers little-endian)::

    8 bytes  magic b"GMSHOPLG"
    u16      file format version (1)
    u64      body length
    body     codec: [header JSON (UTF-8 bytes), [entry, ...]]
    32 bytes sha256 of everything before it

The header names the worker and its component (name, version, content hash, WIT
text, whether it is stackful) and the worker's fixed limits, so that the file is
enough to replay the worker against another build of that component. Entries are
in their stored form (each with its own format version and CRC32) for indexes
1..n densely; the first is the Create entry. Snapshots are not included: a
replay of the file starts from Create.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import codec
from .entries import Create, Entry, decode_entry
from .errors import CorruptionError

MAGIC = b"GMSHOPLG"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sHQ")
_DIGEST = 32


@dataclass(frozen=True)
class OplogFile:
    """The decoded contents of an exported oplog."""

    header: dict[str, Any]
    raw_entries: tuple[bytes, ...]

    @property
    def worker_id(self) -> str:
        return str(self.header["worker"])

    @property
    def component(self) -> dict[str, Any]:
        return dict(self.header["component"])

    def entries(self) -> list[tuple[int, Entry]]:
        """Verified, decoded entries, indexed from 1."""
        return [(i, decode_entry(raw, key=f"oplog file of {self.worker_id}", index=i))
                for i, raw in enumerate(self.raw_entries, start=1)]


def dump(header: dict[str, Any], raw_entries: Iterable[bytes]) -> bytes:
    """The file's bytes for a header and the stored entries 1..n."""
    body = codec.encode([json.dumps(header, sort_keys=True).encode(), list(raw_entries)])
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, len(body))
    return head + body + hashlib.sha256(head + body).digest()


def load(data: bytes, source: str = "oplog file") -> OplogFile:
    """Parse and verify an exported oplog; damage raises CorruptionError naming it."""
    def bad(detail: str, index: int | None = None) -> CorruptionError:
        return CorruptionError("oplog file", source, detail, index=index,
                               hint="export it again with `golemish worker export`")

    if len(data) < _HEAD.size + _DIGEST or data[:8] != MAGIC:
        raise bad("not a golemish oplog file (bad magic)")
    _, version, length = _HEAD.unpack_from(data)
    if version != FORMAT_VERSION:
        raise bad(f"file format version {version}; this golemish reads {FORMAT_VERSION}")
    end = _HEAD.size + length
    if len(data) != end + _DIGEST:
        raise bad(f"{len(data)} bytes, expected {end + _DIGEST} (truncated or padded)")
    if hashlib.sha256(data[:end]).digest() != data[end:]:
        raise bad("checksum mismatch")
    try:
        raw_header, raw_entries = codec.decode(data[_HEAD.size:end])
        header = json.loads(raw_header)
        ok = isinstance(header, dict) and "worker" in header and "component" in header \
            and all(isinstance(r, bytes) for r in raw_entries)
    except (codec.DecodeError, ValueError, TypeError):
        ok = False
    if not ok:
        raise bad("the body does not decode")
    f = OplogFile(header, tuple(raw_entries))
    if not f.raw_entries:
        raise bad("no entries")
    first = decode_entry(f.raw_entries[0], key=f"oplog file of {f.worker_id}", index=1)
    if not isinstance(first, Create):
        raise bad("the first entry is not a create entry", 1)
    return f


__all__ = ["OplogFile", "dump", "load", "MAGIC", "FORMAT_VERSION"]
