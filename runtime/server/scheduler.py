"""Runs enqueued and scheduled invocations when they are due (the server's part).

Each scan takes the due invocations from the store's queue in run order (due
time, then arrival), groups them by worker, and gives each worker with due work
one thread that runs its invocations one after another; a worker whose earlier
invocation is suspended (a durable sleep, a promise) keeps the later ones waiting,
so per-worker order holds. Every invocation runs under its record's idempotency
key (the caller's, or one derived from the invocation id): if the server dies
after the invocation started but before the record says so, the next server's run
of it returns the recorded result instead of running it again. Exactly once.
"""

from __future__ import annotations

import threading
from typing import Any

from golemish.oplog import GolemishError
from golemish.oplog.errors import StoreError

from ..errors import ClosedError, Suspended, WorkerSuspendedError
from ..executor import Runtime
from ..typed.values import typed_json

#: Scan period; an enqueue pokes the scheduler, so this bounds only schedule lateness.
PERIOD_S = 0.05


def by_worker(due: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Due records grouped by worker, each group in run order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in due:
        groups.setdefault(rec["worker"], []).append(rec)
    return groups


class Scheduler:
    """A background thread running due invocations (see the module docstring)."""

    def __init__(self, rt: Runtime, *, period_s: float = PERIOD_S,
                 classify: Any = None) -> None:
        self.rt, self.period_s = rt, period_s
        #: exception -> (status, code, message) for a failed record (from the app).
        self.classify = classify or (lambda e: (500, "internal", str(e)))
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="golemish-scheduler",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        self._thread.join(10)

    def poke(self) -> None:
        """Something was enqueued: scan now."""
        self._poke.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._poke.wait(self.period_s)
            self._poke.clear()
            if self._stop.is_set():
                return
            try:
                due = list(self.rt.store.invocations.pending(self.rt.clock.time_ns()))
            except GolemishError:
                continue  # closing, or a store error reported to API callers
            for wid, recs in by_worker(due).items():
                with self._lock:
                    if wid in self._busy:
                        continue
                    self._busy.add(wid)
                threading.Thread(target=self._run_worker, args=(wid, recs), daemon=True,
                                 name=f"golemish-sched-{wid}").start()

    def _run_worker(self, wid: str, recs: list[dict[str, Any]]) -> None:
        try:
            for rec in recs:
                if self._stop.is_set() or not self.run_one(rec):
                    return
        finally:
            with self._lock:
                self._busy.discard(wid)

    def run_one(self, rec: dict[str, Any]) -> bool:
        """Run one pending invocation; False if it must wait (the worker is suspended,
        or the runtime closes) and later ones of its worker with it."""
        queue = self.rt.store.invocations
        try:
            meta = self.rt.store.get_worker(rec["worker"])
            if meta is not None and meta.get("status") == "suspended":
                return False  # the waker or a promise completion resumes it first
            if rec["state"] == "queued":
                rec = {**rec, "state": "running",
                       "started_ns": self.rt.clock.time_ns()}
                queue.update(rec)
            res = self.rt.invoke(rec["worker"], rec["function"], rec["args"],
                                 idempotency_key=rec["key"],
                                 env=[tuple(p) for p in rec.get("env", [])])
        except WorkerSuspendedError:
            return False
        except Suspended as s:  # this invocation waits: it finishes on a later scan
            queue.update({**rec, "state": "suspended", "promise": s.promise,
                          "until_ns": s.until_ns})
            return False
        except ClosedError:
            return False  # still pending: the next server runs it
        except StoreError:
            return False  # kept pending; tried again on a later scan
        except Exception as e:  # noqa: BLE001 - recorded on the invocation, never lost
            _, code, message = self.classify(e)
            queue.finish({**rec, "state": "failed", "finished_ns": self.rt.clock.time_ns(),
                          "error": {"code": code, "message": message}})
            return True
        queue.finish({**rec, "state": "ok", "finished_ns": self.rt.clock.time_ns(),
                      "oplog_index": res.index, "deduplicated": res.deduplicated,
                      "results": typed_json(res.results),
                      **({"value": res.json} if res.json is not None else {})})
        return True
