"""What the Runtime tells about its workers: ids by filter, one worker's description
(status, oplog, snapshots), the loaded ones and their last recovery. Part of Runtime.
"""

from __future__ import annotations

from typing import Any

from golemish.oplog import CorruptionError, Entry, InvokeStart

from .errors import NotFoundError
from .history import read_history
from .snapshot.dirty import UffdTracker
from .worker import RecoveryReport, Worker


class Describe:
    """Runtime's read-only views of its workers (a mixin: it uses the Runtime's store,
    worker cache and turns)."""

    store: Any
    _guard: Any
    _workers: Any
    _turns: Any

    def list_promises(self) -> list[dict[str, Any]]:
        return self.store.list_promises()

    def resident(self) -> dict[str, tuple[RecoveryReport | None, int]]:
        """Workers loaded in this process: id -> (their last recovery, when it ended in ns)
        (the console, metrics, `server status`).

        Reads two attributes a worker sets once per recovery, so it needs no turn.
        """
        with self._guard:
            loaded = list(self._workers.items())
        return {wid: (w.last_recovery, w.last_recovery_ns) for wid, w in loaded}

    def worker_ids(self, component: str | None = None, status: str | None = None,
                   version: int | None = None) -> list[str]:
        """Worker ids, narrowed by what the stored metadata says without describing
        each worker (``worker_info`` reads its oplog and snapshots): a stored
        ``suspended`` or ``failed`` is the status; ``idle`` and ``interrupted`` are
        told apart by the oplog, so those filters keep every other worker."""
        out = []
        for m in self.store.list_workers():
            if component and m.get("component") != component:
                continue
            if version is not None and m.get("version") != version:
                continue
            stored = m.get("status") if m.get("status") in ("suspended", "failed") else None
            if status in ("suspended", "failed") and stored != status:
                continue
            if status in ("idle", "interrupted") and stored is not None:
                continue
            out.append(m["id"])
        return out

    def worker_info(self, worker_id: str) -> dict[str, Any]:
        meta = self.store.get_worker(worker_id)
        if meta is None:
            raise NotFoundError(f"no worker {worker_id}")
        # A loaded worker is only read by the thread holding its turn (an invocation may
        # close its image); while one runs, describe it from the store.
        w = None
        resident = self._cached(worker_id) is not None
        if not self._turns.busy(worker_id):
            w = self._cached(worker_id)
        w = w or Worker(self, meta, None)
        oplog = w.oplog
        history = read_history(oplog)  # one pass for the count and the status
        invocations = sum(1 for _, k in history.kinds if k == InvokeStart.KIND)
        lo, hi = oplog.archive_span()
        return {**meta, "status": w.status(history), "oplog_length": oplog.last_index,
                "oplog_archived": hi - lo,
                "invocations": invocations, "snapshot_policy": str(w.policy),
                "memory_limit": w.memory_limit, "time_limit": w.time_limit,
                "resident": resident, **self._snapshot_info(w)}

    def _snapshot_info(self, w: Worker) -> dict[str, Any]:
        snaps = self.store.snapshots
        indexes = snaps.indexes(w.id)
        info: dict[str, Any] = {"snapshots": len(indexes), "dirty_tracker": (
            w.image.tracker_name if w.image is not None
            else "uffd" if UffdTracker.available() else "hash")}
        if not indexes:
            return info
        manifests = []
        for i in indexes:
            try:
                manifests.append(snaps.manifest(w.id, i))
            except CorruptionError:
                pass
        pages, stored = snaps.page_sizes(w.id)
        latest = manifests[0] if manifests else None
        logical = sum(len(m.nonzero()) * m.page_size for m in manifests)
        unique = pages * (latest.page_size if latest else 1)
        info.update(
            latest_snapshot=indexes[0],
            memory_bytes=latest.memory_size if latest else None,
            snapshot_pages=pages, snapshot_stored_bytes=stored,
            dedup_ratio=round(logical / unique, 2) if unique else None,
            compression_ratio=round(unique / stored, 2) if stored else None)
        return info

    def oplog(self, worker_id: str, start: int = 1,
              end: int | None = None) -> list[tuple[int, Entry]]:
        if self.store.get_worker(worker_id) is None:
            raise NotFoundError(f"no worker {worker_id}")
        return list(self.store.oplog(worker_id).read(start, end))
