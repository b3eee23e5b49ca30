"""RocksDB backend (rocksdict), the default. One table per column family.

Durability: every write goes to RocksDB's write-ahead log before it returns, so
it survives a process crash. With ``sync=True`` each write is also fsynced,
which makes it survive power loss; concurrent synced writes share one fsync
(group commit, group_commit.py), and each returns once its own batch is durable.

Ownership: one process owns a store at a time. We take an ``flock`` on
``golemish.lock`` (holding our pid) before RocksDB takes its own lock, so a
second process gets "in use by pid N" instead of an engine error string.
Readers (``readonly=True``) take a shared lock and open RocksDB read-only; while
a writer holds the store they open it as a RocksDB *secondary* instead (a
private directory of its own, reading the writer's table files and WAL), so
they see every acknowledged write without waiting.
RocksDB exceptions are translated into golemish errors here and nowhere else.

Never a silent loss (DESIGN.md invariant 8):

* Every scan checks the iterator's status when it stops: RocksDB ends an
  iteration on a corrupt block exactly as at the end of the data, and only the
  status tells the two apart.
* Nothing is created implicitly. A store is created only with ``create=True``;
  it then gets an identity file (:data:`IDENTITY_FILE`). Without it, a path with
  no store is :class:`NoStoreError`, and a directory holding RocksDB files that
  cannot be opened (e.g. its ``CURRENT`` is gone, where ``create_if_missing``
  would start a new database and delete the old tables) is refused untouched.
* The WAL is replayed with ``tolerate_corrupted_tail_records``: a record whose
  checksum fails is an error at open, wherever it is (like
  ``absolute_consistency``, which RocksDB's default point-in-time mode is not:
  that one silently stops at the damage). Only a *truncated* last record is
  dropped, which is what a SIGKILL in the middle of a large write leaves: that
  write never returned, so nothing acknowledged is lost (absolute consistency
  would refuse to open after such a kill). Losing data past a damaged record is
  only ever done by :mod:`golemish.oplog.recover`, explicitly.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import Generator, Iterator, Sequence
from operator import itemgetter

import rocksdict

from ..errors import (
    CorruptionError, NoStoreError, ReadOnlyStoreError, StoreClosedError, StoreError,
    StoreInUseError,
)
from ..stats import CommitStats
from .base import TABLES, Op
from .group_commit import GroupCommit, GroupConfig
from .rocks_guard import Guard, read_guard, verify

_table_of = itemgetter(0)

#: Written when a store is created: its format and a random id. A directory without
#: it (and without RocksDB files of an older golemish) is not a store.
IDENTITY_FILE = "golemish-store.json"
IDENTITY_FORMAT = 1
LOCK_FILE = "golemish.lock"


def _lock(path: str, shared: bool = False) -> int:
    """flock the store: exclusive for a writer (recording our pid), shared for readers."""
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise
        try:
            pid = int(os.pread(fd, 32, 0).decode().strip() or 0) or None
        except ValueError:
            pid = None
        os.close(fd)
        raise StoreInUseError(path, pid) from None
    if not shared:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _rocks_files(path: str) -> list[str]:
    """The names in ``path`` that RocksDB writes (tables, logs, manifests, CURRENT)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise NoStoreError(path) from None
    return [n for n in names if n in ("CURRENT", "IDENTITY") or n.startswith("MANIFEST-")
            or n.endswith((".sst", ".log"))]


