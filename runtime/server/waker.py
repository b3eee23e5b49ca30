"""Durable sleeps wake by themselves while the server runs.

A worker suspended in a long durable sleep records ``until_ns`` in its metadata,
and the Runtime then tells its ``sleep_listeners``. The Waker keeps those
deadlines in a heap (:class:`Timers`, pure): one scan of the store at start, then
only the notifications, plus a slow backstop rescan in case one was missed. Its
thread sleeps on a Condition until the earliest deadline minus the lead (resumed
sleepers block in the guest for at most the Runtime's ``suspend_after_s``), then
re-reads each due worker's metadata (it may have been resumed, interrupted or
deleted meanwhile) and resumes it in a thread of its own, so one sleeper never
delays another. A promise's completion resumes its worker in the request that
completes it (Runtime.complete_promise). Invocations that a crash cut off are
finished at start by server/cutoff.py.

Python's full (generation 2) garbage collections stop every thread for as long as
they walk the heap, ~0.5 µs per tracked object here: with 1,000 resident workers
(~380 objects each) that is 200-400 ms, every few seconds, and every sleeper due in
it wakes that late. So while the waker runs it takes them over (:class:`FullCollections`):
Python's own collector keeps its young generations, and the waker runs the full
collection itself when no sleeper is due for twice the last one's pause, or after
``max_wait_s`` whatever is due. ``GOLEMISH_WAKE_GC=python`` leaves Python's collector
as it is (for side-by-side measurement).
"""

from __future__ import annotations

import gc
import heapq
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from golemish.oplog import GolemishError

from ..errors import WorkerSuspendedError
from ..executor import Runtime


def sleepers(metas: Iterable[dict[str, Any]]) -> list[tuple[str, int]]:
    """(worker id, wake time) of the workers suspended in a durable sleep."""
    out = []
    for m in metas:
        susp = m.get("suspended") or {}
        if m.get("status") == "suspended" and "until_ns" in susp:
            out.append((m["id"], int(susp["until_ns"])))
    return out


