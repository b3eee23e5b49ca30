"""Capture and restore of a live instance's memory and globals (DESIGN.md invariants 3-4).

Capture happens only between invocations. It hashes the pages that may have
changed since the last snapshot — the pages userfaultfd saw written, or every
page when the kernel cannot tell us (the hashing tracker) — and stores only the
pages whose content hash is new. Both trackers produce the same manifest.

Restore goes into a fresh instance: grow memory to the snapshot's size, copy
the pages in, set the mutable globals through the exports added at deploy, and
check the table sizes. ``_initialize`` and the start function are not run again.
Pages equal to the fresh instance's are skipped; the others are decompressed
straight into memory (zstd_into.py) and checked there, by up to UNPACK_THREADS
threads, while one more has the kernel map grown memory ahead of them.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from golemish.oplog import Manifest
from golemish.oplog.manifest import HASH_SIZE, ZERO_HASH, page_hash

from ..engine import Instance
from ..errors import GolemishError
from . import zstd_into
from .dirty import OS_PAGE, DirtyTrackingError, UffdTracker, pages_from_ranges
from .instrument import GLOBAL_PREFIX, TABLE_PREFIX

DEFAULT_PAGE_SIZE = 16384


class SnapshotError(GolemishError):
    """A snapshot cannot be taken or does not fit the instance it is restored into."""


@dataclass(frozen=True)
class SnapshotConfig:
    #: Bytes per snapshot page: a multiple of 4 KiB dividing 64 KiB.
    page_size: int = DEFAULT_PAGE_SIZE
    zstd_level: int = 1
    #: How many snapshots to keep per worker.
    keep: int = 3
    #: "auto" (userfaultfd where the kernel has it, else hashing), "uffd" or "hash".
    tracker: str = "auto"


@dataclass(frozen=True)
class Layout:
    """The state a snapshot covers beyond memory: instrumented global and table exports."""

    globals: tuple[str, ...]
    tables: tuple[str, ...]

    @classmethod
    def of(cls, export_names: Iterable[str]) -> Layout:
        names = sorted(export_names)
        return cls(tuple(n for n in names if n.startswith(GLOBAL_PREFIX)),
                   tuple(n for n in names if n.startswith(TABLE_PREFIX)))


class HashTracker:
    """The fallback: no kernel help, so every page is a candidate and hashing decides."""

    name = "hash"

    def start(self, base: int, length: int) -> None:
        pass

    def grow(self, new_length: int) -> None:
        pass

    def collect(self) -> None:
        return None

    def close(self) -> None:
        pass


def make_tracker(kind: str) -> UffdTracker | HashTracker:
    if kind == "hash" or (kind == "auto" and not UffdTracker.available()):
        return HashTracker()
    if kind == "uffd" and not UffdTracker.available():
        raise SnapshotError("userfaultfd write-protect tracking is not available here "
                            "(needs Linux >= 6.7); use the hash tracker")
    return UffdTracker()


class MemoryImage:
    """Tracks one live instance between snapshots and captures it."""

    def __init__(self, inst: Instance, layout: Layout, config: SnapshotConfig,
                 base: Manifest | None, base_id: str = "") -> None:
        self.inst = inst
        #: The base (fresh image) the manifests are relative to; "" for none.
        self.base_id = base_id
        self.layout = layout
        self.config = config
        self.base = base if base is not None and base.page_size == config.page_size else None
        self._known = self.base.nonzero() if self.base is not None else set()
        self.tables = {t: inst.table_size(t) for t in layout.tables}
        # Without memory there is nothing to track; globals are captured all the same.
        self.tracker = make_tracker(config.tracker) if inst.has_memory else HashTracker()
        self._tracked = inst.memory_size()
        try:
            self.tracker.start(inst.base, self._tracked)
        except DirtyTrackingError:
            self.tracker.close()
            self.tracker = HashTracker()

    @property
    def tracker_name(self) -> str:
        return self.tracker.name

    def close(self) -> None:
        self.tracker.close()

    def _candidates(self, npages: int) -> Iterable[int]:
        size = self.inst.memory_size()
        try:
            if size != self._tracked:
                self.tracker.grow(size)
                self._tracked = size
            ranges = self.tracker.collect()
        except DirtyTrackingError:
            # The kernel may have re-armed pages it never reported: trust nothing
            # and hash every page from now on.
            self.tracker.close()
            self.tracker = HashTracker()
            ranges = None
        if ranges is None or self.base is None:
            return range(npages)
        dirty = set(pages_from_ranges(ranges, self.config.page_size))
        dirty.update(range(self.base.page_count, npages))  # grown since the base
        return sorted(p for p in dirty if p < npages)

    def capture(self, index: int, component_hash: str, has_page: Callable[[bytes], bool],
                stats: tuple[tuple[str, int], ...] = (), *, full: bool = False,
                host: bytes = b"") -> tuple[Manifest, dict[bytes, bytes], int]:
        """(manifest, pages to store, number of changed pages). Resets dirty tracking.

        ``full`` ignores the base and the page store: every non-zero page is hashed and
        returned for storing (the baseline incremental capture is measured against).
        """
        if full:
            self.base, self._known = None, set()
            has_page = _never
        inst = self.inst
        for name, size in self.tables.items():
            if inst.table_size(name) != size:
                raise SnapshotError(f"table {name} changed size ({size} -> "
                                    f"{inst.table_size(name)}); its contents cannot be "
                                    "captured, so this worker recovers by replay")
        ps = self.config.page_size
        size = inst.memory_size()
        npages = size // ps
        zero = bytes(ps)
        if self.base is not None:
            pages = bytearray(self.base.pages[:npages * HASH_SIZE])
            pages += ZERO_HASH * (npages - self.base.page_count)
        else:
            pages = bytearray(ZERO_HASH * npages)
        new: dict[bytes, bytes] = {}
        changed = 0
        read = inst.read
        for p in self._candidates(npages):
            data = read(p * ps, ps)
            h = ZERO_HASH if data == zero else page_hash(data)
            off = p * HASH_SIZE
            if pages[off:off + HASH_SIZE] != h:
                changed += 1
                pages[off:off + HASH_SIZE] = h
                if h != ZERO_HASH and h not in self._known and h not in new and not has_page(h):
                    new[h] = data
        globals_ = tuple((n, *inst.get_global(n)) for n in self.layout.globals)
        manifest = Manifest(index, component_hash, ps, size, bytes(pages), globals_,
                            tuple(self.tables.items()), time.time_ns(), stats, host,
                            base=self.base_id)
        return manifest, new, changed

    def committed(self, manifest: Manifest) -> None:
        """The manifest is stored: it is the base for the next incremental capture."""
        self.base = manifest
        self._known = manifest.nonzero()


def _never(_: bytes) -> bool:
    return False


#: Grown memory from which a restore maps its pages in one call instead of one fault
#: per 4 KiB page (measured here: ~15 us a fault, a third of that in one madvise).
POPULATE_MIN = 8 << 20
#: Pages per decompression task of a restore, and threads that run those tasks.
UNPACK_BATCH = 256
UNPACK_THREADS = min(4, os.cpu_count() or 1)
_MADV_POPULATE_WRITE = 23  # Linux >= 5.14
_libc: Any = None


def populate(addr: int, length: int) -> None:
    """Map [addr, addr+length) in now (best effort: an older kernel just refuses)."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        except (OSError, AttributeError):
            _libc = False
    if _libc and sys.platform.startswith("linux"):
        _libc.madvise(addr, length, _MADV_POPULATE_WRITE)


