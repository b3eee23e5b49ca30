"""Snapshot manifests and the page store. Pages are bytes here: nothing about wasm.

Layout (backend tables)::

    pages      worker id \\0 xxh3-128(page)      -> zstd(page)
    snapshots  worker id \\0 u64be(oplog index)  -> manifest blob

A manifest lists *every* page of memory at one oplog index, as 16-byte content
hashes (all-zero bytes for a zero page, which is never stored), plus the
mutable globals and table sizes. Restoring one never walks a chain of deltas;
incremental capture only changes which pages have to be hashed and written.

Integrity: a page's key is its content hash, so a page is verified by hashing
what was read; a manifest blob carries a CRC32 of its compressed body. Pages are
kept per worker so that pruning a worker's old snapshots can find unreferenced
pages by looking at that worker's own manifests only.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import xxhash
import zstandard

from . import codec
from .backends.base import Backend, Op
from .errors import CorruptionError

HASH_SIZE = 16
ZERO_HASH = bytes(HASH_SIZE)
MANIFEST_VERSION = 1
_U64 = struct.Struct(">Q")
_BLOB_HEAD = struct.Struct("<BI")  # version, crc32 of the compressed body


#: Largest decompressed manifest accepted: 16-byte hashes of 4 GiB of 4 KiB pages is 16 MiB.
_MAX_BODY = 64 << 20


def _pairs(v: Any, *types: type) -> bool:
    return type(v) is tuple and all(
        type(x) is tuple and len(x) == len(types) and all(map(isinstance, x, types)) for x in v)


def _well_typed(m: Manifest) -> bool:
    """A decoded manifest's fields have their declared types (a forged one may not)."""
    return (all(type(x) is int for x in (m.index, m.page_size, m.memory_size, m.created_ns))
            and m.page_size > 0 and type(m.component_hash) is str and type(m.pages) is bytes
            and type(m.host) is bytes and _pairs(m.globals, str, str, (int, float))
            and _pairs(m.tables, str, int) and _pairs(m.stats, str, int))


def page_hash(data: bytes | memoryview) -> bytes:
    """Content address of a page: xxh3-128 (never all-zero for real data)."""
    h = xxhash.xxh3_128_digest(data)
    return h if h != ZERO_HASH else b"\1" + h[1:]


@dataclass(frozen=True)
class Manifest:
    """Everything needed to rebuild a worker's memory and globals at one oplog index."""

    index: int
    component_hash: str
    page_size: int
    memory_size: int
    #: 16 bytes per page in order; ZERO_HASH marks a zero page.
    pages: bytes
    #: (export name, wasm type, value); floats are stored as their bit patterns.
    globals: tuple[tuple[str, str, int], ...] = ()
    #: (export name, size) of every table: checked, never restored.
    tables: tuple[tuple[str, int], ...] = ()
    created_ns: int = 0
    #: Invocations and host calls the worker had made, for reports.
    stats: tuple[tuple[str, int], ...] = field(default=())
    #: The host's own state for this worker (opaque here), e.g. a retry policy.
    host: bytes = b""

    @property
    def page_count(self) -> int:
        return len(self.pages) // HASH_SIZE

    def page(self, n: int) -> bytes:
        return self.pages[n * HASH_SIZE:(n + 1) * HASH_SIZE]

    def hashes(self) -> Iterator[bytes]:
        p = self.pages
        for off in range(0, len(p), HASH_SIZE):
            yield p[off:off + HASH_SIZE]

    def nonzero(self) -> frozenset[bytes]:
        """The distinct non-zero page hashes, computed once (a manifest is immutable)."""
        cached = self.__dict__.get("_nonzero")
        if cached is None:
            p = self.pages
            cached = frozenset([p[o:o + HASH_SIZE] for o in range(0, len(p), HASH_SIZE)])
            cached -= {ZERO_HASH}
            object.__setattr__(self, "_nonzero", cached)  # a cache, not a field
        return cached

    def encode(self) -> bytes:
        body = codec.encode([self.index, self.component_hash, self.page_size, self.memory_size,
                             self.pages, [list(g) for g in self.globals],
                             [list(t) for t in self.tables], self.created_ns,
                             [list(s) for s in self.stats], self.host])
        packed = zstandard.ZstdCompressor(level=3).compress(body)
        return _BLOB_HEAD.pack(MANIFEST_VERSION, zlib.crc32(packed)) + packed

    @classmethod
    def decode(cls, blob: bytes, *, key: str) -> Manifest:
        def bad(detail: str) -> CorruptionError:
            return CorruptionError("snapshot manifest", key, detail,
                                   hint="an older snapshot or full replay will be used")
        if len(blob) < _BLOB_HEAD.size:
            raise bad("truncated")
        version, crc = _BLOB_HEAD.unpack_from(blob)
        packed = blob[_BLOB_HEAD.size:]
        if version != MANIFEST_VERSION:
            raise bad(f"unknown manifest version {version}")
        if zlib.crc32(packed) != crc:
            raise bad("checksum mismatch")
        try:
            # The frame states its size: a forged one would have us allocate it all.
            size = zstandard.get_frame_parameters(packed).content_size
            if size != zstandard.CONTENTSIZE_UNKNOWN and size > _MAX_BODY:
                raise bad(f"body of {size} bytes exceeds {_MAX_BODY}")
            v = codec.decode(zstandard.ZstdDecompressor().decompress(
                packed, max_output_size=_MAX_BODY))
            m = cls(v[0], v[1], v[2], v[3], v[4], tuple(tuple(g) for g in v[5]),
                    tuple(tuple(t) for t in v[6]), v[7], tuple(tuple(s) for s in v[8]), v[9])
        except (codec.DecodeError, zstandard.ZstdError, IndexError, TypeError) as e:
            raise bad(f"undecodable: {e}") from None
        if not _well_typed(m):
            raise bad("a field has the wrong type")
        if len(m.pages) % HASH_SIZE or m.page_count * m.page_size != m.memory_size:
            raise bad("page list does not cover the memory size")
        return m


