"""Reading RocksDB's write-ahead log files ourselves, for `golemish store recover`.

RocksDB will either refuse a WAL with a damaged record (how golemish opens it) or
drop everything from that record on (point-in-time recovery). To say *what* the
second would drop, we read the log files: the record format is RocksDB's
documented ``log_format.h`` (32 KiB blocks of records with a 7-byte header:
masked crc32c, length, type; 11 bytes for the recyclable types) and each logical
record is a ``WriteBatch`` (u64 sequence, u32 count, then tagged operations).

Nothing here trusts what it reads: a record whose checksum fails is still decoded
when it can be, and marked as damaged.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

BLOCK = 32768
_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_RECYCLABLE = {5: _FULL, 6: _FIRST, 7: _MIDDLE, 8: _LAST}

_CRC_TABLE: list[int] = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as RocksDB uses. Pure Python: only for recovery."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclass
class Batch:
    """One logical WAL record: a write batch, or what could be read of one."""

    file: str
    offset: int
    intact: bool                      # every fragment passed its checksum
    sequence: int | None = None       # None: not even the header could be read
    count: int | None = None
    #: (tag, column family id, key, value); value None for deletions.
    ops: list[tuple[int, int, bytes, bytes | None]] = field(default_factory=list)
    decoded: bool = False             # every operation was decoded


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 28:
            raise ValueError("bad varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _slice(buf: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _varint(buf, pos)
    if pos + n > len(buf):
        raise ValueError("slice past the end")
    return buf[pos:pos + n], pos + n


# tag -> (has column family, number of slices, is a put)
_TAGS = {0x1: (False, 2, True), 0x5: (True, 2, True),     # put
         0x0: (False, 1, False), 0x4: (True, 1, False),   # delete
         0x7: (False, 1, False), 0x8: (True, 1, False),   # single delete
         0x2: (False, 2, True), 0x6: (True, 2, True),     # merge
         0xF: (False, 2, False), 0xE: (True, 2, False),   # range delete
         0x3: (False, 1, False), 0xD: (False, 0, False)}  # log data, no-op


def _decode(batch: Batch, rep: bytes) -> None:
    if len(rep) < 12:
        return
    batch.sequence, batch.count = struct.unpack_from("<QI", rep, 0)
    pos = 12
    try:
        while pos < len(rep):
            tag = rep[pos]
            pos += 1
            if tag not in _TAGS:
                return
            has_cf, slices, is_put = _TAGS[tag]
            cf = 0
            if has_cf:
                cf, pos = _varint(rep, pos)
            parts = []
            for _ in range(slices):
                part, pos = _slice(rep, pos)
                parts.append(part)
            if tag in (0x3, 0xD):
                continue
            key = parts[0]
            batch.ops.append((tag, cf, key, parts[1] if is_put else None))
        batch.decoded = len(batch.ops) == batch.count or batch.count is None
    except ValueError:
        return


def read_log(path: str) -> list[Batch]:
    """Every logical record of one WAL file, damaged ones included."""
    with open(path, "rb") as f:
        data = f.read()
    name = os.path.basename(path)
    out: list[Batch] = []
    pending: tuple[int, list[bytes], bool] | None = None  # offset, fragments, intact
    pos = 0
    while pos + _HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < _HEADER.size:
            pos += left
            continue
        crc, length, rtype = _HEADER.unpack_from(data, pos)
        if rtype == 0 and length == 0:  # padding, or space preallocated and never written
            pos += left
            continue
        hdr = 11 if rtype in _RECYCLABLE or rtype == 11 else _HEADER.size
        if length > left - hdr or pos + hdr + length > len(data):
            # A damaged header (or a torn tail): what it held cannot be told apart;
            # continue at the next block.
            start = pending[0] if pending else pos
            out.append(Batch(name, start, intact=False))
            pending = None
            pos += left
            continue
        payload = data[pos + hdr:pos + hdr + length]
        ok = _masked(crc32c(data[pos + 6:pos + hdr] + payload)) == crc
        kind = _RECYCLABLE.get(rtype, rtype)
        if kind == _FULL:
            if pending:
                out.append(Batch(name, pending[0], intact=False))
                pending = None
            b = Batch(name, pos, intact=ok)
            _decode(b, payload)
            out.append(b)
        elif kind == _FIRST:
            if pending:
                out.append(Batch(name, pending[0], intact=False))
            pending = (pos, [payload], ok)
        elif kind in (_MIDDLE, _LAST):
            if pending is None:
                out.append(Batch(name, pos, intact=False))  # its beginning was lost
            else:
                pending = (pending[0], [*pending[1], payload], pending[2] and ok)
                if kind == _LAST:
                    b = Batch(name, pending[0], intact=pending[2])
                    _decode(b, b"".join(pending[1]))
                    out.append(b)
                    pending = None
        # other types (compression and timestamp-size records) carry no data
        pos += hdr + length
    if pending:
        out.append(Batch(name, pending[0], intact=False))
    return out


def log_files(path: str) -> list[str]:
    """The store's WAL files, oldest first."""
    names = [n for n in os.listdir(path) if n.endswith(".log") and n[:-4].isdigit()]
    return [os.path.join(path, n) for n in sorted(names, key=lambda n: int(n[:-4]))]
