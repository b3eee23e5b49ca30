"""A compact, self-describing binary encoding for the fields of stored records.

Values are tagged: None, bool, int (zig-zag varint, any size), float (IEEE
binary64), bytes, str (UTF-8) and lists/tuples of values. It is deliberately
small: every stored oplog entry is a tuple of such values behind a header (see
``entries``), so the format is easy to keep stable and to fuzz.
"""

from __future__ import annotations

import struct
from typing import Any

_NONE, _FALSE, _TRUE, _INT, _FLOAT, _BYTES, _STR, _LIST = range(8)
_F64 = struct.Struct("<d")


class DecodeError(ValueError):
    """Raised for malformed input; callers turn it into a CorruptionError."""


def _put_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def varint(n: int) -> bytes:
    """The varint encoding of ``n`` >= 0, as :func:`encode` writes lengths."""
    out = bytearray()
    _put_varint(out, n)
    return bytes(out)


def _encode(out: bytearray, v: Any) -> None:
    # bool is checked before int because bool is a subclass of int.
    if v is None:
        out.append(_NONE)
    elif v is True:
        out.append(_TRUE)
    elif v is False:
        out.append(_FALSE)
    elif isinstance(v, int):
        out.append(_INT)
        _put_varint(out, (v << 1) if v >= 0 else ((-v << 1) - 1))
    elif isinstance(v, float):
        out.append(_FLOAT)
        out += _F64.pack(v)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        out.append(_BYTES)
        _put_varint(out, len(v))
        out += v
    elif isinstance(v, str):
        b = v.encode("utf-8")
        out.append(_STR)
        _put_varint(out, len(b))
        out += b
    elif isinstance(v, (list, tuple)):
        out.append(_LIST)
        _put_varint(out, len(v))
        for item in v:
            _encode(out, item)
    else:
        raise TypeError(f"cannot encode {type(v).__name__}")


def encode(value: Any) -> bytes:
    """Encode one value (lists nest) to bytes."""
    out = bytearray()
    _encode(out, value)
    return bytes(out)


def encode_bytes_triple(name_utf8: bytes, a: bytes, b: bytes) -> bytes:
    """Fast path for ``encode([str, bytes, bytes])`` where the str is given as UTF-8.

    Produces exactly the bytes :func:`encode` would; tests hold it to that.
    """
    out = bytearray((_LIST, 3, _STR))
    _put_varint(out, len(name_utf8))
    out += name_utf8
    out.append(_BYTES)
    _put_varint(out, len(a))
    out += a
    out.append(_BYTES)
    _put_varint(out, len(b))
    out += b
    return bytes(out)


def _get_varint(buf: bytes, pos: int) -> tuple[int, int]:
    n = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7
        if shift > 640:
            raise DecodeError("varint too long")


def _decode(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if pos >= len(buf):
        raise DecodeError("truncated value")
    tag = buf[pos]
    pos += 1
    if tag == _NONE:
        return None, pos
    if tag == _TRUE:
        return True, pos
    if tag == _FALSE:
        return False, pos
    if tag == _INT:
        z, pos = _get_varint(buf, pos)
        return (z >> 1) if not z & 1 else -((z + 1) >> 1), pos
    if tag == _FLOAT:
        if pos + 8 > len(buf):
            raise DecodeError("truncated float")
        return _F64.unpack_from(buf, pos)[0], pos + 8
    if tag in (_BYTES, _STR):
        n, pos = _get_varint(buf, pos)
        end = pos + n
        if end > len(buf):
            raise DecodeError("truncated bytes")
        raw = buf[pos:end]
        if tag == _BYTES:
            return raw, end
        try:
            return raw.decode("utf-8"), end
        except UnicodeDecodeError as e:
            raise DecodeError(f"bad utf-8: {e}") from None
    if tag == _LIST:
        if depth > 64:
            raise DecodeError("nesting too deep")
        n, pos = _get_varint(buf, pos)
        if n > len(buf) - pos:  # every item takes at least one byte
            raise DecodeError("list length exceeds input")
        items = []
        for _ in range(n):
            item, pos = _decode(buf, pos, depth + 1)
            items.append(item)
        return items, pos
    raise DecodeError(f"unknown tag {tag}")


def decode(buf: bytes) -> Any:
    """Decode bytes produced by :func:`encode`; lists come back as lists."""
    value, pos = _decode(bytes(buf), 0, 0)
    if pos != len(buf):
        raise DecodeError(f"{len(buf) - pos} trailing bytes")
    return value