def read_identity(path: str) -> dict | None:
    """The store's identity record, or None when the file is absent."""
    try:
        with open(os.path.join(path, IDENTITY_FILE), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StoreError(f"cannot read {IDENTITY_FILE} of {path}: {e.strerror}") from None
    try:
        ident = json.loads(raw)
        if not isinstance(ident, dict) or not isinstance(ident.get("format"), int):
            raise ValueError("no format")
    except ValueError:
        raise CorruptionError("store identity", os.path.join(path, IDENTITY_FILE),
                              "undecodable") from None
    if ident["format"] != IDENTITY_FORMAT:
        raise StoreError(f"store {path} has format {ident['format']}; this golemish reads "
                         f"format {IDENTITY_FORMAT}")
    return ident


def _write_identity(path: str) -> None:
    body = json.dumps({"format": IDENTITY_FORMAT, "store_id": uuid.uuid4().hex,
                       "created_at": time.time()}).encode()
    fd, tmp = tempfile.mkstemp(dir=path, prefix=".identity-")  # mode 0600
    with os.fdopen(fd, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(path, IDENTITY_FILE))


def check_openable(path: str, *, create: bool) -> bool:
    """Decide, touching nothing, whether ``path`` may be opened; True: a new store.

    Raises NoStoreError for a path without a store (unless ``create``) and
    StoreError for a directory whose RocksDB files cannot be opened as they are.
    """
    ident = read_identity(path) if os.path.isdir(path) else None
    rocks = _rocks_files(path)
    if "CURRENT" in rocks:
        return False  # an existing database (an older golemish wrote no identity file)
    if ident is not None or rocks:
        raise CorruptionError(
            "store", path, "its CURRENT file is missing",
            hint="nothing was changed; restore CURRENT (it names the live MANIFEST-* file) "
                 "or the store from a backup")
    if not create:
        raise NoStoreError(path)
    return True


#: Tables keyed by page hash: looked up for nearly always missing keys.
PAGE_TABLES = ("pages", "cpages", "pagerefs")
#: Bytes of write-ahead log kept before RocksDB flushes memtables to tables.
WAL_LIMIT = 4 << 20


def _cf_options(table: str) -> rocksdict.Options:
    opts = rocksdict.Options(raw_mode=True)
    opts.set_write_buffer_size(WAL_LIMIT // 2)
    opts.set_level_zero_file_num_compaction_trigger(COMPACTION_TRIGGER)
    if table not in PAGE_TABLES:
        # Every process flushes what it wrote as a small table file. The oplog's keys
        # only grow, so leveled compaction "trivially moves" each file down unmerged
        # and their number grew with the number of processes (measured: 35 of 42
        # files after 35 CLI runs). Universal compaction merges such runs instead.
        opts.set_compaction_style(rocksdict.DBCompactionStyle.universal())
    if table in PAGE_TABLES:
        # Snapshots look up every new page hash (SnapshotStore.has_page), nearly always a
        # miss. Without a filter a miss searches every table file, so its cost grew with
        # the files earlier snapshots wrote (4 us -> 170 us measured at 256 MiB).
        table_opts = rocksdict.BlockBasedOptions()
        table_opts.set_bloom_filter(10, False)
        opts.set_block_based_table_factory(table_opts)
    return opts


def db_options(recovery: rocksdict.DBRecoveryMode | None = None) -> rocksdict.Options:
    """Database-wide options; ``recovery`` overrides the WAL recovery mode."""
    opts = rocksdict.Options(raw_mode=True)
    # After a crash, opening replays the write-ahead log: a small memtable and
    # WAL bound that to a few tens of ms however long the history, in keeping
    # with recovery bounded by the snapshot interval (64 MiB defaults cost
    # ~0.3 s at 300,000 entries, against ~40 ms with these).
    opts.set_max_total_wal_size(WAL_LIMIT)
    opts.set_wal_recovery_mode(
        recovery or rocksdict.DBRecoveryMode.tolerate_corrupted_tail_records())
    # Each open starts a new info LOG; without a bound every CLI process left one.
    opts.set_keep_log_file_num(INFO_LOGS_KEPT)
    opts.set_max_log_file_size(INFO_LOG_SIZE)
    # Opening loads every table file's handle, by default with a pool of 16 threads
    # started per column family whatever its file count: 240 threads for our 16 tables,
    # each holding a few files (compaction keeps them few), were a third of an open
    # (~22 -> ~13 ms; the server's restart waits for it).
    opts.set_max_file_opening_threads(1)
    return opts


#: Info logs (LOG, LOG.old.*) kept, and the size at which one is rolled.
INFO_LOGS_KEPT = 3
INFO_LOG_SIZE = 1 << 20
#: Sorted runs (universal) or level-0 files (leveled) at which RocksDB compacts.
COMPACTION_TRIGGER = 4
#: Level-0 table files per column family at which a closing writer waits for the
#: compaction RocksDB schedules (a short-lived process would otherwise exit first).
#: Above the trigger on purpose: universal compaction merges sorted runs only down to
#: the trigger and then picks nothing, while its "compaction-pending" property stays 1
#: (score runs/trigger = 1), so at the trigger there may be nothing to wait for; past
#: it, RocksDB always picks a compaction (see compaction_settled).
L0_LIMIT = COMPACTION_TRIGGER + 1
#: Longest such a wait may take, in seconds.
COMPACTION_WAIT_S = 10.0


def translate_open_error(path: str, e: Exception) -> StoreError:
    msg = str(e)
    if "Corruption" not in msg:
        return StoreError(f"cannot open store {path}: {msg}")
    detail = msg.removeprefix("Corruption: ")
    if "MANIFEST" in msg:
        return CorruptionError("manifest", path, detail, hint="nothing was changed")
    if ".sst" in msg:
        return CorruptionError("table file", path, detail, hint="nothing was changed")
    # Corruption found while replaying the write-ahead log names no file.
    return CorruptionError("write-ahead log", path, detail,
                           hint="nothing was changed; `golemish store recover` shows what a "
                                "point-in-time recovery would lose, and does it if you confirm")


class RocksBackend:
    """A RocksDB store at ``path``.

    ``create``: make a new store if there is none (only `deploy` and `store init` do).
    ``readonly``: open for reading only, alongside a writer if one holds the store.
    """

    def __init__(self, path: str, *, sync: bool = False, create: bool = False,
                 readonly: bool = False, group: GroupConfig | None = None) -> None:
        group = group or GroupConfig()
        self.location = path
        self.readonly = readonly
        self._secondary: str | None = None
        new = check_openable(path, create=create and not readonly)
        if new:
            try:
                os.makedirs(path, mode=0o700, exist_ok=True)
                os.chmod(path, 0o700)
            except OSError as e:
                raise StoreError(f"cannot create store directory {path}: {e.strerror}") \
                    from None
        try:
            self._lock_fd: int | None = _lock(path, shared=readonly)
        except StoreInUseError:
            if not readonly:
                raise
            self._lock_fd = None
            self._secondary = tempfile.mkdtemp(prefix="golemish-reader-")
        try:
            opts = db_options()
            opts.create_if_missing(new)
            opts.create_missing_column_families(not readonly)
            names = set(TABLES)
            if not new:
                names |= set(rocksdict.Rdict.list_cf(path, opts)) - {"default"}
            access = rocksdict.AccessType.read_write()
            if self._secondary is not None:
                opts.set_max_open_files(-1)  # required of a secondary instance
                access = rocksdict.AccessType.secondary(self._secondary)
            elif readonly:
                access = rocksdict.AccessType.read_only(False)
            cfs = {n: _cf_options(n) for n in sorted(names)}
            if readonly:  # a store from before a table was added lacks it: read it as empty
                have = set(rocksdict.Rdict.list_cf(path, opts))
                cfs = {n: o for n, o in cfs.items() if n in have}
            self._db: rocksdict.Rdict | None = rocksdict.Rdict(
                path, opts, column_families=cfs, access_type=access)
            recovered = self._db.latest_sequence_number()
            self._guard: Guard | None = None
            if not readonly:
                if new or read_identity(path) is None:
                    _write_identity(path)  # a new store, or one an older golemish made
                    if read_guard(path) is None:
                        Guard(path, recovered).close()
                verify(path, recovered)
                self._guard = Guard(path, recovered)
            elif self._secondary is None and read_identity(path) is not None:
                verify(path, recovered)  # (beside a writer, the guard may be ahead of us)
        except StoreError:
            self._release()
            raise
        except Exception as e:  # rocksdict raises plain Exception with a message
            self._release()
            raise translate_open_error(path, e) from None
        self._cf = {n: self._db.get_column_family(n) for n in TABLES if n in cfs}
        self._handles = {n: self._db.get_column_family_handle(n) for n in self._cf}
        self._wopts = rocksdict.WriteOptions()
        self._wopts.sync = False  # with ``sync``, the group commit syncs the WAL itself
        self.stats = CommitStats()
        #: Synced writes go through a group commit; unsynced ones straight to RocksDB.
        self._group: GroupCommit | None = GroupCommit(
            self._write_group, window_s=group.window_s, max_batches=group.max_batches) \
            if sync and not readonly else None
        # Bulk reads (a restore reads every page of a snapshot once, and checks each
        # page against its content hash): skipping RocksDB's own block checksums and
        # cache filling cuts the read time of a 64 MiB restore by about half.
        self._bulk_read = rocksdict.ReadOptions()
        self._bulk_read.set_verify_checksums(False)
        self._bulk_read.fill_cache(False)
        # Open iterators keep the database (and RocksDB's own LOCK) alive; close()
        # ends them first so that closing really releases the store.
        self._scans: weakref.WeakSet[Generator[tuple[bytes, bytes], None, None]] = \
            weakref.WeakSet()

    def _release(self) -> None:
        guard = getattr(self, "_guard", None)
        if guard is not None:
            guard.close()
            self._guard = None
        if self._lock_fd is not None:
            if not self.readonly:
                os.ftruncate(self._lock_fd, 0)  # nobody's pid while nobody writes
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._secondary is not None:
            shutil.rmtree(self._secondary, ignore_errors=True)
            self._secondary = None

    def _check(self) -> rocksdict.Rdict:
        if self._db is None:
            raise StoreClosedError("store is closed")
        return self._db

    def _writable(self) -> rocksdict.Rdict:
        db = self._check()
        if self.readonly:
            raise ReadOnlyStoreError(f"store {self.location} was opened for reading only")
        return db

    def get(self, table: str, key: bytes) -> bytes | None:
        self._check()
        cf = self._cf.get(table)
        if cf is None:
            return None  # a table this (older) store does not have yet, read-only
        try:
            return cf.get(key)
        except Exception as e:
            raise translate_read_error(table, key, e) from None

    def get_many(self, table: str, keys: Sequence[bytes], *,
                 bulk: bool = False) -> list[bytes | None]:
        # One MultiGet: a restore reads thousands of pages (a point read each cost
        # ~8 us of call overhead at 10,000 pages).
        self._check()
        cf = self._cf.get(table)
        if cf is None:
            return [None] * len(keys)
        if not keys:
            return []
        try:
            return cf.get(list(keys), read_opt=self._bulk_read) if bulk else cf.get(list(keys))
        except Exception as e:
            raise translate_read_error(table, keys[0], e) from None

    def put(self, table: str, key: bytes, value: bytes) -> None:
        if self._group is not None:  # synced: share the fsync with concurrent commits
            self.write([(table, key, value)])
            return
        try:
            if self.readonly:
                raise ReadOnlyStoreError(f"store {self.location} was opened for reading only")
            self._cf[table].put(key, value, self._wopts)
            self._guard.advance(self._db.latest_sequence_number())  # type: ignore[union-attr]
        except StoreError:
            self._check()
            raise
        except Exception as e:
            self._check()
            raise StoreError(f"write to {table} failed: {e}") from None

    def write(self, ops: Sequence[Op]) -> None:
        """One atomic batch. With ``sync``, concurrent writers share the fsync (see
        group_commit); it returns once this batch is durable. Without, no waiting."""
        db = self._writable()
        # A bad batch fails alone, before joining a group (the check runs in C: it is
        # per op, and a commit carries one op per oplog entry).
        if not self._handles.keys() >= set(map(_table_of, ops)):
            bad = next(t for t, _, _ in ops if t not in self._handles)
            raise StoreError(f"write to unknown table {bad!r}")
        if self._group is not None:
            self._group.commit(ops)
            return
        self._write_batches(db, (ops,))

    def _write_batches(self, db: rocksdict.Rdict, groups: Sequence[Sequence[Op]]) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        handles = self._handles
        put, delete = batch.put, batch.delete
        entries = 0
        for ops in groups:
            for table, key, value in ops:
                if value is None:
                    delete(key, handles[table])
                else:
                    put(key, value, handles[table])
                    entries += table == "oplog"
        t0 = time.perf_counter()
        try:
            db.write(batch, self._wopts)
            if self._group is not None:
                # rocksdict holds the GIL through a write with sync=True, which would stop
                # every thread for the length of the fsync (and so every other commit from
                # joining the group); its flush_wal lets go of it. Write, then sync the
                # WAL: as durable as a synced write once this returns. (The entries are
                # visible to readers of the store a moment before they are durable; the
                # writer, which answers its client only after this returns, is not.)
                db.flush_wal(True)
        except Exception as e:
            raise StoreError(f"batch write failed: {e}") from None
        self._guard.advance(db.latest_sequence_number())  # type: ignore[union-attr]
        if self._group is not None:
            self.stats.synced(len(groups), entries, time.perf_counter() - t0)

    def _write_group(self, groups: Sequence[Sequence[Op]]) -> None:
        self._write_batches(self._writable(), groups)

    def scan(self, table: str, start: bytes, end: bytes | None = None, *,
             reverse: bool = False, bulk: bool = False) -> Iterator[tuple[bytes, bytes]]:
        gen = self._scan(table, start, end, reverse, bulk)
        self._scans.add(gen)
        return gen

    def _scan(self, table: str, start: bytes, end: bytes | None, reverse: bool,
              bulk: bool = False) -> Generator[tuple[bytes, bytes], None, None]:
        self._check()
        cf = self._cf.get(table)
        if cf is None:
            return  # a table this (older) store does not have yet, read-only
        it = cf.iter(self._bulk_read) if bulk else cf.iter()
        last: bytes | None = None  # the last key yielded, for the message
        try:
            if reverse:
                if end is None:
                    it.seek_to_last()
                else:
                    it.seek_for_prev(end)
                    if it.valid() and it.key() >= end:
                        it.prev()
                while it.valid():
                    k = it.key()
                    if k < start:
                        return
                    yield k, it.value()
                    last = k
                    it.prev()
            else:
                it.seek(start)
                while it.valid():
                    k = it.key()
                    if end is not None and k >= end:
                        return
                    yield k, it.value()
                    last = k
                    it.next()
            # Not valid any more: the end of the data, or a block that could not be
            # read. Only the status says which.
            it.status()
        except Exception as e:
            if isinstance(e, StoreError):
                raise
            raise translate_read_error(table, start if last is None else last, e,
                                       after=last is not None) from None

    def _settle(self) -> None:
        """Flush, and let RocksDB's compaction of level 0 finish before we exit.

        rocksdict flushes every column family when it lets go of it, so each process
        leaves one table file per table it wrote to; the compaction RocksDB schedules
        once there are a few runs in a background thread that a short-lived process
        would cancel by exiting. Waiting for it here keeps the number of files (and
        the space of deleted data) proportional to the data, not to the number of
        processes that ever opened the store.
        """
        busy = []
        for cf in self._cf.values():
            cf.flush()
            if (cf.property_int_value("rocksdb.num-files-at-level0") or 0) >= L0_LIMIT:
                busy.append(cf)
        deadline = time.monotonic() + COMPACTION_WAIT_S  # a backstop: RocksDB gone astray
        while busy and time.monotonic() < deadline:
            if self._db is not None and self._db.property_int_value("rocksdb.background-errors"):
                return  # a compaction failed (a damaged table file): close() reports it
            busy = [cf for cf in busy if not compaction_settled(cf)]
            if busy:
                time.sleep(0.005)

    def close(self) -> None:
        if self._db is not None:
            for gen in list(self._scans):
                gen.close()
            try:
                if not self.readonly:
                    self._settle()
            except Exception:
                pass  # closing must release the store; the data is in the WAL anyway
            self._cf.clear()
            self._handles.clear()
            try:
                self._db.close()
            except Exception as e:
                # A background compaction that met a damaged table file reports it here.
                if not self.readonly:
                    msg = str(e)
                    if "Corruption" in msg:
                        raise CorruptionError("table file", self.location,
                                              msg.removeprefix("Corruption: "),
                                              hint="run `golemish store check`") from None
                    raise StoreError(f"closing store {self.location} failed: {msg}") from None
            finally:
                self._db = None
                self._release()


def compaction_settled(cf: rocksdict.Rdict) -> bool:
    """Whether a closing writer has nothing more to wait for in this column family.

    Not "compaction-pending is 0": universal compaction leaves a table at exactly
    COMPACTION_TRIGGER sorted runs with that property at 1 and nothing to pick, and a
    close that waited for it to clear waited its whole COMPACTION_WAIT_S (10 s per
    command, measured, once a store had been opened a dozen times). Settled: no
    compaction runs, and level 0 is below L0_LIMIT or RocksDB has nothing pending.
    """
    if cf.property_int_value("rocksdb.num-running-compactions") or 0:
        return False
    return ((cf.property_int_value("rocksdb.num-files-at-level0") or 0) < L0_LIMIT
            or not cf.property_int_value("rocksdb.compaction-pending"))


def translate_read_error(table: str, key: bytes, e: Exception, *,
                         after: bool = False) -> StoreError:
    """A RocksDB read failure; corruption becomes CorruptionError naming the table and key.

    ``key`` is the last key read before the failure (``after``) or the one asked for.
    """
    msg = str(e)
    if "Corruption" not in msg:
        return StoreError(f"read from {table} failed: {msg}")
    detail = msg.removeprefix("Corruption: ")
    owner, sep, rest = key.partition(b"\0")
    index = None
    if sep and table in INDEXED_TABLES and len(rest) == 8:
        index = int.from_bytes(rest, "big")
        if after:
            detail = f"unreadable after index {index}: {detail}"
            index += 1
        name = owner.decode(errors="replace")
    elif sep:
        name = owner.decode(errors="replace")
        detail = f"unreadable {'after' if after else 'at'} key {rest.hex()}: {detail}"
    else:
        name = key.decode(errors="replace")
        detail = f"unreadable {'after' if after else 'at'} this key: {detail}"
    return CorruptionError(table, name, detail, index=index, hint="run `golemish store check`")


#: Tables keyed by worker id \0 u64be(oplog index).
INDEXED_TABLES = ("oplog", "archive", "snapshots")
