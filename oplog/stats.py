"""What commits cost: counters anyone may read, and observers called on each event.

Two events, reported by the layers that see them:

* a *commit* (:class:`~golemish.oplog.worker_oplog.WorkerOplog.commit` and every
  Store batch that carries oplog entries): how many entries it wrote and how long
  the caller waited for it, fsync and group-commit wait included;
* an *fsync* (the RocksDB backend with ``sync=True``): one synced write, which
  with group commit covers the batches of several concurrent committers.

An observer implements any of ``on_commit(entries, seconds)`` and
``on_fsync(batches, entries, seconds)`` (the server's metrics turn them into
Prometheus histograms). Observers are called outside every lock, on the
committing thread; one that raises is dropped from the list and counted in
:attr:`CommitStats.observer_errors`, so a broken observer never fails a commit.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol


class CommitObserver(Protocol):
    """Either method may be left out."""

    def on_commit(self, entries: int, seconds: float) -> None: ...
    def on_fsync(self, batches: int, entries: int, seconds: float) -> None: ...


class CommitStats:
    """Counters of one store's commits and fsyncs (one per backend, never global)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Batches carrying oplog entries that were written.
        self.commits = 0
        #: Oplog entries those batches wrote.
        self.entries = 0
        #: Synced writes (0 without ``sync``); a group commit counts once.
        self.fsyncs = 0
        #: Batches written by those fsyncs (>= fsyncs: the rest shared one).
        self.fsync_batches = 0
        #: Seconds spent in synced writes.
        self.fsync_seconds = 0.0
        self.observer_errors = 0
        self._observers: list[Any] = []

    def add_observer(self, observer: Any) -> None:
        with self._lock:
            self._observers = [*self._observers, observer]

    def remove_observer(self, observer: Any) -> None:
        with self._lock:
            self._observers = [o for o in self._observers if o is not observer]

    def counters(self) -> dict[str, float]:
        """A consistent copy of the counters."""
        with self._lock:
            return {"commits": self.commits, "entries": self.entries, "fsyncs": self.fsyncs,
                    "fsync_batches": self.fsync_batches, "fsync_seconds": self.fsync_seconds}

    # -- reported by the layers ----------------------------------------------------
    def committed(self, entries: int, seconds: float) -> None:
        with self._lock:
            self.commits += 1
            self.entries += entries
            observers = self._observers
        for o in observers:
            fn = getattr(o, "on_commit", None)
            if fn is not None:
                self._call(o, fn, entries, seconds)

    def synced(self, batches: int, entries: int, seconds: float) -> None:
        with self._lock:
            self.fsyncs += 1
            self.fsync_batches += batches
            self.fsync_seconds += seconds
            observers = self._observers
        for o in observers:
            fn = getattr(o, "on_fsync", None)
            if fn is not None:
                self._call(o, fn, batches, entries, seconds)

    def _call(self, observer: Any, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self.remove_observer(observer)
            with self._lock:
                self.observer_errors += 1
