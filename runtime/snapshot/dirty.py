"""Dirty-page tracking of a wasm linear memory, for incremental snapshots.

A snapshot only needs the pages written since the previous one. :class:`UffdTracker`
asks the kernel: the memory is registered with a userfaultfd in *asynchronous
write-protect* mode (Linux >= 6.7), so the first write to a protected page is
resolved inside the kernel (no handler thread, ~1-2 µs) and merely leaves the page
marked "written". At snapshot time one ``PAGEMAP_SCAN`` ioctl on /proc/self/pagemap
lists the written ranges and write-protects them again, atomically.

The memory must not move (wasmtime ``memory_may_move = False``). With
``memory_init_cow = False`` it is plain private anonymous memory; the CoW memfd
mapping of ``memory_init_cow = True`` was measured to track correctly as well (async
WP accepts any memory type). Writes by the kernel (e.g. read(2) into the memory) are
tracked too. Not thread-safe: call ``collect`` while the guest is not running.

Constants and struct layouts come from the kernel UAPI headers
``include/uapi/linux/userfaultfd.h`` and ``include/uapi/linux/fs.h`` (6.7+; the
Debian 6.1 headers on the build machine predate WP_ASYNC and PAGEMAP_SCAN).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import mmap
import os
import platform
import sys
import threading
from collections.abc import Iterable
from typing import ClassVar, Protocol, runtime_checkable

#: Granularity of the ranges every tracker reports (the x86_64/aarch64 base page).
OS_PAGE = 4096


class DirtyTrackingError(OSError):
    """A tracking syscall failed; ``errno`` is set and the message names it."""


@runtime_checkable
class DirtyTracker(Protocol):
    """Tells which bytes of one linear memory changed between snapshots.

    Offsets are relative to the memory base; ranges are ``[start, end)``, aligned to
    :data:`OS_PAGE`, sorted, non-overlapping and coalesced. A tracker follows one
    memory from ``start`` to ``close``; ``collect`` is called with the guest paused.
    """

    name: str

    def start(self, base: int, length: int) -> None:
        """Begin tracking ``[base, base+length)``; everything counts as clean from now."""

    def grow(self, new_length: int) -> None:
        """The memory grew in place; ``[old, new_length)`` is dirty at the next collect."""

    def collect(self) -> list[tuple[int, int]] | None:
        """Ranges written since start()/the previous collect(); re-arms tracking.

        ``None`` means "no information": every page is a candidate (hashing fallback).
        """

    def close(self) -> None:
        """Release kernel resources (idempotent); the memory stays as it is."""


def pages_from_ranges(ranges: Iterable[tuple[int, int]], page_size: int) -> list[int]:
    """Sorted unique numbers of the ``page_size`` pages that any range touches.

    ``page_size`` is the snapshot's page size, a multiple of :data:`OS_PAGE`
    (4096, 16384, 65536 ...): a 4 KiB dirty range makes its whole snapshot page dirty.
    """
    if page_size <= 0 or page_size % OS_PAGE:
        raise ValueError(f"page_size must be a positive multiple of {OS_PAGE}, got {page_size}")
    pages: set[int] = set()
    for start, end in ranges:
        if end > start:
            pages.update(range(start // page_size, (end - 1) // page_size + 1))
    return sorted(pages)


def _coalesce(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge overlapping or touching ranges (a rescan can split one region)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


# --- kernel ABI ---------------------------------------------------------------------
def _iowr(typ: int, nr: int, size: int) -> int:
    """_IOWR(type, nr, struct) of asm-generic/ioctl.h, the layout of x86_64 and aarch64.

    Bits 0-7 nr, 8-15 type, 16-29 sizeof(struct), 30-31 direction: _IOC_READ (2) |
    _IOC_WRITE (1), since the kernel both reads and writes the struct.
    """
    return ((2 | 1) << 30) | (size << 16) | (typ << 8) | nr


def _struct(name: str, *fields: str | tuple[str, type]) -> type[ctypes.Structure]:
    """A C struct whose fields are __u64 unless given as (name, ctype)."""
    return type(name, (ctypes.Structure,), {"_fields_": [
        f if isinstance(f, tuple) else (f, ctypes.c_uint64) for f in fields]})


# All members are __u64, so there is no padding: layouts match on every 64-bit arch.
_UffdioApi = _struct("uffdio_api", "api", "features", "ioctls")
_UffdioRange = _struct("uffdio_range", "start", "len")
_UffdioRegister = _struct("uffdio_register", ("range", _UffdioRange), "mode", "ioctls")
_UffdioWriteprotect = _struct("uffdio_writeprotect", ("range", _UffdioRange), "mode")
_PageRegion = _struct("page_region", "start", "end", "categories")  # linux/fs.h
_PmScanArg = _struct(  # linux/fs.h
    "pm_scan_arg", "size", "flags", "start", "end", "walk_end", "vec", "vec_len",
    "max_pages", "category_inverted", "category_mask", "category_anyof_mask", "return_mask")

# linux/userfaultfd.h
UFFD_API = 0xAA
UFFDIO = 0xAA  # ioctl type
UFFD_USER_MODE_ONLY = 1  # userfaultfd(2) flag
UFFD_FEATURE_WP_UNPOPULATED = 1 << 13  # protect never-touched pages too (pte markers)
UFFD_FEATURE_WP_ASYNC = 1 << 15  # kernel resolves WP faults itself, no handler thread
UFFDIO_REGISTER_MODE_WP = 1 << 1
UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0
_UFFDIO_WRITEPROTECT = 0x06  # bit in uffdio_register.ioctls
UFFDIO_API = _iowr(UFFDIO, 0x3F, ctypes.sizeof(_UffdioApi))  # 0xC018AA3F
UFFDIO_REGISTER = _iowr(UFFDIO, 0x00, ctypes.sizeof(_UffdioRegister))  # 0xC020AA00
UFFDIO_WRITEPROTECT = _iowr(UFFDIO, 0x06, ctypes.sizeof(_UffdioWriteprotect))  # 0xC018AA06
# linux/fs.h
PAGE_IS_WRITTEN = 1 << 1
PM_SCAN_WP_MATCHING = 1 << 0  # re-protect what matched, in the same walk
PM_SCAN_CHECK_WPASYNC = 1 << 1  # fail (EPERM) rather than skip pages not under async WP
PAGEMAP_SCAN = _iowr(ord("f"), 16, ctypes.sizeof(_PmScanArg))  # 0xC0606610
# userfaultfd(2) is not in libc's wrappers everywhere; its number is per-arch.
_NR_USERFAULTFD = {"x86_64": 323, "aarch64": 282}
_VEC_LEN = 1024  # page_region slots per PAGEMAP_SCAN call (24 KiB); we loop on walk_end


def _fail(what: str, err: int) -> DirtyTrackingError:
    name = _errno.errorcode.get(err, f"errno {err}")
    return DirtyTrackingError(err, f"{what} failed: {name} ({os.strerror(err)})")


class UffdTracker:
    """Dirty tracking with userfaultfd async write-protect + PAGEMAP_SCAN (Linux >= 6.7).

    After ``grow`` the whole new region is reported dirty at the next ``collect``:
    the guest may have written there between its ``memory.grow`` and our
    registration of the new range, and those writes would otherwise be lost. New
    wasm pages are zero, so a snapshot stores them cheaply after compression.

    After a :class:`DirtyTrackingError` from ``collect`` the dirty state is unknown
    (the scan may have re-protected pages it did not report): take a full snapshot.
    """

    name = "uffd"
    _probe: ClassVar[bool | None] = None
    _probe_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._uffd = self._pagemap = -1
        self._base = self._length = 0
        self._pending: list[tuple[int, int]] = []  # grown regions not yet reported
        self._vec = (_PageRegion * _VEC_LEN)()  # PAGEMAP_SCAN output, reused
        self._libc: ctypes.CDLL | None = None

    @classmethod
    def available(cls) -> bool:
        """Whether this kernel/arch supports the mechanism (probed once, cached)."""
        with cls._probe_lock:
            if cls._probe is None:
                cls._probe = cls._run_probe()
            return cls._probe

    @classmethod
    def _run_probe(cls) -> bool:
        if (not sys.platform.startswith("linux") or platform.machine() not in _NR_USERFAULTFD
                or mmap.PAGESIZE != OS_PAGE):
            return False
        try:  # ENOSYS, ENOTTY (no PAGEMAP_SCAN), EINVAL (no WP_ASYNC), EPERM, ...
            with mmap.mmap(-1, 4 * OS_PAGE, flags=mmap.MAP_PRIVATE) as buf, cls() as tracker:
                addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))  # export ends at once
                buf[0] = 1  # page 0 populated; pages 1-3 never touched
                tracker.start(addr, 4 * OS_PAGE)
                buf[2 * OS_PAGE] = buf[0]  # a read, then a write to an unpopulated page
                first, second = tracker.collect(), tracker.collect()
                return first == [(2 * OS_PAGE, 3 * OS_PAGE)] and second == []
        except (OSError, AttributeError, ValueError):
            return False

    def start(self, base: int, length: int) -> None:
        if self._uffd >= 0:
            raise RuntimeError("tracker already started")
        if base <= 0 or base % OS_PAGE or length < 0 or length % OS_PAGE:
            raise ValueError(f"base and length must be {OS_PAGE}-aligned: {base:#x}+{length:#x}")
        nr = _NR_USERFAULTFD.get(platform.machine())
        if nr is None:
            raise _fail(f"userfaultfd on {platform.machine()}", _errno.ENOSYS)
        # A private CDLL, so argtypes set here cannot clash with other users of libc.
        self._libc = libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
        self._base, self._length, self._pending = base, 0, []
        try:
            # USER_MODE_ONLY lets an unprivileged process (vm.unprivileged_userfaultfd = 0)
            # open one; WP_ASYNC never delivers faults anyway, so nothing is lost.
            fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(
                os.O_CLOEXEC | os.O_NONBLOCK | UFFD_USER_MODE_ONLY))
            if fd < 0:
                raise _fail("userfaultfd", ctypes.get_errno())
            self._uffd = fd
            # The handshake enables features; an older kernel refuses unknown ones (EINVAL).
            features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED
            self._ioctl(fd, UFFDIO_API, _UffdioApi(api=UFFD_API, features=features), "UFFDIO_API")
            self._pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            self._arm(0, length)
            self._length = length
        except BaseException:
            self.close()
            raise

    def grow(self, new_length: int) -> None:
        if self._uffd < 0:
            raise RuntimeError("tracker not started (or closed)")
        if new_length % OS_PAGE or new_length < self._length:
            raise ValueError(f"bad new length {new_length:#x} (was {self._length:#x})")
        if new_length == self._length:
            return
        self._arm(self._length, new_length)
        self._pending.append((self._length, new_length))
        self._length = new_length

    def collect(self) -> list[tuple[int, int]]:
        if self._uffd < 0:
            raise RuntimeError("tracker not started (or closed)")
        written = self._scan() if self._length else []
        ranges = _coalesce(written + self._pending)
        self._pending = []
        return ranges

    def close(self) -> None:
        # Closing the userfaultfd unregisters the ranges and drops their protection,
        # so the memory behaves as ordinary memory afterwards.
        for attr in ("_pagemap", "_uffd"):
            fd = getattr(self, attr)
            if fd >= 0:
                setattr(self, attr, -1)
                os.close(fd)

    def __enter__(self) -> UffdTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a safety net: the fds would keep the memory protected
        self.close()

    def _ioctl(self, fd: int, request: int, arg: ctypes.Structure, what: str) -> int:
        assert self._libc is not None
        ret = self._libc.ioctl(fd, request, ctypes.byref(arg))
        if ret < 0:
            raise _fail(what, ctypes.get_errno())
        return ret

    def _arm(self, lo: int, hi: int) -> None:
        """Register ``[lo, hi)`` (offsets) for async WP and write-protect it."""
        if hi <= lo:
            return
        rng = _UffdioRange(start=self._base + lo, len=hi - lo)
        reg = _UffdioRegister(range=rng, mode=UFFDIO_REGISTER_MODE_WP)
        self._ioctl(self._uffd, UFFDIO_REGISTER, reg, "UFFDIO_REGISTER")
        if not reg.ioctls & (1 << _UFFDIO_WRITEPROTECT):  # the kernel says what works here
            raise _fail("UFFDIO_REGISTER (no UFFDIO_WRITEPROTECT)", _errno.EOPNOTSUPP)
        # With WP_UNPOPULATED this also marks never-touched pages, so their first write
        # is seen too; without it they would be silently missed.
        wp = _UffdioWriteprotect(range=rng, mode=UFFDIO_WRITEPROTECT_MODE_WP)
        self._ioctl(self._uffd, UFFDIO_WRITEPROTECT, wp, "UFFDIO_WRITEPROTECT")

    def _scan(self) -> list[tuple[int, int]]:
        """One PAGEMAP_SCAN pass over the memory: written ranges, re-protected."""
        base, end = self._base, self._base + self._length
        arg = _PmScanArg(
            size=ctypes.sizeof(_PmScanArg), flags=PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            start=base, end=end, vec=ctypes.addressof(self._vec), vec_len=_VEC_LEN,
            category_mask=PAGE_IS_WRITTEN, return_mask=PAGE_IS_WRITTEN)
        out: list[tuple[int, int]] = []
        while True:
            n = self._ioctl(self._pagemap, PAGEMAP_SCAN, arg, "PAGEMAP_SCAN")
            out.extend((r.start - base, r.end - base) for r in self._vec[:n])
            # The walk stops early when the vector is full; walk_end says where.
            if arg.walk_end >= end:
                return out
            if arg.walk_end <= arg.start:  # never seen; guards against an endless loop
                raise _fail(f"PAGEMAP_SCAN (stuck at {arg.walk_end:#x})", _errno.EIO)
            arg.start = arg.walk_end
