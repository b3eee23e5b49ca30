"""`golemish store recover`: the one explicit way past a damaged write-ahead log.

golemish opens RocksDB so that a damaged WAL record is an error (see
``backends/rocksdb.py``). Getting the store usable again means a point-in-time
recovery: keep every write before the damaged record, drop it and everything
after. :func:`inspect_wal` says what that would lose *before* anything is done,
by comparing the state a point-in-time open gives (read-only) with the log
records after it, read by :mod:`golemish.oplog.wal`: each oplog append carries
its worker's head (``meta head\\0 id`` = last index), so the heads in the lost
records give each worker's lost index range exactly. :func:`recover_wal` then
does it, holding the store's lock throughout.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import rocksdict

from .backends.rocksdb import (
    _cf_options, _lock, check_openable, db_options, translate_open_error,
)
from .backends.base import TABLES
from .backends.rocks_guard import Guard, read_guard
from .errors import CorruptionError, StoreError
from .worker_oplog import HEAD_PREFIX
from .wal import log_files, read_log

_U64 = struct.Struct(">Q")


@dataclass(frozen=True)
class Loss:
    """Oplog entries ``first..last`` of ``worker`` that recovery drops."""

    worker: str
    first: int
    last: int
    #: Known only from a record that failed its checksum (the worker id may be off).
    from_damaged: bool = False


@dataclass
class WalDamage:
    """What a point-in-time recovery of a store would lose."""

    path: str
    detail: str                       # RocksDB's complaint
    kept_sequence: int                # writes up to this sequence number are kept
    lost_writes: int = 0              # write batches dropped
    unreadable: int = 0               # of those, damaged beyond reading
    other_ops: int = 0                # dropped writes that are not oplog appends
    losses: list[Loss] = field(default_factory=list)
    #: The log itself reads fine, but the write guard says acknowledged writes are
    #: gone (a log file deleted or cut short), or the guard file is missing or damaged.
    guard: str | None = None

    def describe(self) -> list[str]:
        if self.guard is not None:
            return [f"{self.path}: {self.guard}",
                    f"recovering accepts the store as it is now (every write up to sequence "
                    f"number {self.kept_sequence}); writes after it, if any, are gone and "
                    "cannot be listed: the log that held them is gone"]
        lines = [f"write-ahead log of {self.path} is damaged: {self.detail}",
                 f"a point-in-time recovery keeps every write up to sequence number "
                 f"{self.kept_sequence} and drops {self.lost_writes} write(s) after it:"]
        for loss in self.losses:
            lines.append(f"  {loss.worker}: oplog entries {loss.first}..{loss.last}"
                         + (" (read from the damaged record itself)" if loss.from_damaged
                            else ""))
        if not self.losses:
            lines.append("  no oplog entries")
        if self.other_ops:
            lines.append(f"  {self.other_ops} other write(s) (worker metadata, snapshots, "
                         "components, promises)")
        if self.unreadable:
            lines.append(f"  {self.unreadable} damaged record(s) could not be read at all; "
                         "they may have held more")
        return lines

    def to_json(self) -> dict:
        return {"path": self.path, "detail": self.detail, "kept_sequence": self.kept_sequence,
                "lost_writes": self.lost_writes, "unreadable": self.unreadable,
                "other_writes": self.other_ops, "guard": self.guard,
                "losses": [vars(x) for x in self.losses]}


def _open(path: str, mode: rocksdict.DBRecoveryMode, *, readonly: bool) -> rocksdict.Rdict:
    opts = db_options(mode)
    names = set(rocksdict.Rdict.list_cf(path, opts))
    access = (rocksdict.AccessType.read_only(False) if readonly
              else rocksdict.AccessType.read_write())
    return rocksdict.Rdict(path, opts, column_families={n: _cf_options(n) for n in names},
                           access_type=access)


def _heads(db: rocksdict.Rdict) -> dict[str, int]:
    if "meta" not in rocksdict.Rdict.list_cf(db.path(), db_options()):
        return {}
    meta = db.get_column_family("meta")
    heads: dict[str, int] = {}
    it = meta.iter()
    it.seek(HEAD_PREFIX)
    while it.valid() and it.key().startswith(HEAD_PREFIX):
        if len(it.value()) == 8:
            heads[it.key()[len(HEAD_PREFIX):].decode(errors="replace")] = \
                _U64.unpack(it.value())[0]
        it.next()
    it.status()
    del it, meta
    return heads


def _inspect(path: str) -> WalDamage | None:
    try:
        db = _open(path, rocksdict.DBRecoveryMode.tolerate_corrupted_tail_records(),
                   readonly=True)
    except Exception as e:
        err = translate_open_error(path, e)
        if not (isinstance(err, CorruptionError) and err.what == "write-ahead log"):
            raise err from None
        detail = err.detail
    else:
        try:
            return _inspect_guard(path, db.latest_sequence_number())
        finally:
            db.close()
    try:
        db = _open(path, rocksdict.DBRecoveryMode.point_in_time(), readonly=True)
        try:
            kept = db.latest_sequence_number()
            heads = _heads(db)
        finally:
            db.close()
    except StoreError:
        raise
    except Exception as e:
        raise translate_open_error(path, e) from None
    damage = WalDamage(path, detail, kept)
    lost: dict[str, tuple[int, bool]] = {}
    for f in log_files(path):
        for batch in read_log(f):
            if batch.intact and (batch.sequence is None or batch.sequence <= kept):
                continue
            damage.lost_writes += 1
            if not batch.intact and not batch.decoded:
                damage.unreadable += 1
            appends = 0
            for _, _, key, value in batch.ops:
                if key.startswith(HEAD_PREFIX) and value is not None and len(value) == 8:
                    appends += 1
                    wid = key[len(HEAD_PREFIX):].decode(errors="replace")
                    index = _U64.unpack(value)[0]
                    prev = lost.get(wid)
                    if prev is None or index > prev[0]:
                        lost[wid] = (index, not batch.intact)
            # Each append is its entry and its head; the rest is other data.
            damage.other_ops += max(0, len(batch.ops) - 2 * appends)
    for wid, (last, damaged) in sorted(lost.items()):
        first = heads.get(wid, 0) + 1
        if last >= first:
            damage.losses.append(Loss(wid, first, last, damaged))
    return damage


def _inspect_guard(path: str, recovered: int) -> WalDamage | None:
    """Damage the write guard sees in a store whose log reads fine (None: none)."""
    try:
        acknowledged = read_guard(path)
    except CorruptionError as e:
        return WalDamage(path, e.detail, recovered, guard=f"the write guard is {e.detail}")
    if acknowledged is None:
        return WalDamage(path, "write guard missing", recovered,
                         guard="the write guard (golemish.seq) is missing, so whether "
                               "acknowledged writes were lost cannot be told")
    if recovered < acknowledged:
        return WalDamage(path, "acknowledged writes missing", recovered,
                         lost_writes=acknowledged - recovered,
                         guard=f"writes up to sequence number {acknowledged} were "
                               f"acknowledged, but the store holds only up to {recovered} "
                               "(a log file was deleted or cut short)")
    return None


def inspect_wal(path: str) -> WalDamage | None:
    """What a point-in-time recovery would lose; None when the WAL is intact. Changes nothing."""
    check_openable(path, create=False)
    fd = _lock(path)
    try:
        return _inspect(path)
    finally:
        os.close(fd)


def recover_wal(path: str) -> WalDamage | None:
    """Do the point-in-time recovery :func:`inspect_wal` describes, and return that report.

    Only for a store whose WAL is damaged (None, and nothing done, otherwise). The
    writes after the damaged record are gone afterwards: this is the explicit,
    confirmed loss that DESIGN.md invariant 8 allows, and nothing else does it.
    """
    check_openable(path, create=False)
    fd = _lock(path)
    try:
        damage = _inspect(path)
        if damage is None:
            return None
        mode = (rocksdict.DBRecoveryMode.tolerate_corrupted_tail_records()
                if damage.guard is not None else rocksdict.DBRecoveryMode.point_in_time())
        try:
            db = _open(path, mode, readonly=False)
        except Exception as e:
            raise translate_open_error(path, e) from None
        cfs = {n: db.get_column_family(n) for n in TABLES
               if n in rocksdict.Rdict.list_cf(path, db_options())}
        for cf in cfs.values():  # move what was kept into tables, retiring the old log
            cf.flush()
        cfs.clear()
        Guard(path, db.latest_sequence_number()).close()  # what the store now holds
        db.close()
        return damage
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)
