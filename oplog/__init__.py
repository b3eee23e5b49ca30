"""golemish.oplog: entries, their encoding and the store. Knows nothing about wasm."""

from .entries import (
    BOOKKEEPING, AtomicBegin, AtomicEnd, EffectBegin, Rewind, Revert, Update, UpdateFailed,
    Create, Entry, HostCall, InvokeEnd, InvokeFailed, InvokeStart, Log, Snapshot, TypedValue,
    decode_entry, encode_entry,
)
from .errors import CorruptionError, GolemishError, StoreClosedError, StoreError, StoreInUseError
from .backends.base import Op
from .manifest import Manifest, page_hash
from .snapshots import SnapshotStore
from .stats import CommitObserver, CommitStats
from .store import Store, WorkerOplog, content_hash, open_store

__all__ = [
    "BOOKKEEPING", "AtomicBegin", "AtomicEnd", "EffectBegin", "Rewind", "Revert", "Update",
    "UpdateFailed",
    "Create", "Entry", "HostCall", "InvokeEnd", "InvokeFailed", "InvokeStart", "Log",
    "Snapshot", "TypedValue", "decode_entry", "encode_entry", "Manifest", "SnapshotStore",
    "page_hash",
    "CorruptionError", "GolemishError", "StoreClosedError", "StoreError", "StoreInUseError",
    "Store", "WorkerOplog", "content_hash", "open_store", "Op", "CommitObserver",
    "CommitStats",
]
