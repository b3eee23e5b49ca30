"""Bases: the memory of a fresh instance, so that snapshots and restores skip it.

A freshly instantiated module (data segments applied, ``_initialize`` not run)
always holds the same bytes. golemish stores that image once per component
version and page size, as a *base* in the shared page store (oplog/pagestore.py).
A worker's manifests name their base: their pages that equal the base are
referenced through it (a 40 MiB Python interpreter image is stored once, not
once per worker), and a restore into a fresh instance writes only the pages that
differ from the base.

That rests on the fresh instance really holding the base: each process checks
it once per base, with one xxh3-64 over the whole fresh memory (a few ms for
40 MiB) against the digest recorded in the base. A base that does not match is
not used: captures then take every page and restores write every page.
"""

from __future__ import annotations

import ctypes
import threading

import xxhash

from golemish.oplog import Manifest, Store
from golemish.oplog.manifest import ZERO_HASH, page_hash

from .engine import Instance

DIGEST = "image_xxh3_64"


def base_id(component_hash: str, page_size: int) -> str:
    return f"{component_hash}:{page_size}"


def image_digest(inst: Instance) -> int:
    """xxh3-64 of the instance's whole linear memory (63 bits, for the codec)."""
    size = inst.memory_size()
    if not size:
        return 0
    view = memoryview((ctypes.c_char * size).from_address(inst.base)).cast("B")
    return xxhash.xxh3_64_intdigest(view) & ((1 << 63) - 1)


def capture(inst: Instance, component_hash: str, page_size: int
            ) -> tuple[Manifest, dict[bytes, bytes]]:
    """The base manifest of a fresh instance and its non-zero pages."""
    size = inst.memory_size()
    zero = bytes(page_size)
    hashes = bytearray()
    pages: dict[bytes, bytes] = {}
    for off in range(0, size, page_size):
        data = inst.read(off, page_size)
        if data == zero:
            hashes += ZERO_HASH
            continue
        h = page_hash(data)
        hashes += h
        pages.setdefault(h, data)
    m = Manifest(0, component_hash, page_size, size, bytes(hashes),
                 stats=((DIGEST, image_digest(inst)),))
    return m, pages


class Bases:
    """The bases of one store, checked against this process's fresh instances."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        #: base id -> the base, once a fresh instance here matched it (None: did not).
        self._checked: dict[str, Manifest | None] = {}

    def for_fresh(self, inst: Instance, component_hash: str, page_size: int
                  ) -> Manifest | None:
        """The base of a fresh instance of the component, stored first if need be.

        Call it before anything runs in ``inst``. None: no usable base (a module
        without memory, a read-only store without it, or an image that differs).
        """
        if not inst.has_memory:
            return None
        bid = base_id(component_hash, page_size)
        with self._lock:
            if bid in self._checked:
                return self._checked[bid]
            pages = self._store.snapshots.pages
            stored = pages.base(bid)
            if stored is None:
                if getattr(self._store.backend, "readonly", False):
                    return None
                m, data = capture(inst, component_hash, page_size)
                with pages.lock:
                    self._store.backend.write(pages.add_base_ops(bid, m, data))
                stored = pages.base(bid)
            self._checked[bid] = got = stored if self._matches(stored, inst) else None
            return got

    def verified(self, bid: str, inst: Instance) -> Manifest | None:
        """The base ``bid`` if the fresh instance ``inst`` holds it, else None."""
        with self._lock:
            if bid not in self._checked:
                stored = self._store.snapshots.pages.base(bid)
                if stored is None:
                    return None  # not cached: a base may be stored later
                self._checked[bid] = stored if self._matches(stored, inst) else None
            return self._checked[bid]

    @staticmethod
    def _matches(base: Manifest, inst: Instance) -> bool:
        return (base.memory_size == inst.memory_size()
                and dict(base.stats).get(DIGEST) == image_digest(inst))
