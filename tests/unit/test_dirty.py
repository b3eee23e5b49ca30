"""Dirty-page tracking: userfaultfd async write-protect + PAGEMAP_SCAN (runtime/snapshot/dirty.py)."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from golemish.runtime.snapshot import dirty
from golemish.runtime.snapshot.dirty import (
    OS_PAGE, DirtyTracker, DirtyTrackingError, UffdTracker, pages_from_ranges,
)

P = OS_PAGE
WASM_PAGE = 65536

needs_uffd = pytest.mark.skipif(
    not UffdTracker.available(),
    reason="userfaultfd async write-protect + PAGEMAP_SCAN unavailable "
           "(needs Linux >= 6.7 on x86_64/aarch64 with CONFIG_USERFAULTFD and "
           "CONFIG_PTE_MARKER_UFFD_WP, and userfaultfd not blocked by seccomp)")


def pages(ranges: list[tuple[int, int]]) -> list[int]:
    return pages_from_ranges(ranges, P)


# -- pure helpers and ABI constants ---------------------------------------------------

def test_pages_from_ranges_4k() -> None:
    assert pages_from_ranges([], P) == []
    assert pages_from_ranges([(0, P), (5 * P, 7 * P)], P) == [0, 5, 6]
    # overlapping and unsorted input, unaligned ends
    assert pages_from_ranges([(9 * P, 10 * P), (0, 1), (P - 1, P + 1)], P) == [0, 1, 9]
    assert pages_from_ranges([(3 * P, 3 * P)], P) == []  # empty range


def test_pages_from_ranges_64k() -> None:
    big = 65536
    assert pages_from_ranges([(0, P), (15 * P, 16 * P)], big) == [0]
    assert pages_from_ranges([(15 * P, 17 * P)], big) == [0, 1]  # straddles a boundary
    assert pages_from_ranges([(16 * P, 17 * P), (40 * P, 41 * P), (16 * P, 32 * P)], big) == [1, 2]
    assert pages_from_ranges([(0, 4 * big)], big) == [0, 1, 2, 3]
    assert pages_from_ranges([(P, 2 * P)], 16384) == [0]
    for bad in (0, 1000, 6000, -4096):
        with pytest.raises(ValueError):
            pages_from_ranges([], bad)


def test_ioctl_numbers_match_the_kernel_headers() -> None:
    # The values the C macros produce on x86_64/aarch64 (asm-generic ioctl layout).
    assert dirty.UFFDIO_API == 0xC018AA3F
    assert dirty.UFFDIO_REGISTER == 0xC020AA00
    assert dirty.UFFDIO_WRITEPROTECT == 0xC018AA06
    assert dirty.PAGEMAP_SCAN == 0xC0606610
    assert ctypes.sizeof(dirty._PmScanArg) == 96
    assert ctypes.sizeof(dirty._PageRegion) == 24


def test_uffd_tracker_is_a_dirty_tracker() -> None:
    t = UffdTracker()
    assert isinstance(t, DirtyTracker) and t.name == "uffd"
    with pytest.raises(RuntimeError):
        t.collect()
    with pytest.raises(ValueError):
        t.start(P + 1, P)
    t.close()
    t.close()  # idempotent


# -- anonymous memory ---------------------------------------------------------------

@pytest.fixture
def anon() -> Iterator[tuple[mmap.mmap, int]]:
    """64 private anonymous pages, none populated yet, and their address."""
    m = mmap.mmap(-1, 64 * P, flags=mmap.MAP_PRIVATE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))  # the buffer export ends here
    try:
        yield m, addr
    finally:
        m.close()


@pytest.fixture
def tracker() -> Iterator[UffdTracker]:
    t = UffdTracker()
    try:
        yield t
    finally:
        t.close()


@needs_uffd
def test_writes_are_reported_exactly(anon: tuple[mmap.mmap, int], tracker: UffdTracker) -> None:
    m, addr = anon
    for p in range(0, 64, 3):
        m[p * P] = 1  # populate some pages before tracking: they must count as clean
    tracker.start(addr, len(m))
    assert tracker.collect() == []
    m[0] = 7
    m[5 * P + 100] = 1
    m[5 * P + 200] = 2  # the same page twice
    m[17 * P + P - 1] = 3  # last byte of page 17
    ranges = tracker.collect()
    assert pages(ranges) == [0, 5, 17]
    assert all(s % P == 0 and e % P == 0 for s, e in ranges)
    assert tracker.collect() == []  # nothing since
    m[5 * P] = 9  # written again after being re-armed
    m[63 * P] = 9
    assert tracker.collect() == [(5 * P, 6 * P), (63 * P, 64 * P)]
    assert tracker.collect() == []


@needs_uffd
def test_reads_do_not_count(anon: tuple[mmap.mmap, int], tracker: UffdTracker) -> None:
    m, addr = anon
    m[3 * P] = 1
    tracker.start(addr, len(m))
    total = sum(m[p * P] for p in range(64))  # populated and unpopulated pages alike
    assert total == 1
    assert bytes(m[10 * P:12 * P]) == bytes(2 * P)
    assert tracker.collect() == []
    m[10 * P] = 1  # a page first read (zero page), then written
    assert tracker.collect() == [(10 * P, 11 * P)]


@needs_uffd
def test_untouched_page_written_later(anon: tuple[mmap.mmap, int], tracker: UffdTracker) -> None:
    m, addr = anon
    tracker.start(addr, len(m))
    assert tracker.collect() == []
    assert tracker.collect() == []
    m[40 * P + 5] = 1  # never populated before: WP_UNPOPULATED's pte marker catches it
    ctypes.memset(addr + 41 * P, 0xAB, 2 * P)  # a host-side write spanning two pages
    assert tracker.collect() == [(40 * P, 43 * P)]


@needs_uffd
def test_more_regions_than_one_scan_returns(tracker: UffdTracker) -> None:
    # Every other page dirty: more separate regions than the output vector holds,
    # so collect() has to resume from walk_end.
    n = 2 * dirty._VEC_LEN + 200
    with mmap.mmap(-1, 2 * n * P, flags=mmap.MAP_PRIVATE) as m:
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        tracker.start(addr, len(m))
        for i in range(n):
            m[2 * i * P] = 1
        assert tracker.collect() == [(2 * i * P, (2 * i + 1) * P) for i in range(n)]
        m[(2 * n - 1) * P] = 1
        assert tracker.collect() == [((2 * n - 1) * P, 2 * n * P)]
        tracker.close()


@needs_uffd
def test_close_releases_fds_and_memory_works_after(anon: tuple[mmap.mmap, int]) -> None:
    m, addr = anon
    before = set(os.listdir("/proc/self/fd"))
    with UffdTracker() as t:
        t.start(addr, len(m))
        m[0] = 1
        assert len(set(os.listdir("/proc/self/fd")) - before) == 2  # uffd + pagemap
        with pytest.raises(RuntimeError):
            t.start(addr, len(m))  # already started
    assert set(os.listdir("/proc/self/fd")) <= before
    m[P] = 2  # no longer protected: plain memory
    assert m[0] == 1 and m[P] == 2


@needs_uffd
def test_errors_name_the_errno(tmp_path: Path, tracker: UffdTracker) -> None:
    # A read-only shared file mapping cannot be write-protected: UFFDIO_REGISTER fails.
    path = tmp_path / "ro"
    path.write_bytes(b"x" * 2 * P)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 2 * P, access=mmap.ACCESS_READ) as m:
        # The address of a read-only mmap: ctypes cannot take it, /proc/self/maps can.
        addr = _mapping_of(path)
        before = set(os.listdir("/proc/self/fd"))
        with pytest.raises(DirtyTrackingError) as exc:
            tracker.start(addr, len(m))
        assert isinstance(exc.value, OSError) and exc.value.errno == errno.EPERM
        assert "UFFDIO_REGISTER" in str(exc.value) and "EPERM" in str(exc.value)
        assert set(os.listdir("/proc/self/fd")) <= before  # nothing leaked on failure


def _mapping_of(path: Path) -> int:
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            return int(line.split("-", 1)[0], 16)
    raise AssertionError(f"{path} not mapped")


# -- a real wasmtime memory ------------------------------------------------------------

WAT = """
(module
  (memory (export "mem") 2)
  (data (i32.const 16) "initial data")
  (func (export "store") (param $addr i32) (param $val i32)
    (i32.store (local.get $addr) (local.get $val)))
  (func (export "grow") (param $n i32) (result i32)
    (memory.grow (local.get $n))))