class Timers:
    """Wake deadlines by worker: the latest one set for a worker counts. Not locked."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._at: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._at)

    def set(self, worker_id: str, until_ns: int) -> None:
        if self._at.get(worker_id) == until_ns:
            return
        self._at[worker_id] = until_ns
        heapq.heappush(self._heap, (until_ns, worker_id))

    def _clean(self) -> None:
        """Drop heap entries superseded by a later ``set`` or already popped."""
        h = self._heap
        while h and self._at.get(h[0][1]) != h[0][0]:
            heapq.heappop(h)

    def next_ns(self) -> int | None:
        self._clean()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ns: int, lead_ns: int) -> list[tuple[str, int]]:
        """The timers ending within ``lead_ns`` of ``now_ns``, earliest first; removed."""
        out = []
        while True:
            self._clean()
            if not self._heap or self._heap[0][0] - now_ns > lead_ns:
                return out
            until, wid = heapq.heappop(self._heap)
            del self._at[wid]
            out.append((wid, until))


def collect_now(now_ns: int, next_due_ns: int | None, pause_s: float, gen1_runs: int,
                since_full_s: float, *, every: int = 10, max_wait_s: float = 60.0) -> bool:
    """Whether to run a full collection now: Python would (``every`` young collections
    since the last), and no sleeper is due within twice its pause (plus 10 ms) — or
    one has waited ``max_wait_s``, so garbage in old cycles is freed in bounded time."""
    if gen1_runs < every:
        return False
    if since_full_s >= max_wait_s:
        return True
    return next_due_ns is None or next_due_ns - now_ns > (2 * pause_s + 0.01) * 1e9


#: Python's thresholds while wakers hold generation 2, and how many do.
_GC_LOCK = threading.Lock()
_SAVED: tuple[int, int, int] = (700, 10, 10)
_HOLDERS = 0


class FullCollections:
    """The process's full garbage collections, moved to moments no sleeper is due.

    ``install`` keeps Python's thresholds for generations 0 and 1 and makes the third
    one unreachable (Python then never picks generation 2 by itself), and freezes the
    objects that exist at start-up (modules, classes: never garbage) so that full
    collections do not walk them again. ``uninstall`` puts both back (when the last
    waker of the process stops).
    """

    def __init__(self, *, max_wait_s: float = 60.0) -> None:
        self.max_wait_s = max_wait_s
        self.pause_s = 0.05  # until measured
        self.collections = 0
        self._last = time.monotonic()
        self._installed = False

    def install(self) -> bool:
        global _SAVED, _HOLDERS
        with _GC_LOCK:
            if self._installed or not gc.isenabled() or gc.get_threshold()[0] == 0:
                return False
            if _HOLDERS == 0:  # the first waker of the process (tests run several)
                _SAVED = gc.get_threshold()
                gc.set_threshold(_SAVED[0], _SAVED[1], 1 << 30)
                gc.freeze()
            _HOLDERS += 1
            self._installed = True
            self._last = time.monotonic()
            return True

    def uninstall(self) -> None:
        global _HOLDERS
        with _GC_LOCK:
            if not self._installed:
                return
            self._installed = False
            _HOLDERS -= 1
            if _HOLDERS == 0:
                gc.set_threshold(*_SAVED)
                gc.unfreeze()

    def due(self, now_ns: int, next_due_ns: int | None) -> bool:
        return self._installed and collect_now(
            now_ns, next_due_ns, self.pause_s, gc.get_count()[2],
            time.monotonic() - self._last, max_wait_s=self.max_wait_s)

    def collect(self) -> None:
        t0 = time.perf_counter()
        gc.collect()
        self.pause_s = time.perf_counter() - t0
        self._last = time.monotonic()
        self.collections += 1


class Waker:
    """A background thread that resumes sleeping workers when their time comes."""

    def __init__(self, rt: Runtime, *, backstop_s: float = 30.0) -> None:
        self.rt, self.backstop_s = rt, backstop_s
        self._stop = False
        #: Workers being woken, and the deadline each sleeps to.
        self._busy: dict[str, int] = {}
        self._cond = threading.Condition()
        self._timers = Timers()
        self.collector = FullCollections()
        self._thread = threading.Thread(target=self._loop, name="golemish-waker", daemon=True)

    def start(self) -> None:
        # Listening before the first scan: a sleep recorded in between is not missed.
        self.rt.sleep_listeners.append(self.notify)
        if os.environ.get("GOLEMISH_WAKE_GC", "scheduled") != "python":
            self.collector.install()
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        try:
            self.rt.sleep_listeners.remove(self.notify)
        except ValueError:
            pass
        if self._thread.is_alive():
            self._thread.join(10)
        self.collector.uninstall()

    def notify(self, worker_id: str, until_ns: int) -> None:
        """A worker suspended in a durable sleep until ``until_ns`` (Runtime listener)."""
        with self._cond:
            self._timers.set(worker_id, until_ns)
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._timers)

    def _rescan(self) -> None:
        try:
            found = sleepers(self.rt.store.list_workers())
        except GolemishError:
            return  # closing, or a store error that the API reports to callers
        with self._cond:
            for wid, until in found:
                if wid not in self._busy:
                    self._timers.set(wid, until)
            self._cond.notify()

    def _loop(self) -> None:
        self._rescan()
        next_scan = time.monotonic() + self.backstop_s
        while True:
            collect = False
            with self._cond:
                while True:
                    if self._stop:
                        return
                    if time.monotonic() >= next_scan:
                        ready: list[tuple[str, int]] | None = None
                        break
                    lead = int(min(self.rt.suspend_after_s(), 0.5) * 1e9)
                    now = self.rt.clock.time_ns()
                    ready = self._timers.pop_due(now, lead)
                    if ready:
                        break
                    nxt = self._timers.next_ns()
                    # Sleepers being woken block in the guest until their deadline.
                    first = min([*self._busy.values(), *([nxt] if nxt is not None else [])],
                                default=None)
                    if self.collector.due(now, first):
                        collect = True
                        break
                    wait = min(next_scan - time.monotonic(), 1.0)  # 1 s: collections
                    if nxt is not None:
                        wait = min(wait, (nxt - lead - now) / 1e9)
                    self._cond.wait(max(wait, 0.0))
            if collect:
                self.collector.collect()
                continue
            if ready is None:
                self._rescan()
                next_scan = time.monotonic() + self.backstop_s
                continue
            for wid, until in ready:
                self._dispatch(wid, until)

    def _dispatch(self, wid: str, until_ns: int) -> None:
        """Resume ``wid`` if its metadata still says it sleeps (until when it says)."""
        try:
            meta = self.rt.store.get_worker(wid)
        except GolemishError:
            return
        found = sleepers([meta]) if meta is not None else []
        if not found:
            return  # resumed, interrupted or deleted meanwhile
        if found[0][1] != until_ns:
            self.notify(wid, found[0][1])  # asleep again, until another time
            return
        with self._cond:
            if wid in self._busy:
                return
            self._busy[wid] = until_ns
        threading.Thread(target=self._wake_busy, args=(wid,), daemon=True,
                         name=f"golemish-wake-{wid}").start()

    def _wake_busy(self, wid: str) -> None:
        try:
            self._wake(wid)
        finally:
            with self._cond:
                self._busy.pop(wid, None)

    def _wake(self, wid: str) -> None:
        try:
            self.rt.resume(wid)
        except WorkerSuspendedError as e:
            if e.until_ns is not None:  # not due yet after all (the clock, say): later
                self.notify(wid, e.until_ns)
        except GolemishError:
            pass  # suspended again, failed, or the runtime closed: recorded in the worker
