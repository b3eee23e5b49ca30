"""Decompress a zstd frame straight into memory at an address, through the system libzstd.

A restore decompresses every page it writes. python-zstandard returns a new bytes
object that is then copied into linear memory; decompressing into the memory
itself skips that copy and the allocation (at 10,750 pages of 16 KiB: ~0.1 s of a
0.75 s restore). ctypes releases the GIL for the call. Where the library is
missing, ``available()`` is False and the restore takes the bytes path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any

_lib: Any = None
_tls = threading.local()


class ZstdIntoError(Exception):
    """The frame did not decompress (the message is libzstd's)."""


def _load() -> Any:
    global _lib
    if _lib is None:
        lib: Any = False
        for name in ("libzstd.so.1", ctypes.util.find_library("zstd")):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                lib.ZSTD_createDCtx.restype = ctypes.c_void_p
                lib.ZSTD_freeDCtx.argtypes = [ctypes.c_void_p]
                lib.ZSTD_decompressDCtx.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                    ctypes.c_size_t, ctypes.c_char_p,
                                                    ctypes.c_size_t]
                lib.ZSTD_decompressDCtx.restype = ctypes.c_size_t
                lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
                lib.ZSTD_isError.restype = ctypes.c_uint
                lib.ZSTD_getErrorName.argtypes = [ctypes.c_size_t]
                lib.ZSTD_getErrorName.restype = ctypes.c_char_p
                break
            except (OSError, AttributeError):
                lib = False
        _lib = lib
    return _lib


def available() -> bool:
    return bool(_load())


class _DCtx:
    """One decompression context per thread, freed with the thread."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.ptr = lib.ZSTD_createDCtx()
        if not self.ptr:
            raise MemoryError("ZSTD_createDCtx failed")

    def __del__(self) -> None:
        self.lib.ZSTD_freeDCtx(self.ptr)


def decompress_into(addr: int, capacity: int, frame: bytes) -> int:
    """Decompress ``frame`` into [addr, addr+capacity); returns the bytes written.

    Raises ZstdIntoError for a damaged frame or one that does not fit. Call only
    when ``available()``.
    """
    lib = _lib
    d = getattr(_tls, "dctx", None)
    if d is None:
        d = _tls.dctx = _DCtx(lib)
    n = lib.ZSTD_decompressDCtx(d.ptr, addr, capacity, frame, len(frame))
    if lib.ZSTD_isError(n):
        raise ZstdIntoError(lib.ZSTD_getErrorName(n).decode(errors="replace"))
    return int(n)