"""


@needs_uffd
@pytest.mark.parametrize("init_cow", [False, True], ids=["plain", "cow"])
def test_wasmtime_memory(init_cow: bool, tracker: UffdTracker) -> None:
    # The runtime uses memory_init_cow=False; True (a private memfd image mapping for
    # the data segments) is checked too, to know both work.
    config = wasmtime.Config()
    config.memory_may_move = False
    config.memory_init_cow = init_cow
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    exports = wasmtime.Instance(store, wasmtime.Module(engine, WAT), []).exports(store)
    mem, store_fn, grow_fn = exports["mem"], exports["store"], exports["grow"]
    assert isinstance(mem, wasmtime.Memory)
    base = ctypes.cast(mem.data_ptr(store), ctypes.c_void_p).value
    assert base is not None
    tracker.start(base, mem.data_len(store))
    assert tracker.collect() == []

    for addr in (0, 4100, 65540, 2 * WASM_PAGE - 4):
        store_fn(store, addr, 0x1234)
    store_fn(store, 4104, 1)  # the same 4 KiB page again
    assert pages(tracker.collect()) == [0, 1, 16, 31]
    assert tracker.collect() == []

    # memory.grow: the memory stays in place; the new region is made accessible.
    assert grow_fn(store, 1) == 2
    new_len = mem.data_len(store)
    assert new_len == 3 * WASM_PAGE
    assert ctypes.cast(mem.data_ptr(store), ctypes.c_void_p).value == base
    store_fn(store, new_len - 8, 5)  # before tracker.grow(): must not be lost
    tracker.grow(new_len)
    store_fn(store, 3 * P, 6)  # an old page
    # Chosen behaviour: the whole grown region is dirty at the first collect after grow.
    assert tracker.collect() == [(3 * P, 4 * P), (2 * WASM_PAGE, 3 * WASM_PAGE)]
    assert tracker.collect() == []
    # From then on the new region is tracked page by page like the rest.
    store_fn(store, 2 * WASM_PAGE + 5 * P, 7)
    store_fn(store, 8, 8)
    assert pages(tracker.collect()) == [0, 37]
    tracker.grow(new_len)  # no change: nothing pending
    assert tracker.collect() == []
    with pytest.raises(ValueError):
        tracker.grow(WASM_PAGE)  # memories never shrink
    tracker.close()
    store_fn(store, 0, 1)  # the memory works normally once the tracker is closed
