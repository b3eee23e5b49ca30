"""Prometheus metrics of `golemish serve` (GET /metrics), with prometheus_client.

:class:`Metrics` is the runtime's observer (runtime/observe.py): the runtime calls
it at invocations, recoveries, snapshots and store commits, and it updates
counters and histograms in a registry of its own (no process-wide state). Gauges
that describe the store (workers resident and evicted, pending timers, promises
and scheduled invocations) are computed at scrape time by :class:`StateCollector`.
The names are an interface (the console's dashboard reads them): see README.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..executor import Runtime

_LATENCY = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_COMMIT = (5e-6, 1e-5, 2.5e-5, 5e-5, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
           0.025, 0.1, 1.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Queued hot events are folded in (by a short-lived thread) once this many wait, so
#: memory stays bounded without scrapes.
_FOLD_AT = 20_000


class Metrics:
    """The observer that turns runtime events into Prometheus series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.invocations = Counter("golemish_invocations_total", "Invocations by outcome "
                                   "(ok, error, suspended)", ["component", "outcome"],
                                   registry=r)
        self.invocation_seconds = Histogram("golemish_invocation_seconds",
                                            "Invocation latency in the runtime",
                                            ["component"], buckets=_LATENCY, registry=r)
        self.recoveries = Counter("golemish_recoveries_total", "Workers made live, by "
                                  "mode (snapshot, replay, fresh)", ["mode"], registry=r)
        self.recovery_seconds = Histogram("golemish_recovery_seconds", "Recovery duration",
                                          ["mode"], buckets=_LATENCY, registry=r)
        self.snapshots = Counter("golemish_snapshots_total", "Snapshots written", registry=r)
        self.snapshot_bytes = Counter("golemish_snapshot_bytes_total",
                                      "Compressed page bytes snapshots stored", registry=r)
        self.snapshot_seconds = Histogram("golemish_snapshot_seconds", "Snapshot duration",
                                          buckets=_LATENCY, registry=r)
        self.append_seconds = Histogram("golemish_oplog_append_seconds", "Time of a store "
                                        "commit holding oplog entries", buckets=_COMMIT,
                                        registry=r)
        self.fsync_seconds = Histogram("golemish_fsync_seconds", "Time of a synced commit "
                                       "(--sync: one fsync each)", buckets=_COMMIT,
                                       registry=r)
        self.batch_entries = Histogram("golemish_commit_batch_entries", "Oplog entries per "
                                       "commit", buckets=_BATCH, registry=r)
        # Children looked up once per label value, not on every event.
        self._inv: dict[tuple[str, str], Any] = {}
        self._inv_s: dict[str, Any] = {}
        # Hot events (one per invocation, one per commit) are queued as tuples and
        # folded into the metrics at scrape time: a deque append is ~0.1 us where a
        # prometheus_client observe takes a lock and costs a few us.
        self._events: deque[tuple[Any, ...]] = deque()
        self._folding, self._folding_lock = False, threading.Lock()

    # -- the runtime's observer interface ------------------------------------------
    def invoked(self, component: str, outcome: str, seconds: float) -> None:
        self._events.append((component, outcome, seconds))
        if len(self._events) > _FOLD_AT:
            self._fold_soon()

    def committed(self, entries: int, seconds: float, synced: bool) -> None:
        self._events.append((entries, seconds, synced))
        if len(self._events) > _FOLD_AT:
            self._fold_soon()

    def _fold_soon(self) -> None:
        """Fold in a thread of its own, so no invocation waits for it."""
        with self._folding_lock:
            if self._folding:
                return
            self._folding = True

        def run() -> None:
            try:
                self.fold()
            finally:
                self._folding = False
        threading.Thread(target=run, name="golemish-metrics-fold", daemon=True).start()

    def fold(self) -> None:
        """Apply the queued events (before a scrape; when many have queued up)."""
        pop = self._events.popleft
        while True:
            try:
                ev = pop()
            except IndexError:
                return
            if len(ev) == 3 and isinstance(ev[0], str):
                self._fold_invocation(*ev)
            else:
                entries, seconds, synced = ev
                if entries:
                    self.append_seconds.observe(seconds)
                    self.batch_entries.observe(entries)
                if synced:
                    self.fsync_seconds.observe(seconds)

    def _fold_invocation(self, component: str, outcome: str, seconds: float) -> None:
        c = self._inv.get((component, outcome))
        if c is None:
            c = self._inv[(component, outcome)] = self.invocations.labels(component, outcome)
        h = self._inv_s.get(component)
        if h is None:
            h = self._inv_s[component] = self.invocation_seconds.labels(component)
        c.inc()
        h.observe(seconds)

    def recovered(self, mode: str, seconds: float) -> None:
        self.recoveries.labels(mode).inc()
        self.recovery_seconds.labels(mode).observe(seconds)

    def snapshotted(self, stored_bytes: int, seconds: float) -> None:
        self.snapshots.inc()
        self.snapshot_bytes.inc(stored_bytes)
        self.snapshot_seconds.observe(seconds)

    # -- scraping --------------------------------------------------------------------
    def attach(self, rt: Runtime) -> None:
        """Add the scrape-time gauges of ``rt``."""
        self.registry.register(StateCollector(rt))

    def render(self) -> bytes:
        self.fold()
        return generate_latest(self.registry)


class StateCollector:
    """Gauges read from the Runtime and its store when Prometheus scrapes."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def describe(self) -> list[Any]:
        return []  # dynamic: not checked against other collectors at registration

    def collect(self) -> Iterator[Any]:
        store = self.rt.store
        metas = store.list_workers()
        resident = len(self.rt.resident())
        workers = GaugeMetricFamily("golemish_workers", "Workers loaded in memory "
                                    "(resident) and only in the store (evicted)",
                                    labels=["state"])
        workers.add_metric(["resident"], resident)
        workers.add_metric(["evicted"], max(0, len(metas) - resident))
        yield workers
        timers = sum(1 for m in metas if m.get("status") == "suspended"
                     and "until_ns" in (m.get("suspended") or {}))
        yield GaugeMetricFamily("golemish_pending_timers",
                                "Workers in a durable sleep", value=timers)
        promises = sum(1 for p in store.list_promises() if p.get("state") == "pending")
        yield GaugeMetricFamily("golemish_pending_promises",
                                "Promises not completed yet", value=promises)
        yield GaugeMetricFamily("golemish_scheduled_invocations",
                                "Enqueued and scheduled invocations not finished yet",
                                value=store.invocations.pending_count())
