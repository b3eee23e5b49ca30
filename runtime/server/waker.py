"""Durable sleeps wake by themselves while the server runs.

A worker suspended in a long durable sleep records ``until_ns`` in its metadata.
``due`` (pure) picks those whose wake time is near enough that resuming blocks
for at most the Runtime's ``suspend_after_s``; the Waker thread resumes each in a
thread of its own, so one sleeper never delays another. A promise's completion
resumes its worker in the request that completes it (Runtime.complete_promise).
At start, invocations that a crash cut off are finished, one worker after another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from golemish.oplog import GolemishError

from ..executor import Runtime


def due(metas: Iterable[dict[str, Any]], now_ns: int, lead_s: float) -> list[str]:
    """Workers whose durable sleep ends within ``lead_s`` of ``now_ns``."""
    out = []
    for m in metas:
        susp = m.get("suspended") or {}
        if m.get("status") == "suspended" and "until_ns" in susp \
                and susp["until_ns"] - now_ns <= lead_s * 1e9:
            out.append(m["id"])
    return out


class Waker:
    """A background thread that resumes sleeping workers when their time comes."""

    def __init__(self, rt: Runtime, *, period_s: float = 0.2) -> None:
        # Sleepers are resumed up to 0.5 s early and block for the rest, so a scan
        # every 0.2 s still wakes them on time.
        self.rt, self.period_s = rt, period_s
        self._stop = threading.Event()
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="golemish-waker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _recover_cut_off(self) -> None:
        """Finish invocations that a crash of the previous owner cut off."""
        for meta in self.rt.store.list_workers():
            if self._stop.is_set():
                return
            if meta.get("status") in ("failed", "suspended"):
                continue
            try:
                if self.rt.worker_info(meta["id"])["status"] == "interrupted":
                    self._wake(meta["id"])
            except GolemishError:
                pass  # reported when someone asks for the worker

    def _loop(self) -> None:
        try:
            self._recover_cut_off()
        except GolemishError:
            pass
        while not self._stop.wait(self.period_s):
            try:
                metas = self.rt.store.list_workers()
            except GolemishError:
                continue  # closing, or a store error that the API reports to callers
            lead = min(self.rt.suspend_after_s(), 0.5)
            for wid in due(metas, self.rt.clock.time_ns(), lead):
                with self._lock:
                    if wid in self._busy:
                        continue
                    self._busy.add(wid)
                threading.Thread(target=self._wake, args=(wid,), daemon=True,
                                 name=f"golemish-wake-{wid}").start()

    def _wake(self, wid: str) -> None:
        try:
            self.rt.resume(wid)
        except GolemishError:
            pass  # suspended again, failed, or the runtime closed: recorded in the worker
        finally:
            with self._lock:
                self._busy.discard(wid)
