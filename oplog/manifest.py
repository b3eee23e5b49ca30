"""Snapshot manifests: every page of a worker's memory at one oplog index, as
content hashes, with its globals and table sizes; their encoding, its checks
against damage and forgery, and the page hash. The store of manifests and pages
is snapshots.py."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import xxhash
import zstandard

from . import codec
from .errors import CorruptionError

HASH_SIZE = 16
ZERO_HASH = bytes(HASH_SIZE)
#: 2: pages in the shared store, optionally relative to a base. 1: per page space.
MANIFEST_VERSION = 2
_VERSIONS = (1, 2)
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
            and type(m.base) is str
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
    #: The base (a fresh instance's memory) the manifest is relative to, or "".
    base: str = ""
    #: Pages in the shared store (format 2); False: in the worker's page space (1).
    shared: bool = True

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
        fields = [self.index, self.component_hash, self.page_size, self.memory_size,
                  self.pages, [list(g) for g in self.globals],
                  [list(t) for t in self.tables], self.created_ns,
                  [list(s) for s in self.stats], self.host]
        if self.shared:
            fields.append(self.base)
        elif self.base:
            raise ValueError("a format 1 manifest has no base")
        body = codec.encode(fields)
        packed = zstandard.ZstdCompressor(level=3).compress(body)
        version = MANIFEST_VERSION if self.shared else 1
        return _BLOB_HEAD.pack(version, zlib.crc32(packed)) + packed

    @classmethod
    def decode(cls, blob: bytes, *, key: str) -> Manifest:
        def bad(detail: str) -> CorruptionError:
            return CorruptionError("snapshot manifest", key, detail,
                                   hint="an older snapshot or full replay will be used")
        if len(blob) < _BLOB_HEAD.size:
            raise bad("truncated")
        version, crc = _BLOB_HEAD.unpack_from(blob)
        packed = blob[_BLOB_HEAD.size:]
        if version not in _VERSIONS:
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
            if len(v) != (11 if version == 2 else 10):
                raise bad(f"{len(v)} fields for format {version}")
            m = cls(v[0], v[1], v[2], v[3], v[4], tuple(tuple(g) for g in v[5]),
                    tuple(tuple(t) for t in v[6]), v[7], tuple(tuple(s) for s in v[8]), v[9],
                    v[10] if version == 2 else "", version == 2)
        except (codec.DecodeError, zstandard.ZstdError, IndexError, TypeError) as e:
            raise bad(f"undecodable: {e}") from None
        if not _well_typed(m):
            raise bad("a field has the wrong type")
        if len(m.pages) % HASH_SIZE or m.page_count * m.page_size != m.memory_size:
            raise bad("page list does not cover the memory size")
        return m
