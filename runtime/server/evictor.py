"""The server's evictor thread: applies runtime/eviction.py's decision periodically.

Every ``period_s`` it describes the loaded workers (``Runtime.residents``), asks
``eviction.choose`` which to drop, and evicts each under its turn
(``Runtime.evict``: snapshot, then drop). A worker that became busy since the
description simply waits its turn; one that was used meanwhile is evicted anyway
only if it is still chosen at the next scan.
"""

from __future__ import annotations

import threading

from golemish.oplog import GolemishError

from ..eviction import choose
from ..executor import Runtime


class Evictor:
    def __init__(self, rt: Runtime, *, idle_timeout: float | None,
                 max_memory: int | None, period_s: float | None = None) -> None:
        self.rt, self.idle_timeout, self.max_memory = rt, idle_timeout, max_memory
        # Often enough that an idle worker goes within a quarter of its timeout.
        self.period_s = period_s or min(1.0, max(0.05, (idle_timeout or 4.0) / 4))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="golemish-evictor",
                                        daemon=True)

    def start(self) -> None:
        if self.idle_timeout is not None or self.max_memory is not None:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def scan(self) -> list[str]:
        """One round: the workers evicted."""
        done = []
        for wid in choose(self.rt.residents(), self.idle_timeout, self.max_memory):
            if self._stop.is_set():
                break
            try:
                if self.rt.evict(wid):
                    done.append(wid)
            except GolemishError:
                pass  # closing: the Runtime drops everything anyway
        return done

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.scan()
