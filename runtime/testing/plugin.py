"""The golemish pytest plugin: fixtures for testing workers (see the package docstring).

Registered as a ``pytest11`` entry point, so ``pip install golemish`` is all it
takes. Every fixture is function-scoped: each test gets its own store, clock,
stub and promises.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..executor import RuntimeConfig
from ..snapshot.policy import SnapshotPolicy
from .clock import VirtualClock
from .crashes import Crashes
from .harness import RuntimeUnderTest
from .stub import HttpStub


@pytest.fixture
def golemish_clock() -> VirtualClock:
    """A virtual clock at 2030-01-01T00:00Z that moves only when told (or auto-skips)."""
    return VirtualClock()


@pytest.fixture
def golemish_config(tmp_path: Path, golemish_clock: VirtualClock) -> RuntimeConfig:
    """The settings of ``golemish_runtime``; override this fixture to change them."""
    return RuntimeConfig(home=str(tmp_path / "golemish-store"), clock=golemish_clock,
                         time_limit=10.0, http_allow=(),
                         snapshot_policy=SnapshotPolicy.parse("adaptive"))


@pytest.fixture
def golemish_runtime(golemish_config: RuntimeConfig) -> Iterator[RuntimeUnderTest]:
    """An in-process runtime on a temporary RocksDB store, following ``golemish_clock``."""
    rt = RuntimeUnderTest(golemish_config)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def http_stub(golemish_runtime: RuntimeUnderTest) -> Iterator[HttpStub]:
    """A scripted HTTP endpoint on loopback that the runtime's workers may call."""
    with HttpStub() as stub:
        golemish_runtime.allow_http(stub.address)
        yield stub


class Promises:
    """The ``golemish_promises`` fixture: promises of the test's runtime."""

    def __init__(self, rt: RuntimeUnderTest) -> None:
        self._rt = rt

    def pending(self, worker_id: str | None = None) -> list[dict[str, Any]]:
        """Pending promises (of one worker, if given)."""
        return self._rt.promises(worker_id)

    def awaited(self, worker_id: str) -> str:
        """The id of the promise the worker is suspended on."""
        return self._rt.awaited_promise(worker_id)

    def complete(self, promise_or_worker: str, data: bytes | str = b"") -> Any:
        """Complete a promise (or the one a worker awaits); returns the finished result."""
        return self._rt.complete(promise_or_worker, data)


@pytest.fixture
def golemish_promises(golemish_runtime: RuntimeUnderTest) -> Promises:
    return Promises(golemish_runtime)


@pytest.fixture
def golemish_crash(golemish_runtime: RuntimeUnderTest, tmp_path: Path) -> Crashes:
    """Crash helpers: ``crash_at(point, n).invoke(...)``, ``kill_and_recover(...)``."""
    return Crashes(golemish_runtime, tmp_path)