class SnapshotStore:
    """Pages and manifests of all workers, on a Backend."""

    def __init__(self, backend: Backend, zstd_level: int = 1) -> None:
        self._b = backend
        self._level = zstd_level
        # zstd contexts must not be used by two threads at once (python-zstandard:
        # "assume instances are not thread safe"); workers run in parallel threads.
        self._tls = threading.local()
        self._decoded: dict[tuple[bytes, bytes], Manifest] = {}

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

    # -- writing -------------------------------------------------------------
    def has_page(self, worker_id: str, h: bytes) -> bool:
        return self._b.get("pages", self._prefix(worker_id) + h) is not None

    def page_ops(self, worker_id: str, pages: dict[bytes, bytes]) -> tuple[list[Op], int]:
        """Batch ops storing compressed pages; returns (ops, compressed bytes)."""
        prefix = self._prefix(worker_id)
        ops: list[Op] = []
        size = 0
        cctx = self._cctx
        for h, data in pages.items():
            z = cctx.compress(data)
            size += len(z)
            ops.append(("pages", prefix + h, z))
        return ops, size

    def manifest_op(self, worker_id: str, manifest: Manifest) -> Op:
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

    def manifest(self, worker_id: str, index: int) -> Manifest:
        key = f"{worker_id}@{index}"
        skey = self._snap_key(worker_id, index)
        blob = self._b.get("snapshots", skey)
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
        prefix = self._prefix(worker_id)
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
        prefix = self._prefix(worker_id)
        left = set(wanted)
        dctx = self._dctx
        for key, z in self._b.scan("pages", prefix, worker_id.encode() + b"\1", bulk=True):
            h = key[len(prefix):]
            if h not in left:
                continue
            data = self._verified(worker_id, h, z, dctx)
            left.discard(h)
            yield h, data
        if left:
            h = min(left)
            raise CorruptionError("snapshot page", f"{worker_id}:{h.hex()}",
                                  f"missing ({len(left)} page(s) in all)")

    def page_sizes(self, worker_id: str) -> tuple[int, int]:
        """(number of stored pages, compressed bytes) for one worker."""
        p = self._prefix(worker_id)
        n = size = 0
        for _, v in self._b.scan("pages", p, worker_id.encode() + b"\1"):
            n += 1
            size += len(v)
        return n, size

    # -- retention -------------------------------------------------------------
    def prune_ops(self, worker_id: str, keep: int, pending: Manifest | None = None) -> list[Op]:
        """Ops deleting all but the newest ``keep`` snapshots and their orphaned pages.

        ``pending`` is a manifest being written in the same batch; it counts as kept.
        """
        indexes = self.indexes(worker_id)
        if pending is not None:
            indexes = [pending.index] + [i for i in indexes if i != pending.index]
        doomed = indexes[keep:]
        if not doomed:
            return []
        kept: list[frozenset[bytes]] = [pending.nonzero()] if pending is not None else []
        for i in indexes[:keep]:
            if pending is None or i != pending.index:
                try:
                    kept.append(self.manifest(worker_id, i).nonzero())
                except CorruptionError:
                    pass
        ops: list[Op] = []
        orphans: set[bytes] = set()
        for i in doomed:
            try:
                # Subtract the kept sets one by one instead of building their union:
                # after the first, only the few pages that changed are left to check.
                cand = self.manifest(worker_id, i).nonzero()
                for k in kept:
                    cand = cand - k
                orphans |= cand
            except CorruptionError:
                pass  # a damaged manifest: its pages are found by delete_all later
            ops.append(("snapshots", self._snap_key(worker_id, i), None))
        prefix = self._prefix(worker_id)
        ops.extend(("pages", prefix + h, None) for h in orphans)
        return ops

    def delete_all_ops(self, worker_id: str) -> list[Op]:
        p, end = self._prefix(worker_id), worker_id.encode() + b"\1"
        return ([("snapshots", k, None) for k, _ in self._b.scan("snapshots", p, end)]
                + [("pages", k, None) for k, _ in self._b.scan("pages", p, end)])


def changed_pages(old: Manifest | None, new_pages: Sequence[bytes]) -> int:
    """How many page hashes differ from the old manifest (for reports)."""
    if old is None:
        return len(new_pages)
    return sum(1 for i, h in enumerate(new_pages) if i >= old.page_count or old.page(i) != h)
