"""Shared fixtures: built guest modules, WAT modules, runtimes and the CLI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from golemish.runtime.executor import Runtime, RuntimeConfig

from pg import pg_url, postgres_cluster  # noqa: F401  (the Postgres fixtures)
from serverproc import golemish_cmd  # noqa: F401  (tests import it from here)

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session: pytest.Session) -> None:
    """Byte-compile golemish once, as a wheel install would: the suite starts hundreds
    of golemish processes, and where PYTHONDONTWRITEBYTECODE is set (CI sandboxes) an
    editable install otherwise compiles ~100 modules from source in each (~0.1 s)."""
    import compileall
    for pkg in ("runtime", "oplog"):
        compileall.compile_dir(str(ROOT / pkg), quiet=1)


@pytest.fixture(scope="session")
def guests() -> dict[str, Path]:
    """The C guest examples, built (or taken from the build cache)."""
    spec = importlib.util.spec_from_file_location("guest_build", ROOT / "guest_examples/build.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build(verbose=False)


def wat(text: str) -> bytes:
    return wasmtime.wat2wasm(text)


@pytest.fixture
def home(tmp_path: Path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def make_runtime(home: str) -> Iterator:
    """Factory for runtimes on one on-disk store; each is closed at teardown."""
    made: list[Runtime] = []

    def make(**kw) -> Runtime:
        kw.setdefault("home", home)
        kw.setdefault("time_limit", 5.0)
        rt = Runtime(RuntimeConfig(**kw))
        made.append(rt)
        return rt

    yield make
    for rt in made:
        try:
            rt.close()
        except Exception:
            pass


class Output:
    """Collects what guests write, per stream."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []

    def __call__(self, stream: int, data: bytes) -> None:
        self.chunks.append((stream, data))

    @property
    def stdout(self) -> str:
        return b"".join(d for s, d in self.chunks if s == 1).decode()


@pytest.fixture
def output() -> Output:
    return Output()




@pytest.fixture
def cli(home: str):
    """Run the real `golemish` in a subprocess on the test's store."""

    def run(*args: str, env: dict[str, str] | None = None, check: bool = False,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "GOLEMISH_HOME": home, "GOLEMISH_TIME_LIMIT": "10"}
        full_env.pop("GOLEMISH_CRASH_AT", None)
        full_env.update(env or {})
        proc = subprocess.run([*golemish_cmd(), *args], capture_output=True, text=True,
                              env=full_env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"golemish {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def interpreter() -> None:
    """The Python workers' interpreter, compiled (once per machine) before a test needs it."""
    from golemish.runtime.engine import Engine
    from golemish.runtime.python.component import load_interpreter
    engine = Engine()
    try:
        load_interpreter(engine)
    finally:
        engine.close()


#: A driver process that appends to journal/j forever, printing an ack per invocation:
#: the chaos tests kill it from outside and count what was acknowledged.
APPEND_DRIVER = """
import sys
from golemish.runtime.executor import Runtime, RuntimeConfig
with Runtime(RuntimeConfig(home=sys.argv[1])) as rt:
    i = 0
    while True:
        i += 1
        res = rt.invoke("journal/j", "append", ["7"])
        print("ack", i, res.results[0][1], flush=True)
"""
