"""The runtime's source of time: the one injection point for durable time.

Everything that decides *when* on a durable path asks a :class:`Clock`: guests'
clock reads (WASI ``clock_time_get``), ``poll_oneoff`` and ``golemish_sleep_ms``
waits, the wake time of a suspended worker, the timestamps written into the
oplog and the promise records. The default is the system clock; the test kit
(:mod:`golemish.runtime.testing`) passes a virtual one through
``RuntimeConfig(clock=...)``, so tests skip days in milliseconds.

A clock's answers are recorded like any other host call: replay answers from
the oplog and never asks the clock, so changing clocks cannot change what an
existing oplog replays. Durations that are only measured (snapshot cost, the
adaptive policy, epoch time limits, HTTP retry backoff) stay on real time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock and monotonic time in nanoseconds, and a way to wait."""

    def time_ns(self) -> int: ...
    def monotonic_ns(self) -> int: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time (the default)."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SYSTEM = SystemClock()

__all__ = ["Clock", "SystemClock", "SYSTEM"]
