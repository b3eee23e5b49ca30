"""Snapshot manifests and the page store. Pages are bytes here: nothing about wasm.

Layout (backend tables)::

    snapshots  worker id \\0 u64be(oplog index)  -> manifest blob
    cpages, pagerefs, bases                      -> the shared page store (pagestore.py)
    pages      worker id \\0 xxh3-128(page)      -> zstd(page), format 1 manifests only

Manifests of format 2 (written since the shared page store) keep their pages in
the shared, reference-counted store of pagestore.py, where every worker's pages
are stored once per store. Format 1 manifests, written by earlier versions, keep
theirs per *page space* as described below; both are read, pruned and checked,
so an existing store needs no upgrade step: its format 1 snapshots age out
through retention (the last 3 are kept) and take their pages with them.

A manifest lists *every* page of memory at one oplog index, as 16-byte content
hashes (all-zero bytes for a zero page, which is never stored), plus the
mutable globals and table sizes. Restoring one never walks a chain of deltas;
incremental capture only changes which pages have to be hashed and written.

    pagespaces b"w" worker id                -> the page space of a fork
               b"m" space \0 worker id      -> b"" (the workers sharing a space)

Integrity: a page's key is its content hash, so a page is verified by hashing
what was read; a manifest blob carries a CRC32 of its compressed body. Pages are
kept per *page space*, which is the worker's own id unless it is a fork: a fork
shares the space of the worker it was forked from, so forking copies a manifest,
not pages. Pruning (or deleting) a worker finds unreferenced pages by looking at
its own manifests and, in a shared space, at those of every other member, so no
worker can delete a page another one still needs.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace

import zstandard

from .backends.base import Backend, Op
from .errors import CorruptionError
from .manifest import HASH_SIZE, Manifest, MANIFEST_VERSION, page_hash
from .pagestore import SharedPages

#: First byte of a fork's link to its parent's manifest (never a manifest version).
_LINK = b"\xff"
_U64 = struct.Struct(">Q")


class SnapshotStore:
    """Pages and manifests of all workers, on a Backend."""

    def __init__(self, backend: Backend, zstd_level: int = 1) -> None:
        self._b = backend
        self._level = zstd_level
        # zstd contexts must not be used by two threads at once (python-zstandard:
        # "assume instances are not thread safe"); workers run in parallel threads.
        self._tls = threading.local()
        self._decoded: dict[tuple[bytes, bytes], Manifest] = {}
        #: worker id -> (page space, shared with other workers?); a space never changes
        #: for a worker's life, and forks invalidate the entries they touch.
        self._spaces: dict[str, tuple[str, bool]] = {}
        #: Per shared space: one lock over "is this page stored?" answers and pruning.
        self._space_locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        #: Pages a snapshot being captured relies on without writing them (shared spaces):
        #: another member's pruning must keep them until that snapshot is written.
        self._vouched: dict[str, set[bytes]] = {}
        #: The shared, reference-counted page store (format 2 manifests).
        self.pages = SharedPages(backend, lambda: self._cctx,
                                 lambda blob, key: Manifest.decode(blob, key=key))
        #: Write format 2 manifests into the shared store; False writes format 1, as
        #: golemish did before it (kept to test that such stores stay readable).
        self.shared = True

    @property
    def _cctx(self) -> zstandard.ZstdCompressor:
        c = getattr(self._tls, "cctx", None)
        if c is None:
            c = self._tls.cctx = zstandard.ZstdCompressor(level=self._level)
        return c

    @property
    def _dctx(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._tls, "dctx", None)
        if d is None:
            d = self._tls.dctx = zstandard.ZstdDecompressor()
        return d

    def _remember(self, key: bytes, blob: bytes, m: Manifest) -> None:
        """Manifests by (key, exact blob) this process wrote or decoded: each snapshot
        re-reads the kept ones to prune, and decoding them and building their page sets
        is O(pages) of Python every time."""
        if len(self._decoded) >= 8:
            self._decoded.pop(next(iter(self._decoded)))
        self._decoded[(key, blob)] = m

    @staticmethod
    def _prefix(worker_id: str) -> bytes:
        return worker_id.encode() + b"\0"

    def _snap_key(self, worker_id: str, index: int) -> bytes:
        return self._prefix(worker_id) + _U64.pack(index)

    # -- page spaces ---------------------------------------------------------------
    def space(self, worker_id: str) -> str:
        """The page space the worker's pages live in (its own id unless a fork)."""
        return self._space(worker_id)[0]

    def _space(self, worker_id: str) -> tuple[str, bool]:
        got = self._spaces.get(worker_id)
        if got is None:
            raw = self._b.get("pagespaces", b"w" + worker_id.encode())
            space = raw.decode() if raw is not None else worker_id
            shared = space != worker_id or bool(self.members(space))
            got = self._spaces[worker_id] = (space, shared)
        return got

    def _pages_prefix(self, worker_id: str) -> bytes:
        return self._prefix(self._space(worker_id)[0])

    def members(self, space: str) -> list[str]:
        """Workers registered as sharing ``space`` (empty for an unshared one)."""
        p = b"m" + space.encode() + b"\0"
        return [k[len(p):].decode()
                for k, _ in self._b.scan("pagespaces", p, b"m" + space.encode() + b"\1")]

    def share_ops(self, parent: str, child: str) -> list[Op]:
        """Ops putting ``child``'s pages in ``parent``'s space (a fork)."""
        space = self.space(parent)
        ops: list[Op] = [("pagespaces", b"m" + space.encode() + b"\0" + w.encode(), b"")
                         for w in (parent, child)]
        if child != space:
            ops.append(("pagespaces", b"w" + child.encode(), space.encode()))
        return ops

    def forget(self, *worker_ids: str) -> None:
        """Drop cached space facts (after a fork or a delete changed them)."""
        for w in worker_ids:
            self._spaces.pop(w, None)

    def space_lock(self, worker_id: str) -> threading.RLock:
        """The lock that orders page reuse against pruning within the worker's space."""
        space = self.space(worker_id)
        with self._guard:
            return self._space_locks.setdefault(space, threading.RLock())

    def settled(self, worker_id: str) -> None:
        """The worker's snapshot batch is written: its vouched pages are referenced now."""
        self._vouched.pop(worker_id, None)

    def _others_keep(self, worker_id: str) -> set[bytes]:
        """Pages other members of a shared space reference or rely on."""
        space = self.space(worker_id)
        keep: set[bytes] = set()
        for other in {space, *self.members(space)} - {worker_id}:
            keep |= self._vouched.get(other, set())
            for i in self.indexes(other):
                try:
                    keep |= self.manifest(other, i).nonzero()
                except CorruptionError:
                    pass
        return keep

    # -- writing -------------------------------------------------------------
    def has_page(self, worker_id: str, h: bytes) -> bool:
        if self.shared:
            return self.pages.has(h)
        space, shared = self._space(worker_id)
        if not shared:
            return self._b.get("pages", self._prefix(space) + h) is not None
        with self.space_lock(worker_id):
            present = self._b.get("pages", self._prefix(space) + h) is not None
            if present:
                self._vouched.setdefault(worker_id, set()).add(h)
            return present

    def page_ops(self, worker_id: str, pages: dict[bytes, bytes]) -> tuple[list[Op], int]:
        """Batch ops storing compressed pages; returns (ops, compressed bytes)."""
        table, prefix = ("cpages", b"") if self.shared else ("pages",
                                                              self._pages_prefix(worker_id))
        ops: list[Op] = []
        size = 0
        cctx = self._cctx
        for h, data in pages.items():
            z = cctx.compress(data)
            size += len(z)
            ops.append((table, prefix + h, z))
        return ops, size

    def as_written(self, manifest: Manifest) -> Manifest:
        """The manifest in the format this store writes."""
        return manifest if self.shared or not manifest.shared else \
            replace(manifest, shared=False, base="")

    def manifest_op(self, worker_id: str, manifest: Manifest) -> Op:
        manifest = self.as_written(manifest)
        key, blob = self._snap_key(worker_id, manifest.index), manifest.encode()
        self._remember(key, blob, manifest)
        return ("snapshots", key, blob)

    # -- reading -------------------------------------------------------------
    def indexes(self, worker_id: str) -> list[int]:
        """Oplog indexes of this worker's stored snapshots, newest first."""
        p = self._prefix(worker_id)
        return [_U64.unpack_from(k, len(p))[0]
                for k, _ in self._b.scan("snapshots", p, worker_id.encode() + b"\1",
                                         reverse=True)]

    def manifest_blob(self, worker_id: str, index: int) -> bytes | None:
        """The stored manifest bytes at (worker, index), following fork links."""
        seen: list[str] = []
        blob = self._b.get("snapshots", self._snap_key(worker_id, index))
        while blob is not None and blob[:1] == _LINK:
            seen.append(worker_id)
            worker_id = blob[1:].decode()
            if worker_id in seen:
                raise CorruptionError("snapshot manifest", f"{seen[0]}@{index}",
                                      "its fork links form a cycle")
            blob = self._b.get("snapshots", self._snap_key(worker_id, index))
        return blob

    def link_op(self, parent: str, child: str, index: int) -> Op:
        """Op giving ``child`` the parent's manifest at ``index`` by reference (a fork).

        A few bytes, whatever the memory size. When the parent prunes or deletes that
        manifest, the link is replaced by a copy in the same batch (see _unlink_ops).
        """
        return ("snapshots", self._snap_key(child, index), _LINK + parent.encode())

    def _unlink_ops(self, worker_id: str, index: int) -> list[Op]:
        """Before (worker, index) goes: copies for the members of its space linking to it."""
        if not self._space(worker_id)[1]:
            return []
        space = self.space(worker_id)
        ops: list[Op] = []
        for other in {space, *self.members(space)} - {worker_id}:
            key = self._snap_key(other, index)
            if self._b.get("snapshots", key) == _LINK + worker_id.encode():
                blob = self.manifest_blob(worker_id, index)
                if blob is not None:
                    ops.append(("snapshots", key, blob))
        return ops

    def manifest(self, worker_id: str, index: int) -> Manifest:
        key = f"{worker_id}@{index}"
        skey = self._snap_key(worker_id, index)
        blob = self.manifest_blob(worker_id, index)
        if blob is None:
            raise CorruptionError("snapshot manifest", key, "missing")
        m = self._decoded.get((skey, blob))
        if m is None:
            m = Manifest.decode(blob, key=key)
            self._remember(skey, blob, m)
        if m.index != index:
            raise CorruptionError("snapshot manifest", key, f"names index {m.index}")
        return m

    @staticmethod
    def _verified(worker_id: str, h: bytes, z: bytes,
                  dctx: zstandard.ZstdDecompressor) -> bytes:
        """Decompress a stored page and check it against its content hash."""
        try:
            data = dctx.decompress(z)
        except zstandard.ZstdError as e:
            raise CorruptionError("snapshot page", f"{worker_id}:{h.hex()}",
                                  f"undecodable: {e}") from None
        if page_hash(data) != h:
            raise CorruptionError("snapshot page", f"{worker_id}:{h.hex()}",
                                  "content hash mismatch")
        return data

    def load_pages(self, worker_id: str, hashes: Iterable[bytes]) -> dict[bytes, bytes]:
        """Fetch and verify pages. A missing or damaged page raises CorruptionError."""
        prefix = self._pages_prefix(worker_id)
        out: dict[bytes, bytes] = {}
        dctx = self._dctx
        for h in hashes:
            z = self._b.get("pages", prefix + h)
            if z is None:
                raise CorruptionError("snapshot page", f"{worker_id}:{h.hex()}", "missing")
            data = self._verified(worker_id, h, z, dctx)
            out[h] = data
        return out

    def stream_pages(self, worker_id: str, wanted: set[bytes]) -> Iterator[tuple[bytes, bytes]]:
        """(hash, verified page) for every wanted page, in one sequential read.

        A worker's stored pages are those of its few kept snapshots, which share most
        pages, so reading them all in key order beats a point read per page. Raises
        CorruptionError for a damaged page, and at the end for any that were missing.
        """
        dctx = self._dctx
        for h, z in self.stream_frames(worker_id, wanted):
            yield h, self._verified(worker_id, h, z, dctx)

    def stream_frames(self, worker_id: str, wanted: Iterable[bytes]
                      ) -> Iterator[tuple[bytes, bytes]]:
        """stream_pages before decompression: (hash, stored zstd frame, unverified)."""
        prefix = self._pages_prefix(worker_id)
        left = set(wanted)
        for key, z in self._b.scan("pages", prefix, prefix[:-1] + b"\1", bulk=True):
            h = key[len(prefix):]
            if h not in left:
                continue
            left.discard(h)
            yield h, z
        if left:
            h = min(left)
            raise CorruptionError("snapshot page", f"{worker_id}:{h.hex()}",
                                  f"missing ({len(left)} page(s) in all)")

    def pages_for(self, worker_id: str, manifest: Manifest) -> PageReader:
        """The page reader a restore of ``manifest`` uses (see runtime restore)."""
        if not manifest.shared:
            return PageReader(worker_id, lambda wanted: self.stream_frames(worker_id, wanted),
                              self._dctx)
        return PageReader(worker_id, self.pages.frames,
                          self._dctx)

    def page_sizes(self, worker_id: str) -> tuple[int, int]:
        """(pages, compressed bytes) stored for the worker: those of its page space
        (format 1) and, in the shared store, those its manifests hold a reference
        on (outside its base; other workers may reference them too)."""
        p = self._pages_prefix(worker_id)
        n = size = 0
        for _, v in self._b.scan("pages", p, p[:-1] + b"\1"):
            n += 1
            size += len(v)
        own: set[bytes] = set()
        for i in self.indexes(worker_id):
            m = self._own_manifest(worker_id, i)
            if m is not None and m.shared:
                try:
                    own |= {k for k in self.pages.refs(m) if len(k) == HASH_SIZE}
                except CorruptionError:
                    pass
        for h in own:
            z = self._b.get("cpages", h)
            if z is not None:
                n += 1
                size += len(z)
        return n, size

    # -- retention -------------------------------------------------------------
    def snapshot_ops(self, worker_id: str, manifest: Manifest, page_ops: list[Op], keep: int,
                     fetch: Callable[[bytes], bytes] | None = None) -> list[Op]:
        """Ops writing one snapshot's pages and manifest and pruning to ``keep``.

        Call holding :meth:`space_lock` and ``pages.lock``; write the ops before
        releasing them (the reference counts are read here). ``fetch(h)`` gives the
        bytes of a page of the manifest that another batch deleted after capture.
        """
        manifest = self.as_written(manifest)
        provided = {k: v for t, k, v in page_ops if t == "cpages" and v is not None}
        ops = [op for op in page_ops if op[0] != "cpages"]
        ops.append(self.manifest_op(worker_id, manifest))
        return ops + self.prune_ops(worker_id, keep, pending=manifest, provided=provided,
                                    fetch=fetch)

    def prune_ops(self, worker_id: str, keep: int, pending: Manifest | None = None,
                  provided: dict[bytes, bytes] | None = None,
                  fetch: Callable[[bytes], bytes] | None = None) -> list[Op]:
        """Ops deleting all but the newest ``keep`` snapshots and their orphaned pages.

        ``pending`` is a manifest being written in the same batch; it counts as kept,
        and its references (format 2) are added here, so that a page that moves from
        a pruned manifest to the new one is never deleted and written again.
        """
        indexes = self.indexes(worker_id)
        if pending is not None:
            indexes = [pending.index] + [i for i in indexes if i != pending.index]
        doomed = indexes[keep:]
        delta: dict[bytes, int] = {}
        if pending is not None and pending.shared:
            for k in self.pages.refs(pending):
                delta[k] = 1
        ops: list[Op] = []
        if doomed:
            ops = self._prune_doomed(worker_id, indexes[:keep], doomed, pending, delta)
        return ops + self.pages.delta_ops(delta, provided or {}, fetch)

    def _own_manifest(self, worker_id: str, index: int) -> Manifest | None:
        """The worker's own manifest at ``index``: None for a fork's link (the parent
        holds the references) and for a damaged one (reported by store check)."""
        blob = self._b.get("snapshots", self._snap_key(worker_id, index))
        if blob is None or blob[:1] == _LINK:
            return None
        try:
            return self.manifest(worker_id, index)
        except CorruptionError:
            return None

    def _release(self, m: Manifest | None, delta: dict[bytes, int]) -> None:
        """Count the references a format 2 manifest being deleted gives up."""
        if m is not None and m.shared:
            try:
                refs = self.pages.refs(m)
            except CorruptionError:
                return  # its base is gone: store check reports both
            for k in refs:
                delta[k] = delta.get(k, 0) - 1

    def _prune_doomed(self, worker_id: str, kept_indexes: list[int], doomed: list[int],
                      pending: Manifest | None, delta: dict[bytes, int]) -> list[Op]:
        kept: list[frozenset[bytes]] = [pending.nonzero()] if pending is not None else []
        for i in kept_indexes:
            if pending is None or i != pending.index:
                try:
                    kept.append(self.manifest(worker_id, i).nonzero())
                except CorruptionError:
                    pass
        ops: list[Op] = []
        orphans: set[bytes] = set()
        for i in doomed:
            unlink = self._unlink_ops(worker_id, i)
            if not unlink:  # copied to a fork instead: the references move with it
                self._release(self._own_manifest(worker_id, i), delta)
            try:
                m = self.manifest(worker_id, i)
                if not m.shared:
                    # Subtract the kept sets one by one instead of building their union:
                    # after the first, only the few pages that changed are left to check.
                    cand = m.nonzero()
                    for k in kept:
                        cand = cand - k
                    orphans |= cand
            except CorruptionError:
                pass  # a damaged manifest: its pages are found by delete_all later
            ops.append(("snapshots", self._snap_key(worker_id, i), None))
            ops.extend(unlink)
        if orphans and self._space(worker_id)[1]:
            orphans -= self._others_keep(worker_id)
        prefix = self._pages_prefix(worker_id)
        ops.extend(("pages", prefix + h, None) for h in orphans)
        return ops

    def fork_ops(self, parent: str, child: str, indexes: Iterable[int]) -> list[Op]:
        """Ops giving ``child`` the parent's manifests at ``indexes`` (a fork).

        A format 2 manifest is copied (its pages gain a reference each: a few bytes
        per page, nothing that grows with memory); a format 1 one is linked, and the
        child joins the parent's page space. Call holding ``pages.lock``.
        """
        ops: list[Op] = []
        delta: dict[bytes, int] = {}
        for i in indexes:
            blob = self.manifest_blob(parent, i)
            if blob is None:
                continue
            if blob[:1] == bytes([MANIFEST_VERSION]):
                ops.append(("snapshots", self._snap_key(child, i), blob))
                for k in self.pages.refs(self.manifest(parent, i)):
                    delta[k] = delta.get(k, 0) + 1
            else:
                ops.append(self.link_op(parent, child, i))
        return ops + self.share_ops(parent, child) + self.pages.delta_ops(delta, {})

    def delete_all_ops(self, worker_id: str) -> list[Op]:
        """Ops deleting the worker's manifests and the pages no one else needs.

        Call it holding :meth:`space_lock` and ``pages.lock``, and :meth:`forget` the
        worker once the ops are written.
        """
        p, end = self._prefix(worker_id), worker_id.encode() + b"\1"
        ops: list[Op] = [("snapshots", k, None) for k, _ in self._b.scan("snapshots", p, end)]
        delta: dict[bytes, int] = {}
        for k, _ in self._b.scan("snapshots", p, end):
            index = _U64.unpack_from(k, len(p))[0]
            unlink = self._unlink_ops(worker_id, index)
            if not unlink:
                self._release(self._own_manifest(worker_id, index), delta)
            ops.extend(unlink)
        ops += self.pages.delta_ops(delta, {})
        space, shared = self._space(worker_id)
        pp = self._prefix(space)
        pages = self._b.scan("pages", pp, space.encode() + b"\1")
        if not shared:
            return ops + [("pages", k, None) for k, _ in pages]
        keep = self._others_keep(worker_id)
        ops += [("pages", k, None) for k, _ in pages if k[len(pp):] not in keep]
        ops.append(("pagespaces", b"m" + space.encode() + b"\0" + worker_id.encode(), None))
        ops.append(("pagespaces", b"w" + worker_id.encode(), None))
        return ops


class PageReader:
    """The pages a restore wants: ``reader(wanted)`` yields (hash, verified page) in
    any order; ``frames(wanted)`` yields (hash, stored zstd frame) for a caller that
    decompresses and checks each page itself, and reports a bad one with ``damaged``."""

    def __init__(self, worker_id: str,
                 frames: Callable[[Sequence[bytes]], Iterator[tuple[bytes, bytes]]],
                 dctx: zstandard.ZstdDecompressor) -> None:
        self.worker_id = worker_id
        self.frames = frames
        self._dctx = dctx

    def __call__(self, wanted: Sequence[bytes]) -> Iterator[tuple[bytes, bytes]]:
        for h, z in self.frames(wanted):
            yield h, SnapshotStore._verified(self.worker_id, h, z, self._dctx)

    def damaged(self, h: bytes, why: str) -> CorruptionError:
        return CorruptionError("snapshot page", f"{self.worker_id}:{h.hex()}", why)
