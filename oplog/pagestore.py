"""The shared page store: snapshot pages of every worker, each stored once per store.

Tables (backend)::

    cpages    xxh3-128(page)     -> zstd(page)
    pagerefs  xxh3-128(page)     -> u64be(references)        (16-byte keys)
    pagerefs  b"b" base id       -> u64be(manifests relative to the base)
    bases     base id            -> manifest blob of a fresh instance's memory

A *base* is the memory of a freshly instantiated module (data segments, nothing
run yet), stored once per component version and page size. A worker's
manifest names every page of its memory as before, plus the base it was taken
relative to: a restore then writes only the pages that differ from the base
into a fresh instance, which holds the base already.

References. A page's count is the number of stored manifests that name it: the
worker manifests of this format (version 2) and the bases, where a manifest
relative to a base holds the pages outside the base's page set plus one
reference to the base itself. So the 40 MiB interpreter image of a Python
component is referenced once, by its base, however many workers it has.

Crash safety. Every change of a count is written in the same atomic batch as
the manifest whose writing or deletion causes it, a page is written in the
batch that takes its count from 0 and deleted (with its count) in the batch
that takes it to 0. After a crash at any point, each count therefore equals
the references recomputed from the stored manifests, which is what
``golemish store check`` verifies. Garbage collection is that deletion: there
is no separate sweep that a crash could interrupt half-way. Counts are read,
changed and written under one lock (:attr:`SharedPages.lock`) by the one
process that writes the store.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import zstandard

from .backends.base import Backend, Op
from .errors import CorruptionError, StoreError

if TYPE_CHECKING:
    from .manifest import Manifest

_U64 = struct.Struct(">Q")
BASE_REF = b"b"


def base_ref(base_id: str) -> bytes:
    return BASE_REF + base_id.encode()


def is_page_key(key: bytes) -> bool:
    return len(key) == 16


#: Pages a restore reads from the store in one multi-get (16 KiB pages: 8 MiB).
FRAME_BATCH = 512


class _PagesLock:
    """A re-entrant thread lock that also holds the backend's cross-process lock (a
    PostgreSQL advisory lock shared by executors) while held at the outermost level."""

    def __init__(self, outer: Callable[[], Any] | None) -> None:
        self._lock = threading.RLock()
        self._outer = outer
        self._depth = 0
        self._held: Any = None

    def __enter__(self) -> _PagesLock:
        self._lock.acquire()
        self._depth += 1
        if self._depth == 1 and self._outer is not None:
            try:
                cm = self._outer()
                cm.__enter__()
            except BaseException:
                self._depth -= 1
                self._lock.release()
                raise
            self._held = cm
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._depth == 1 and self._held is not None:
                cm, self._held = self._held, None
                cm.__exit__(None, None, None)
        finally:
            self._depth -= 1
            self._lock.release()


class SharedPages:
    """Reference-counted, content-addressed pages and the component bases."""

    def __init__(self, backend: Backend, compressor: Callable[[], zstandard.ZstdCompressor],
                 decode: Callable[[bytes, str], Manifest]) -> None:
        self._b = backend
        self._cctx = compressor
        self._decode = decode
        #: Orders every read-modify-write of counts (snapshots of parallel workers, and
        #: of other executors when the backend offers a cross-process ``pages_lock``).
        self.lock = _PagesLock(getattr(backend, "pages_lock", None))
        self._bases: dict[str, Manifest] = {}

    # -- counts ----------------------------------------------------------------
    def count(self, key: bytes) -> int:
        raw = self._b.get("pagerefs", key)
        return 0 if raw is None else _U64.unpack(raw)[0]

    def has(self, h: bytes) -> bool:
        """Is the page stored? (A stored page always has a count above zero.)"""
        return self._b.get("pagerefs", h) is not None

    def refs(self, m: Manifest) -> frozenset[bytes]:
        """The keys one stored manifest holds a reference on."""
        if not m.base:
            return m.nonzero()
        base = self.base(m.base)
        if base is None:
            raise CorruptionError("snapshot base", m.base, "missing",
                                  hint="run `golemish store check`")
        return (m.nonzero() - base.nonzero()) | {base_ref(m.base)}

    def delta_ops(self, delta: dict[bytes, int], provided: dict[bytes, bytes],
                  fetch: Callable[[bytes], bytes] | None = None) -> list[Op]:
        """Ops applying count changes; call holding :attr:`lock`, write them with it held.

        A page going from 0 references is written from ``provided`` (compressed) or,
        when another worker's batch deleted it since it was captured, from ``fetch``
        (its uncompressed bytes). A page reaching 0 is deleted with its count.
        """
        ops: list[Op] = []
        cctx = None
        for key, d in delta.items():
            if d == 0:
                continue
            cur = self.count(key)
            n = cur + d
            if n < 0:
                raise CorruptionError("page references", key.hex(),
                                      f"count {cur} cannot drop by {-d}",
                                      hint="run `golemish store check`")
            if n == 0:
                ops.append(("pagerefs", key, None))
                if is_page_key(key):
                    ops.append(("cpages", key, None))
                continue
            ops.append(("pagerefs", key, _U64.pack(n)))
            if cur == 0 and is_page_key(key):
                z = provided.get(key)
                if z is None:
                    if fetch is None:
                        raise StoreError(f"page {key.hex()} is neither stored nor given")
                    cctx = cctx or self._cctx()
                    z = cctx.compress(fetch(key))
                ops.append(("cpages", key, z))
            elif cur == 0 and key.startswith(BASE_REF) and \
                    self._b.get("bases", key[len(BASE_REF):]) is None:
                raise CorruptionError("snapshot base", key[len(BASE_REF):].decode(), "missing")
        return ops

    # -- pages -------------------------------------------------------------------
    def load(self, hashes: Iterable[bytes], verify: Callable[[bytes, bytes], bytes]
             ) -> Iterator[tuple[bytes, bytes]]:
        """(hash, verified page) for each hash; a missing one raises CorruptionError."""
        for h, z in self.frames(hashes):
            yield h, verify(h, z)

    def frames(self, hashes: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
        """(hash, stored zstd frame, not yet verified) for each hash, read in batches;
        a missing one raises CorruptionError."""
        todo = list(hashes)
        for i in range(0, len(todo), FRAME_BATCH):
            batch = todo[i:i + FRAME_BATCH]
            for h, z in zip(batch, self._b.get_many("cpages", batch, bulk=True)):
                if z is None:
                    raise CorruptionError("snapshot page", h.hex(), "missing")
                yield h, z

    # -- bases -------------------------------------------------------------------
    def base(self, base_id: str) -> Manifest | None:
        m = self._bases.get(base_id)
        if m is None:
            blob = self._b.get("bases", base_id.encode())
            if blob is None:
                return None
            m = self._bases[base_id] = self._decode(blob, f"base {base_id}")
        return m

    def add_base_ops(self, base_id: str, manifest: Manifest,
                     pages: dict[bytes, bytes]) -> list[Op]:
        """Ops storing a base (``pages``: uncompressed, at least those not stored yet).

        Call holding :attr:`lock`; a base already stored gives no ops.
        """
        if self._b.get("bases", base_id.encode()) is not None:
            return []
        self._bases.pop(base_id, None)
        delta = {h: 1 for h in manifest.nonzero()}
        ops = self.delta_ops(delta, {}, lambda h: pages[h])
        return [("bases", base_id.encode(), manifest.encode()), *ops]

    def drop_base_ops(self, base_id: str) -> list[Op]:
        """Ops deleting a base no manifest references any more (else none)."""
        m = self.base(base_id)
        if m is None or self.count(base_ref(base_id)):
            return []
        self._bases.pop(base_id, None)
        return [("bases", base_id.encode(), None),
                *self.delta_ops({h: -1 for h in m.nonzero()}, {})]

    def forget_base(self, base_id: str) -> None:
        self._bases.pop(base_id, None)
