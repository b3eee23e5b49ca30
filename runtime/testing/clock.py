"""A virtual clock for tests: durable time that moves only when told to.

Pass one to a Runtime (``RuntimeConfig(clock=VirtualClock())``) and every
durable use of time follows it: guests' ``clock_gettime``, ``poll_oneoff`` and
``golemish_sleep_ms`` waits, the wake time of a suspended worker, timestamps in
the oplog. Time stands still between ``advance`` calls, so two reads in a row
return the same instant (allowed for a monotonic clock) and a test sees the
same values each run.

With ``auto_skip`` (the default) a wait short enough to block in place (below
``RuntimeConfig.suspend_after_s``) moves the clock to its deadline at once:
in a test the sleeping worker is the only thing running, so nothing can happen
before the deadline anyway. Without it, a blocking wait blocks until another
thread advances the clock past its deadline. Longer sleeps suspend the worker as
they do in production; :meth:`RuntimeUnderTest.settle` skips to their wake time.
"""

from __future__ import annotations

import datetime as dt
import threading

#: 2030-01-01T00:00:00Z: a fixed start, so recorded times are the same every run.
DEFAULT_START_NS = 1_893_456_000 * 10**9


class VirtualClock:
    """Realtime and monotonic nanoseconds under the test's control."""

    def __init__(self, start_ns: int = DEFAULT_START_NS, *, auto_skip: bool = True,
                 monotonic_start_ns: int = 10**12) -> None:
        self._offset = 0
        self._start = start_ns
        self._mono_start = monotonic_start_ns
        self.auto_skip = auto_skip
        self._cv = threading.Condition()

    # -- the Clock protocol (runtime/clock.py) ---------------------------------
    def time_ns(self) -> int:
        return self._start + self._offset

    def monotonic_ns(self) -> int:
        return self._mono_start + self._offset

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._cv:
            target = self._offset + int(seconds * 1e9)
            if self.auto_skip:
                self._offset = max(self._offset, target)
                self._cv.notify_all()
                return
            while self._offset < target:
                self._cv.wait()

    # -- control -------------------------------------------------------------------
    def advance(self, *, days: float = 0, hours: float = 0, minutes: float = 0,
                seconds: float = 0, ms: float = 0) -> int:
        """Move time forward; returns the new realtime in ns."""
        delta = int(((days * 24 + hours) * 60 + minutes) * 60e9 + seconds * 1e9 + ms * 1e6)
        if delta < 0:
            raise ValueError("a clock only moves forward")
        with self._cv:
            self._offset += delta
            self._cv.notify_all()
        return self.time_ns()

    def advance_to(self, realtime_ns: int) -> int:
        """Move time forward to an absolute realtime (no-op if already past it)."""
        with self._cv:
            self._offset = max(self._offset, realtime_ns - self._start)
            self._cv.notify_all()
        return self.time_ns()

    @property
    def elapsed_s(self) -> float:
        """Virtual seconds since the clock was made."""
        return self._offset / 1e9

    def now(self) -> dt.datetime:
        """The virtual realtime as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.time_ns() / 1e9, dt.timezone.utc)

    def __repr__(self) -> str:
        return f"VirtualClock({self.now().isoformat()}, +{self.elapsed_s:g} s)"
