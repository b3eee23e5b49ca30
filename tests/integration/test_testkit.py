"""The test kit (golemish.runtime.testing), used as a guest author would: through the
pytest plugin's fixtures, on the agent and counter guests.

The fixtures come from the ``pytest11`` entry point in pyproject.toml; this file
imports none of them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from golemish.oplog import HostCall
from golemish.runtime.cli import main as cli_main
from golemish.runtime.errors import Suspended

ROOT = Path(__file__).resolve().parent.parent.parent
THREE_DAYS_MS = 3 * 24 * 3600 * 1000


@pytest.fixture
def agent(golemish_runtime, http_stub, guests):
    """The agent guest, with its fake LLM and payment endpoint scripted on the stub."""
    golemish_runtime.deploy_file(guests["agent"])
    http_stub.expect("GET", "/next-action").respond(
        200, body=lambda call: f"pay {100 * int(call.query['round'])}")
    http_stub.expect("POST", "/pay").respond(200, body="ok")
    return {"AGENT_URL": http_stub.url, "AGENT_SLEEP_MS": str(THREE_DAYS_MS)}


@pytest.fixture
def counter(golemish_runtime, guests):
    golemish_runtime.deploy_file(guests["counter"])
    return "counter/c"


# -- virtual time ---------------------------------------------------------------------------

def test_the_agent_waits_three_virtual_days_in_well_under_a_second(
        golemish_runtime, golemish_clock, golemish_promises, http_stub, agent):
    start = golemish_clock.time_ns()
    t0 = time.perf_counter()
    with pytest.raises(Suspended, match="awaiting promise"):
        golemish_runtime.call("agent/a", "run", 1, env=agent)
    # The three-day sleep was skipped: the worker now waits for a human.
    assert golemish_clock.time_ns() - start == THREE_DAYS_MS * 10**6
    [pending] = golemish_promises.pending("agent/a")
    assert golemish_promises.complete(pending["id"], "yes") == 100
    assert time.perf_counter() - t0 < 1.0
    assert len(http_stub.effects("POST", "/pay")) == 1
    assert [c.text for c in http_stub.calls_to("POST", "/pay")] == ["100"]
    out = golemish_runtime.stdout("agent/a")
    assert out.count('round 1: the model says "pay 100"') == 1  # replay printed nothing
    wake = [e for _, e in golemish_runtime.oplog("agent/a")
            if isinstance(e, HostCall) and e.name == "sleep"]
    assert int.from_bytes(wake[0].response, "little") == start + THREE_DAYS_MS * 10**6


def test_guest_clock_reads_follow_the_virtual_clock(golemish_runtime, golemish_clock, agent):
    # nap sleeps durably, then returns CLOCK_REALTIME in ms as the guest sees it.
    woke = golemish_runtime.call("agent/n", "nap", THREE_DAYS_MS, env=agent)
    assert woke == golemish_clock.time_ns() // 10**6
    assert golemish_clock.elapsed_s == 3 * 24 * 3600


def test_without_auto_skip_a_sleeping_worker_wakes_when_the_clock_is_advanced(
        golemish_runtime, golemish_clock, agent):
    golemish_clock.auto_skip = False
    with pytest.raises(Suspended, match="sleeping until 2030-01-04"):
        golemish_runtime.call("agent/n", "nap", THREE_DAYS_MS, env=agent)
    assert golemish_runtime.settle() == {}  # not due: nothing runs
    golemish_clock.advance(days=2, hours=23)
    assert golemish_runtime.settle() == {}
    golemish_clock.advance(hours=1)
    assert golemish_runtime.settle() == {"agent/n": golemish_clock.time_ns() // 10**6}
    assert golemish_runtime.suspended() == {}


def test_settle_skips_to_each_timer_in_turn(golemish_runtime, golemish_clock, agent):
    golemish_clock.auto_skip = False
    for name, days in (("agent/x", 1), ("agent/y", 5)):
        with pytest.raises(Suspended):
            golemish_runtime.call(name, "nap", days * 24 * 3600 * 1000, env=agent)
    golemish_clock.auto_skip = True
    done = golemish_runtime.settle()
    day = 24 * 3600 * 1000
    start = 1_893_456_000_000
    assert done == {"agent/x": start + day, "agent/y": start + 5 * day}
    assert golemish_clock.elapsed_s == 5 * 24 * 3600


def test_recorded_clock_values_stay_recorded(golemish_runtime, golemish_clock, counter):
    first = golemish_runtime.call(counter, "now")
    assert first == golemish_clock.time_ns()
    entries = [e for _, e in golemish_runtime.oplog(counter)]
    assert entries[0].timestamp_ns == entries[1].timestamp_ns == first  # Create, InvokeStart
    golemish_runtime.call(counter, "add", 2)
    before = golemish_runtime.call(counter, "checksum")
    golemish_clock.advance(days=10)
    golemish_runtime.config.recovery = "replay"  # rebuild from Create: every call replayed
    golemish_runtime.restart()
    assert golemish_runtime.call(counter, "checksum") == before
    assert golemish_runtime.call(counter, "now") == first + 10 * 24 * 3600 * 10**9


# -- crashes ----------------------------------------------------------------------------------

def test_the_payment_happens_once_when_the_process_dies_mid_request(
        golemish_runtime, golemish_crash, golemish_promises, http_stub, agent):
    with pytest.raises(Suspended):
        golemish_runtime.call("agent/a", "run", 1, env=agent)
    promise = golemish_promises.awaited("agent/a")
    # The approval resumes the agent in a child process, which pays and is killed
    # before the answer is recorded; recovery here sends it again with the same key.
    out = golemish_crash.crash_at("after-host-call", 2).complete(promise, "yes")
    assert out.killed and out.value == 100 and out.equivalent
    [(key, calls)] = http_stub.effects("POST", "/pay").items()
    assert len(calls) == 2 and {c.idempotency_key for c in calls} == {key}


def test_killed_after_the_payment_line_the_agent_does_not_pay_again(
        golemish_runtime, golemish_crash, golemish_promises, http_stub, agent):
    with pytest.raises(Suspended):
        golemish_runtime.call("agent/a", "run", 2, env=agent)
    with pytest.raises(Suspended, match="awaiting promise"):
        golemish_promises.complete("agent/a", "yes")  # round 1 pays; round 2 sleeps, waits
    promise = golemish_promises.awaited("agent/a")
    out = golemish_crash.kill_when("paid 200 cents").complete(promise, "yes")
    assert out.killed and "paid 200 cents: status 200" in out.child_stdout
    assert out.value == 300 and out.equivalent
    assert sorted(len(v) for v in http_stub.effects("POST", "/pay").values()) == [1, 1]


@pytest.mark.parametrize("point", ["before-oplog-append:1", "after-oplog-append:1",
                                   "after-oplog-append:3", "after-host-call:2",
                                   "before-invocation:1", "after-invocation:1"])
def test_counter_recovers_the_crash_free_state_at_every_point(
        golemish_runtime, golemish_crash, counter, point):
    golemish_runtime.call(counter, "add", 10)
    name, n = point.split(":")
    out = golemish_crash.crash_at(name, int(n)).invoke(counter, "add", 5)
    assert out.killed and out.value == 15 and out.equivalent
    assert golemish_runtime.call(counter, "get") == 15
    assert golemish_runtime.call(counter, "history_len") == 2


def test_kill_and_recover_on_a_line_of_output(golemish_runtime, golemish_crash, counter):
    out = golemish_crash.kill_and_recover(counter, "add", 7, when="add 7 -> total 7")
    assert out.killed and out.value == 7 and out.equivalent
    assert "add 7 -> total 7" in out.child_stdout
    assert golemish_runtime.call(counter, "history_len") == 1


def test_a_process_killed_at_a_moment_nobody_chose_recovers_the_same_sum(
        golemish_runtime, golemish_clock, golemish_crash, guests):
    # 200,000 clock reads take well over 0.2 s, and their entries are committed every
    # 4,096 (MAX_PENDING_ENTRIES): the child is killed from outside 0.2 s in, mid-call,
    # after its first commit. Virtual time stands still, so every read returns the same
    # instant: the sum is known.
    golemish_runtime.deploy_file(guests["journal"])
    golemish_runtime.call("journal/j", "count")  # created here: the child goes straight in
    n, now = 200_000, golemish_clock.monotonic_ns()
    out = golemish_crash.kill_and_recover("journal/j", "clocks", n, after_s=0.2)
    expected = (n * now) % (1 << 64)
    assert out.killed and not out.retried and out.recovery.finished is not None
    assert out.value % (1 << 64) == expected and out.equivalent


def test_a_worker_woken_by_the_virtual_clock_in_a_child_and_killed_pays_once(
        golemish_runtime, golemish_clock, golemish_crash, golemish_promises, http_stub, agent):
    golemish_clock.auto_skip = False
    with pytest.raises(Suspended, match="sleeping until 2030-01-04"):
        golemish_runtime.call("agent/a", "run", 1, env=agent)
    golemish_clock.advance(days=3)
    # The child resumes the due worker at the parent's virtual time and dies once it
    # has asked for approval; the in-process recovery gets back to the same wait.
    out = golemish_crash.kill_and_recover("agent/a", when="awaiting approval")
    assert out.killed and out.suspended is not None and out.suspended.promise
    assert golemish_promises.complete("agent/a", "yes") == 100
    assert len(http_stub.calls_to("POST", "/pay")) == 1
    assert golemish_crash.check("agent/a")


def test_a_crash_point_never_reached_fails_the_test(golemish_crash, counter):
    with pytest.raises(AssertionError, match="never reached crash point"):
        golemish_crash.crash_at("mid-snapshot-write", 5).invoke(counter, "get")


# -- test-replay -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def variants(tmp_path_factory, guests) -> dict[str, Path]:
    """Builds of the counter with compatible and non-deterministic changes."""
    spec = importlib.util.spec_from_file_location("guest_build", ROOT / "guest_examples/build.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    out = tmp_path_factory.mktemp("variants")
    built = {}
    for src in sorted((ROOT / "tests/guests").glob("*.c")):
        wasm = out / f"{src.stem}.wasm"
        subprocess.run([sys.executable, "-m", "ziglang", "cc", *build.FLAGS,
                        "-I", str(build.INCLUDE_DIR), "-o", str(wasm), str(src)],
                       check=True, capture_output=True)
        built[src.stem] = wasm
    return built


def _history(rt, counter):
    for n in (1, 2, 3):
        rt.call(counter, "add", n)
    rt.call(counter, "checksum")
    rt.close()  # the CLI opens the store next
    return rt.config.home


def test_replay_passes_a_compatible_build_and_catches_an_extra_clock_call(
        golemish_runtime, counter, variants, guests, tmp_path):
    home = _history(golemish_runtime, counter)
    runner = CliRunner()
    exported = runner.invoke(cli_main, ["--home", home, "worker", "export", counter,
                                        "-o", str(tmp_path / "c.oplog")])
    assert exported.exit_code == 0, exported.output
    for source in (["--store", home], ["--oplog", str(tmp_path / "c.oplog")]):
        same = runner.invoke(cli_main, ["test-replay", counter, *source,
                                        "--component", str(guests["counter"])])
        assert same.exit_code == 0 and "compatible" in same.output, same.output
        v2 = runner.invoke(cli_main, ["test-replay", counter, *source,
                                      "--component", str(variants["counter_v2"])])
        assert v2.exit_code == 0 and "4 invocations" in v2.output, v2.output
        bad = runner.invoke(cli_main, ["test-replay", counter, *source,
                                       "--component", str(variants["counter_extra_clock"])])
        assert bad.exit_code == 1, bad.output
        # Entry 1 is Create, 2 the first add's InvokeStart, 3 its clock read, 4 its random.
        assert ("divergence at oplog index 4: recorded host call random_get(request "
                "04000000), but counter_extra_clock.wasm asked for host call "
                "clock_time_get(request 00)") in bad.output
        other = runner.invoke(cli_main, ["test-replay", counter, *source,
                                         "--component", str(variants["sleeper"])])
        assert other.exit_code == 1, other.output
        assert ("divergence at oplog index 2: recorded an invocation of add, but "
                "sleeper.wasm asked for no exported function 'add'") in other.output


def test_replay_is_pure_and_sends_nothing(golemish_runtime, golemish_promises, http_stub,
                                          agent, guests, tmp_path):
    with pytest.raises(Suspended):
        golemish_runtime.call("agent/a", "run", 2, env=agent)
    with pytest.raises(Suspended):
        golemish_promises.complete("agent/a", "yes")  # round 2 now awaits its approval
    golemish_runtime.close()
    calls = len(http_stub.calls)
    res = CliRunner().invoke(cli_main, ["--json", "test-replay", "agent/a", "--store",
                                        golemish_runtime.config.home,
                                        "--component", str(guests["agent"])])
    assert res.exit_code == 0, res.output
    assert '"open_end": true' in res.output and "paid" not in res.output
    assert len(http_stub.calls) == calls


def test_an_exported_oplog_is_checked_before_use(golemish_runtime, counter, guests, tmp_path):
    home = _history(golemish_runtime, counter)
    runner = CliRunner()
    path = tmp_path / "c.oplog"
    assert runner.invoke(cli_main, ["--home", home, "worker", "export", counter,
                                    "-o", str(path)]).exit_code == 0
    data = bytearray(path.read_bytes())
    data[40] ^= 1
    path.write_bytes(bytes(data))
    res = runner.invoke(cli_main, ["test-replay", counter, "--oplog", str(path),
                                   "--component", str(guests["counter"])])
    assert res.exit_code == 2 and "checksum mismatch" in res.output
    other = runner.invoke(cli_main, ["test-replay", "counter/zz", "--store", home,
                                     "--component", str(guests["counter"])])
    assert other.exit_code == 2 and "no worker counter/zz" in other.output


def test_the_equivalence_check_catches_a_recovered_state_that_differs(
        golemish_runtime, golemish_crash, counter):
    golemish_runtime.call(counter, "add", 3)
    assert golemish_crash.check(counter) is True
    live = golemish_runtime.worker(counter).instance
    live.write(0x10000, bytes([live.read(0x10000, 1)[0] ^ 0xFF]))  # damage one byte
    with pytest.raises(AssertionError, match="differs from the crash-free replay at byte 0x10000"):
        golemish_crash.check(counter)


def test_a_wasi_poll_sleep_follows_the_virtual_clock(golemish_runtime, golemish_clock,
                                                     variants):
    golemish_runtime.deploy_file(variants["sleeper"])
    t0 = time.perf_counter()
    before = golemish_clock.monotonic_ns() // 10**6
    assert golemish_runtime.call("sleeper/s", "snooze", 3_600_000) == before + 3_600_000
    assert time.perf_counter() - t0 < 1.0 and golemish_clock.elapsed_s == 3600


def test_scheduled_invocations_run_when_virtual_time_reaches_them(
        golemish_runtime, golemish_clock, counter):
    golemish_runtime.schedule(counter, "add", 5, after_s=7 * 24 * 3600)
    golemish_runtime.schedule(counter, "add", 1, after_s=24 * 3600)
    golemish_clock.auto_skip = False
    assert golemish_runtime.settle() == {}
    golemish_clock.advance(days=1)
    assert golemish_runtime.settle() == {counter: 1}
    golemish_clock.auto_skip = True
    assert golemish_runtime.settle() == {counter: 6}
    assert golemish_clock.elapsed_s == 7 * 24 * 3600
    assert golemish_runtime.call(counter, "now") == golemish_clock.time_ns()


def test_the_readme_example_runs_with_only_the_installed_plugin(tmp_path, guests):
    """The README's example, run by pytest in a directory with no conftest: the
    fixtures must come from the entry point alone."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Testing your workers", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    test_file = tmp_path / "test_agent.py"
    test_file.write_text(code)
    proc = subprocess.run([sys.executable, "-m", "pytest", str(test_file), "-q",
                           "-p", "no:cacheprovider", "-W", "error"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
