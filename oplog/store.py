"""The golemish store: components, workers and their oplogs on top of a Backend.

One worker's oplog (entries, recorded length, archive) is worker_oplog.py.

Key layout (tables are the backend's)::

    components  name \\0 u32be(version)      -> checked JSON metadata
    wasm        content hash (hex)           -> module bytes (verified by hash on read)
    compiled    cache key                    -> serialized native code
    workers     worker id                    -> checked JSON metadata
    oplog       worker id \\0 u64be(index)    -> encoded entry (see entries)
    idempotency worker id \0 key             -> u64be(index of the InvokeStart)
    promises    promise id                   -> checked JSON (worker, state, payload)
    invocations enqueued and scheduled invocations (see invocations.py)
    meta        b"format"                    -> store format version
    meta        b"head\\0" worker id         -> u64be(last oplog index), the recorded length

Every batch that writes oplog entries writes the worker's head with them, so the
head is the truth about how long an oplog is: a scan that ends before it (a lost
table file, a block RocksDB could not read) is corruption, never a shorter
history. Entries a worker's oplog holds in memory (worker_oplog.py) go into the
next such batch, whichever method writes it.

Worker ids and component names never contain NUL, so ``id \\0`` is an exact
prefix and big-endian indexes sort numerically.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from .backends.base import Backend, Op
from .backends.group_commit import GroupConfig
from .entries import Entry, Snapshot
from .errors import CorruptionError, StoreError
from .invocations import InvocationQueue
from .manifest import Manifest
from .snapshots import SnapshotStore
from .stats import CommitStats
from .worker_oplog import WorkerOplog

#: 2: every worker's length is recorded (its head). A format 1 store is upgraded when
#: opened for writing; read-only, its workers without a head are read by their scan.
STORE_FORMAT = b"2"
_FORMATS_READ = (b"1", STORE_FORMAT)
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_CRC = struct.Struct("<I")
#: Key suffix of the sha256 kept beside each compiled artifact (table ``compiled``).
COMPILED_DIGEST_SUFFIX = b"#sha256"


def _pack_json(obj: Any) -> bytes:
    body = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    return _CRC.pack(zlib.crc32(body)) + body


def _unpack_json(raw: bytes, what: str, key: str) -> Any:
    body = raw[_CRC.size:]
    if len(raw) < _CRC.size or _CRC.unpack_from(raw)[0] != zlib.crc32(body):
        raise CorruptionError(what, key, "checksum mismatch",
                              hint="run `golemish store check`")
    try:
        return json.loads(body)
    except ValueError as e:
        raise CorruptionError(what, key, f"undecodable: {e}") from None


def content_hash(data: bytes) -> str:
    """The content address of a module: sha256, hex."""
    return hashlib.sha256(data).hexdigest()


class Store:
    """Typed access to everything golemish keeps. Create with :func:`open_store`."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        #: Commit and fsync counters and observers (see golemish.oplog.stats).
        self.stats: CommitStats = getattr(backend, "stats", None) or CommitStats()
        self.snapshots = SnapshotStore(backend)
        self.invocations = InvocationQueue(backend)
        readonly = getattr(backend, "readonly", False)
        fmt = backend.get("meta", b"format")
        if fmt is None and not readonly:
            backend.put("meta", b"format", STORE_FORMAT)
        elif fmt is not None and fmt not in _FORMATS_READ:
            raise StoreError(f"store {backend.location} has format {fmt!r}; "
                             f"this golemish reads formats {b', '.join(_FORMATS_READ)!r}")
        elif fmt == b"1" and not readonly:
            self._record_heads()
            fmt = STORE_FORMAT
        #: False for a format 1 store opened read-only: its heads may be missing.
        self.heads_required = fmt in (None, STORE_FORMAT)

    def _record_heads(self) -> None:
        """Upgrade from format 1: record each worker's length, as its scan finds it."""
        ops: list[Op] = []
        for k, _ in self.backend.scan("workers", b""):
            log = WorkerOplog(self.backend, k.decode(), require_head=False)
            if log.recorded_last is None and log.stored_last:
                ops.append(log.head_op(log.stored_last))
        ops.append(("meta", b"format", STORE_FORMAT))
        self.backend.write(ops)

    @property
    def location(self) -> str:
        return self.backend.location

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- components -------------------------------------------------------
    @staticmethod
    def _component_key(name: str, version: int) -> bytes:
        return name.encode() + b"\0" + _U32.pack(version)

    def add_component(self, meta: dict[str, Any], wasm: bytes,
                      blobs: dict[str, bytes] | None = None) -> None:
        """Store one component version with its bytes (and the files it carries, by
        sha256, in the same content-addressed table), atomically."""
        key = self._component_key(meta["name"], meta["version"])
        self.backend.write([
            ("wasm", meta["hash"].encode(), wasm),
            *(("wasm", d.encode(), b) for d, b in (blobs or {}).items()),
            ("components", key, _pack_json(meta)),
        ])

    def put_component_meta(self, meta: dict[str, Any]) -> None:
        """Replace one existing version's metadata (its settings); its bytes stay."""
        key = self._component_key(meta["name"], meta["version"])
        self.backend.put("components", key, _pack_json(meta))

    def component_versions(self, name: str, *, deleted: bool = False) -> list[dict[str, Any]]:
        """The versions of one component; ``deleted`` includes the tombstones of deleted
        ones (their numbers are never given out again)."""
        prefix = name.encode() + b"\0"
        metas = [_unpack_json(v, "component", f"{name} v{_U32.unpack_from(k, len(prefix))[0]}")
                 for k, v in self.backend.scan("components", prefix, name.encode() + b"\1")]
        return metas if deleted else [m for m in metas if not m.get("deleted")]

    def get_component(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        """One version's metadata; the latest when version is None."""
        if version is None:
            versions = self.component_versions(name)
            return versions[-1] if versions else None
        raw = self.backend.get("components", self._component_key(name, version))
        meta = None if raw is None else _unpack_json(raw, "component", f"{name} v{version}")
        return None if meta is None or meta.get("deleted") else meta

    def list_components(self) -> list[dict[str, Any]]:
        metas = [_unpack_json(v, "component", k.split(b"\0")[0].decode())
                 for k, v in self.backend.scan("components", b"")]
        return [m for m in metas if not m.get("deleted")]

    def delete_component(self, name: str, version: int) -> None:
        """Replace one version by a tombstone; its bytes go unless another version has them.

        The caller checks that no worker uses it (a worker's oplog names its version).
        """
        meta = self.get_component(name, version)
        if meta is None:
            raise StoreError(f"component {name} has no version {version}")
        ops: list[Op] = [("components", self._component_key(name, version), _pack_json(
            {"name": name, "version": version, "hash": meta["hash"], "deleted": True}))]
        others = [m for m in self.list_components()
                  if (m["name"], m["version"]) != (name, version)]
        used = {f[1] for m in others for f in m.get("files", [])} | {m["hash"] for m in others}
        ops += [("wasm", d.encode(), None) for d in {f[1] for f in meta.get("files", [])}
                if d not in used]
        if not any(m["hash"] == meta["hash"] for m in others):
            ops.append(("wasm", meta["hash"].encode(), None))
            with self.snapshots.pages.lock:
                # Its bases (one per page size), unless a worker's snapshot still names
                # one: an updated worker's older snapshots may.
                prefix = meta["hash"].encode() + b":"
                for k, _ in self.backend.scan("bases", prefix, meta["hash"].encode() + b";"):
                    ops += self.snapshots.pages.drop_base_ops(k.decode())
                self.backend.write(ops)
            return
        self.backend.write(ops)

    def get_wasm(self, digest: str) -> bytes:
        raw = self.backend.get("wasm", digest.encode())
        if raw is None:
            raise CorruptionError("module bytes", digest[:16], "missing")
        if content_hash(raw) != digest:
            raise CorruptionError("module bytes", digest[:16], "content hash mismatch")
        return raw

    def get_compiled(self, key: str) -> bytes | None:
        """Serialized native code, as stored: check it with :meth:`compiled_digest`."""
        return self.backend.get("compiled", key.encode())

    def compiled_digest(self, key: str) -> bytes | None:
        """The sha256 recorded for the compiled code under ``key`` (None: not recorded).

        Native code is loaded without any check by the engine, so whoever loads it
        (from the store or from a file cache) compares it with this first.
        """
        return self.backend.get("compiled", key.encode() + COMPILED_DIGEST_SUFFIX)

    def put_compiled(self, key: str, code: bytes) -> None:
        """Store compiled code with its sha256, in one batch."""
        self.backend.write([("compiled", key.encode(), code),
                            ("compiled", key.encode() + COMPILED_DIGEST_SUFFIX,
                             hashlib.sha256(code).digest())])

    # -- workers ----------------------------------------------------------
    def get_worker(self, worker_id: str) -> dict[str, Any] | None:
        raw = self.backend.get("workers", worker_id.encode())
        return None if raw is None else _unpack_json(raw, "worker", worker_id)

    def put_worker(self, meta: dict[str, Any]) -> None:
        self.backend.put("workers", meta["id"].encode(), _pack_json(meta))

    @staticmethod
    def worker_op(meta: dict[str, Any]) -> Op:
        """The op replacing a worker's metadata, to batch with a commit of its oplog."""
        return ("workers", meta["id"].encode(), _pack_json(meta))

    def _commit(self, log: WorkerOplog, index: int, ops: list[Op]) -> None:
        """Write ``ops`` (which carry entries up to ``index``) with the entries waiting
        in ``log`` and its head, in one batch."""
        n = index - log.durable_index
        t0 = time.perf_counter()
        self.backend.write([*log.pending_ops(), *ops, log.head_op(index)])
        log.committed(index)
        self.stats.committed(n, time.perf_counter() - t0)

    def create_worker(self, meta: dict[str, Any], create_entry: Entry) -> WorkerOplog:
        """Write the worker's metadata and oplog entry 1 in one batch."""
        log = self.oplog(meta["id"])
        if log.last_index:
            raise StoreError(f"worker {meta['id']} already has an oplog")
        index, op = log.append_ops(create_entry)
        self._commit(log, index, [("workers", meta["id"].encode(), _pack_json(meta)), op])
        return log

    def list_workers(self) -> list[dict[str, Any]]:
        return [_unpack_json(v, "worker", k.decode()) for k, v in self.backend.scan("workers", b"")]

    def delete_worker(self, worker_id: str) -> None:
        """Remove the worker and its oplog (retention is explicit: this is the user's call)."""
        ops: list[Any] = self.oplog(worker_id).delete_ops()
        p = worker_id.encode() + b"\0"
        ops.extend(("idempotency", k, None)
                   for k, _ in self.backend.scan("idempotency", p, worker_id.encode() + b"\1"))
        ops.append(("workers", worker_id.encode(), None))
        with self.snapshots.space_lock(worker_id), self.snapshots.pages.lock:
            self.backend.write(ops + self.snapshots.delete_all_ops(worker_id))
        self.snapshots.forget(worker_id)

    def oplog(self, worker_id: str) -> WorkerOplog:
        """The worker's oplog; see :attr:`WorkerOplog.damage` for one that disagrees with
        its recorded length (reading or appending then raises CorruptionError)."""
        return WorkerOplog(self.backend, worker_id, require_head=self.heads_required)

    def append_with_worker(self, log: WorkerOplog, entry: Entry, meta: dict[str, Any],
                           extra: Sequence[Op] = ()) -> int:
        """Append one entry and replace the worker's metadata in one batch (an update or
        a revert changes both, and a crash must never leave one without the other)."""
        index, op = log.append_ops(entry)
        self._commit(log, index, [op, ("workers", meta["id"].encode(), _pack_json(meta)),
                                  *extra])
        return index

    def idempotency_ops(self, worker_id: str, lo: int, hi: int) -> list[Op]:
        """Ops forgetting the idempotency keys of invocations begun in lo..hi."""
        p = worker_id.encode() + b"\0"
        return [("idempotency", k, None)
                for k, v in self.backend.scan("idempotency", p, worker_id.encode() + b"\1")
                if lo <= _U64.unpack(v)[0] <= hi]

    def fork_worker(self, parent: str, meta: dict[str, Any], at: int,
                    snapshot_indexes: list[int]) -> WorkerOplog:
        """Create worker ``meta["id"]`` with a copy of ``parent``'s oplog up to ``at``, its
        idempotency keys there, and the listed snapshot manifests, in one batch.

        The manifests are links to the parent's and keep naming the same pages: the fork
        joins the parent's page space (see snapshots), so nothing grows with memory.
        """
        child = meta["id"]
        log = WorkerOplog(self.backend, child)
        if log.last_index or self.get_worker(child) is not None:
            raise StoreError(f"worker {child} already exists")
        source = WorkerOplog(self.backend, parent)
        ops: list[Op] = [("oplog", log._key(i), raw) for i, raw in source.raw(1, at)]
        if len(ops) != at:
            raise CorruptionError("oplog", parent, f"has {len(ops)} of entries 1..{at}",
                                  hint="run `golemish store check`")
        p, c = parent.encode() + b"\0", child.encode() + b"\0"
        ops += [("idempotency", c + k[len(p):], v)
                for k, v in self.backend.scan("idempotency", p, parent.encode() + b"\1")
                if _U64.unpack(v)[0] <= at]
        ops.append(("workers", child.encode(), _pack_json(meta)))
        ops.append(log.head_op(at))
        with self.snapshots.space_lock(parent), self.snapshots.pages.lock:
            own = [i for i in snapshot_indexes
                   if self.backend.get("snapshots", p + _U64.pack(i)) is not None]
            self.backend.write(ops + self.snapshots.fork_ops(parent, child, own))
        self.snapshots.forget(parent, child)
        log.committed(at)
        return log

    # -- idempotency keys -----------------------------------------------------
    def idempotent_index(self, worker_id: str, key: str) -> int | None:
        """The InvokeStart index of the invocation that used ``key``, if any."""
        raw = self.backend.get("idempotency", worker_id.encode() + b"\0" + key.encode())
        return None if raw is None else _U64.unpack(raw)[0]

    def append_invocation(self, log: WorkerOplog, entry: Entry, key: str | None) -> int:
        """Add an InvokeStart to the entries waiting in ``log`` and, with a key, the key
        with it: both are written by the same commit (the invocation's end at the
        latest, before anyone sees its result)."""
        if key is None:
            return log.buffer(entry)
        index = log.last_index + 1
        return log.buffer(entry, [("idempotency",
                                   log.worker_id.encode() + b"\0" + key.encode(),
                                   _U64.pack(index))])

    # -- promises ----------------------------------------------------------------
    def get_promise(self, promise_id: str) -> dict[str, Any] | None:
        raw = self.backend.get("promises", promise_id.encode())
        return None if raw is None else _unpack_json(raw, "promise", promise_id)

    def put_promise(self, promise: dict[str, Any]) -> None:
        self.backend.put("promises", promise["id"].encode(), _pack_json(promise))

    def list_promises(self) -> list[dict[str, Any]]:
        return [_unpack_json(v, "promise", k.decode()) for k, v in self.backend.scan("promises", b"")]

    def write_snapshot(self, log: WorkerOplog, entry: Snapshot, manifest: Manifest,
                       page_ops: list[Op], keep: int, *, archive: bool = False,
                       fetch: Callable[[bytes], bytes] | None = None) -> int:
        """Pages, manifest, Snapshot entry and pruning of old snapshots in one batch.

        ``manifest.index`` must be the index the entry gets; ``fetch(h)`` reads a page
        of it from memory if the page store lost it since capture (another worker's
        pruning). Returns that index. With
        ``archive``, whole chunks of entries older than the oldest kept snapshot then
        move to the archive (a second batch: a crash between the two loses nothing).
        """
        index, entry_op = log.append_ops(entry)
        if manifest.index != index:
            raise StoreError(f"manifest for index {manifest.index} written at {index}")
        # Forks share pages, and workers share the page store: see snapshots, pagestore.
        with self.snapshots.space_lock(log.worker_id), self.snapshots.pages.lock:
            # The entries waiting in the log go first: the snapshot stands on them.
            self._commit(log, index, [entry_op, *self.snapshots.snapshot_ops(
                log.worker_id, manifest, page_ops, keep, fetch)])
            self.snapshots.settled(log.worker_id)
        if archive:
            kept = self.snapshots.indexes(log.worker_id)
            if kept:
                moves = log.archive_ops(min(kept))
                if moves:
                    self.backend.write(moves)
        return index


def store_path(url: str) -> str | None:
    """The directory of an on-disk (RocksDB) store URL; None for other schemes."""
    if url.startswith("rocksdb://"):
        return url[len("rocksdb://"):]
    return None if "://" in url else url


def open_store(url: str, *, sync: bool = False, create: bool = False,
               readonly: bool = False, group: GroupConfig | None = None,
               observer: Any = None, exclusive: bool = True) -> Store:
    """Open a store by URL: ``memory://``, ``rocksdb:///path``, a plain path (RocksDB) or
    ``postgres://user@host/db`` (PostgreSQL, see backends/postgres.py).

    Only an existing store is opened (NoStoreError otherwise) unless ``create``:
    `golemish deploy` and `golemish store init` create, nothing else does.
    ``readonly`` opens it for reading, also while another process writes to it.
    ``memory://`` is always a new, empty store. ``group`` tunes the group commit
    of synced writes (see backends/group_commit.py). An ``observer`` hears of every
    commit (see observe.py). ``exclusive=False`` (PostgreSQL only) lets several
    executors share the store; they coordinate through leases.
    """
    if url.startswith("memory://"):
        from .backends.memory import MemoryBackend
        return Store(_observed(MemoryBackend(), observer, sync))
    backend: Backend
    if url.startswith(("postgres://", "postgresql://")):
        # The server's durability settings apply: ``sync`` adds nothing there.
        from .backends.postgres import PostgresBackend
        backend = PostgresBackend(url, create=create, readonly=readonly, exclusive=exclusive)
    else:
        path = store_path(url)
        if path is None:
            raise StoreError(f"unknown store URL scheme in {url!r} "
                             "(use memory://, rocksdb:// or postgres://)")
        from .backends.rocksdb import RocksBackend
        backend = RocksBackend(path, sync=sync, create=create, readonly=readonly, group=group)
    try:
        return Store(_observed(backend, observer, sync))
    except BaseException:
        backend.close()
        raise


def _observed(backend: Any, observer: Any, sync: bool) -> Any:
    if observer is None:
        return backend
    from .observe import ObservedBackend
    return ObservedBackend(backend, observer, sync)