def restore(inst: Instance, manifest: Manifest, layout: Layout,
            pages: Callable[[Sequence[bytes]], Iterable[tuple[bytes, bytes]]],
            fresh: Manifest | None = None) -> int:
    """Rebuild memory and globals of a fresh instance from a manifest; returns the
    number of pages written.

    ``fresh``: the base the fresh instance is known to hold (see bases.py): pages
    equal to it are left as they are, so a restore costs the worker's own pages.
    ``pages(wanted)`` yields (hash, verified page) for the wanted hashes, in any
    order (see SnapshotStore.stream_pages). When it also has ``frames`` (a
    PageReader), the stored frames are decompressed straight into memory and each
    page is checked there. Raises SnapshotError when the snapshot does not fit the
    module, and lets CorruptionError through; either way the instance must be
    thrown away.
    """
    names = tuple(g[0] for g in manifest.globals)
    if names != layout.globals or tuple(t[0] for t in manifest.tables) != layout.tables:
        raise SnapshotError("snapshot globals/tables do not match the module's")
    for name, size in manifest.tables:
        if inst.table_size(name) != size:
            raise SnapshotError(f"table {name} has size {inst.table_size(name)}, "
                                f"snapshot expects {size}")
    ps = manifest.page_size
    if ps % OS_PAGE or 65536 % ps:
        raise SnapshotError(f"unsupported snapshot page size {ps}")
    initial = inst.memory_size()
    if manifest.memory_size < initial:
        raise SnapshotError("snapshot memory is smaller than the module's initial memory")
    inst.grow_to(manifest.memory_size)
    grown = manifest.memory_size - initial
    mapper = None
    if grown >= POPULATE_MIN:
        tail = manifest.pages[initial // ps * HASH_SIZE:]
        used = sum(1 for o in range(0, len(tail), HASH_SIZE)
                   if tail[o:o + HASH_SIZE] != ZERO_HASH)
        if used * ps * 2 >= grown:  # mostly data: map it all (a sparse one stays sparse)
            # In a thread (the call releases the GIL): the kernel maps the pages from
            # the bottom up while this thread fills them, also from the bottom up.
            mapper = threading.Thread(target=populate, args=(inst.base + initial, grown),
                                      name="restore-populate", daemon=True)
            mapper.start()
    try:
        written = _fill(inst, manifest, ps, initial, fresh, pages)
    finally:
        if mapper is not None:
            mapper.join()
    for name, ty, bits in manifest.globals:
        inst.set_global(name, ty, bits)
    return written


def _fill(inst: Instance, manifest: Manifest, ps: int, initial: int,
          fresh: Manifest | None,
          pages: Callable[[Sequence[bytes]], Iterable[tuple[bytes, bytes]]]) -> int:
    where: dict[bytes, list[int]] = {}  # hash -> offsets; in order of first offset
    if fresh is not None and (fresh.page_size != ps or fresh.memory_size != initial):
        fresh = None
    same = fresh.pages if fresh is not None else b""
    mine = manifest.pages
    written = 0
    for p, h in enumerate(manifest.hashes()):
        off = p * HASH_SIZE
        if mine[off:off + HASH_SIZE] == same[off:off + HASH_SIZE]:
            continue  # the fresh instance holds this page already
        if h != ZERO_HASH:
            where.setdefault(h, []).append(p * ps)
            written += 1
        elif p * ps < initial:  # fresh pages past the initial size are zero already
            inst.zero(p * ps, ps)
            written += 1
    frames = getattr(pages, "frames", None)
    if frames is None or not zstd_into.available():
        write = inst.write
        for h, data in pages(list(where)):
            for offset in where[h]:
                write(offset, data)
        return written
    reader: Any = pages
    base, view, memmove = inst.base, ctypes.c_char * ps, ctypes.memmove
    into = zstd_into.decompress_into

    def unpack(batch: list[tuple[bytes, bytes]]) -> None:
        for h, z in batch:
            offs = where[h]
            first = base + offs[0]
            try:
                n = into(first, ps, z)
            except zstd_into.ZstdIntoError as e:
                raise reader.damaged(h, f"undecodable: {e}") from None
            if n != ps or page_hash(view.from_address(first)) != h:
                raise reader.damaged(h, "content hash mismatch")
            for offset in offs[1:]:
                memmove(base + offset, first, ps)

    batches = _batches(frames(list(where)), UNPACK_BATCH)
    if len(where) < 2 * UNPACK_BATCH or UNPACK_THREADS < 2:
        for batch in batches:
            unpack(batch)
        return written
    # The decompression calls release the GIL: batches go to a few threads. Every
    # batch is waited for before returning or raising (they write into the memory).
    with ThreadPoolExecutor(UNPACK_THREADS, thread_name_prefix="restore") as pool:
        futures = [pool.submit(unpack, batch) for batch in batches]
        for f in futures:
            f.result()
    return written


def _batches(items: Iterable[tuple[bytes, bytes]], n: int
             ) -> Iterator[list[tuple[bytes, bytes]]]:
    batch: list[tuple[bytes, bytes]] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
