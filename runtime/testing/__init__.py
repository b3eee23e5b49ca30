"""The test kit for people who write golemish workers.

Installed with golemish as a pytest plugin (entry point ``golemish`` in the
``pytest11`` group, module :mod:`.plugin`), so its fixtures are available in any
project that installs golemish:

- ``golemish_runtime``: a :class:`RuntimeUnderTest` on a temporary RocksDB store;
- ``golemish_clock``: its :class:`VirtualClock` (``golemish_clock.advance(days=3)``);
- ``http_stub``: an :class:`HttpStub` on loopback, on the runtime's HTTP allow-list;
- ``golemish_promises``: list and complete the runtime's promises;
- ``golemish_crash``: :class:`Crashes` (``crash_at(point, n)``, ``kill_and_recover``).

:class:`EffectSink` is the older stand-in for the outside world that the demo and
the crash campaign use. This package imports no pytest: only the plugin does.
"""

from .clock import VirtualClock
from .crashes import CrashOutcome, Crashes
from .harness import RuntimeUnderTest, value_of
from .replay import ReplayOutcome, replay_file
from .sink import EffectSink
from .stub import Call, Expectation, HttpStub

__all__ = [
    "Call", "CrashOutcome", "Crashes", "EffectSink", "Expectation", "HttpStub",
    "ReplayOutcome", "RuntimeUnderTest", "VirtualClock", "replay_file", "value_of",
]
