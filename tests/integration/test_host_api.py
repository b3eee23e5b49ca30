"""The golemish host API with real subprocesses, SIGKILL and a real HTTP server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from golemish.oplog import EffectBegin, HostCall, InvokeEnd, InvokeStart, Rewind
from golemish.runtime.errors import NotFoundError
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.testing import EffectSink

from conftest import golemish_cmd


@pytest.fixture
def sink():
    with EffectSink() as s:
        yield s


@pytest.fixture
def agent(cli, guests, sink):
    # Guests reach nothing by default: the agent's version may reach the sink only.
    cli("deploy", str(guests["agent"]), "--allow-http", sink.address, check=True)
    cli("deploy", str(guests["counter"]), check=True)
    # Create the worker (its environment is fixed now) with a call that has no effects.
    cli("invoke", "agent/a", "key", "--env", f"AGENT_URL={sink.url}", check=True)
    return "agent/a"


def only_key(sink):
    assert len(sink.deliveries) == 1, sink.deliveries
    return next(iter(sink.deliveries))


def test_every_host_call_is_recorded_and_replay_makes_none(home, agent, sink, cli):
    cli("invoke", agent, "fetch", "3", check=True)
    cli("invoke", agent, "pay", "250", check=True)
    cli("invoke", agent, "nap", "10", check=True)
    cli("invoke", agent, "delegate", "4", check=True)
    suspended = cli("invoke", agent, "approval", check=True)
    assert "awaiting promise agent/a#" in suspended.stderr
    pid = suspended.stderr.split("awaiting promise ")[1].split(";")[0]
    done = cli("promise", "complete", pid, "yes", check=True)
    assert "approval for this: yes" in done.stdout and done.stdout.strip().endswith("1")
    before = dict(sink.requests)
    with Runtime(RuntimeConfig(home=home, recovery="replay")) as rt:
        report = rt.resume(agent)
        assert report.mode == "replay" and report.replayed_host_calls >= 6
        names = {e.name for _, e in rt.oplog(agent) if isinstance(e, HostCall)}
    assert {"http_request", "sleep", "invoke", "promise_create", "promise_await",
            "idempotency_key"} <= names
    assert dict(sink.requests) == before  # replay contacted nobody


def test_a_request_cut_off_in_flight_is_resent_with_the_same_key(agent, sink, cli):
    dead = cli("invoke", agent, "pay", "300", "--crash-at", "after-host-call:1")
    assert dead.returncode == -signal.SIGKILL
    key = only_key(sink)
    assert sink.deliveries[key] == 1
    resumed = cli("worker", "resume", agent, check=True)
    assert "paid 300 cents: status 200" in resumed.stdout
    assert sink.deliveries == {key: 2}  # sent again, with the same key
    assert sink.payments == {key: "300"}  # ... so the sink counts one effect


def test_a_recorded_response_is_never_sent_again(agent, sink, cli):
    # Appends: InvokeStart, EffectBegin, HostCall (the response): die right after it.
    dead = cli("invoke", agent, "pay", "300", "--crash-at", "after-oplog-append:3")
    assert dead.returncode == -signal.SIGKILL
    key = only_key(sink)
    cli("worker", "resume", agent, check=True)
    cli("invoke", agent, "key", check=True)
    assert sink.deliveries == {key: 1}


def test_retry_policy_retries_failing_calls(agent, sink, cli):
    sink.fail_next = 2
    assert cli("invoke", agent, "retrying_pay", "5", check=True).stdout.endswith("200\n")
    assert sink.requests["/pay"] == 3 and len(sink.payments) == 1


def test_a_promise_completed_across_processes_finishes_the_invocation(agent, cli):
    first = cli("invoke", agent, "approval", check=True)
    pid = first.stderr.split("awaiting promise ")[1].split(";")[0]
    listing = json.loads(cli("--json", "promise", "list", check=True).stdout)
    assert [(p["id"], p["state"]) for p in listing] == [(pid, "pending")]
    busy = cli("invoke", agent, "key")
    assert busy.returncode == 1 and "suspended, awaiting promise" in busy.stderr
    assert "suspended" in cli("worker", "show", agent, check=True).stdout
    done = cli("promise", "complete", pid, "approve", check=True)
    assert "approval for this: approve" in done.stdout
    twice = cli("promise", "complete", pid, "approve")
    assert twice.returncode == 1 and "already completed" in twice.stderr
    unknown = cli("promise", "complete", "agent/a#nope", "x")
    assert unknown.returncode == 1 and "no promise 'agent/a#nope'" in unknown.stderr
    assert "idle" in cli("worker", "show", agent, check=True).stdout


def test_a_long_sleep_suspends_and_wakes_at_the_recorded_deadline(agent, cli, home):
    # Long enough that the second command starts before the deadline on a loaded
    # machine (each CLI process starts Python afresh).
    t0 = time.time()
    first = cli("invoke", agent, "nap", "8000", check=True)
    assert "sleeping until" in first.stderr
    early = cli("worker", "resume", agent, check=True)
    assert "sleeping until" in early.stderr  # not due yet: nothing ran
    woke = cli("worker", "resume", agent, "--wait", check=True)
    assert "finished the interrupted invocation nap" in woke.stdout
    with Runtime(RuntimeConfig(home=home)) as rt:
        wake = [e for _, e in rt.oplog(agent) if isinstance(e, HostCall) and e.name == "sleep"]
        returned = [e for _, e in rt.oplog(agent) if isinstance(e, InvokeEnd)][-1].results[0][1]
    wake_ms = int.from_bytes(wake[-1].response, "little") // 1_000_000
    assert wake_ms <= returned < wake_ms + 2500
    assert time.time() - t0 < 60  # woke by its deadline, not by a stuck wait


def _recorded_sleep(home: str, worker: str, pid: int) -> bool:
    """Has process ``pid``, which owns the store, committed a sleep for ``worker``? (A
    reader opened before the writer took the store would keep it from taking it.)"""
    lock = next(Path(home).rglob("golemish.lock"), None)
    if lock is None or lock.read_text().strip() != str(pid):
        return False
    try:
        with Runtime(RuntimeConfig(home=home, readonly=True)) as rt:
            return any(isinstance(e, HostCall) and e.name == "sleep" for _, e in rt.oplog(worker))
    except NotFoundError:
        return False


def test_after_a_kill_a_blocking_sleep_sleeps_only_what_is_left(agent, cli, home):
    env = {**os.environ, "GOLEMISH_HOME": home}
    proc = subprocess.Popen([*golemish_cmd(), "invoke", agent, "nap", "1800"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill once the sleep's deadline is on disk (the blocking sleep commits it before it
    # waits), however long the CLI took to start.
    deadline = time.monotonic() + 60
    while not _recorded_sleep(home, agent, proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline, "the nap never slept"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert cli("--json", "worker", "show", agent, check=True).stdout.count("interrupted")
    woke = cli("worker", "resume", agent, check=True)
    assert "finished the interrupted invocation nap" in woke.stdout
    with Runtime(RuntimeConfig(home=home)) as rt:
        entries = [e for _, e in rt.oplog(agent)]
    # The deadline was recorded once, before the kill, and the resumed call waited for it
    # (not for a new 1.8 s from the resume).
    sleeps = [e for e in entries if isinstance(e, HostCall) and e.name == "sleep"]
    assert len(sleeps) == 1
    wake_ms = int.from_bytes(sleeps[0].response, "little") // 1_000_000
    naps = [e for e in entries if isinstance(e, InvokeStart) and e.function == "nap"]
    assert len(naps) == 1  # resumed, not run again
    end = [e for e in entries if isinstance(e, (InvokeStart, InvokeEnd))][-1]
    assert isinstance(end, InvokeEnd) and end.results[0][1] >= wake_ms


@pytest.mark.parametrize("point", [
    "after-host-call:1",     # caller: the callee ran, its answer is not recorded here
    "after-invocation:1",    # callee: its result is recorded, then the process dies
    "before-invocation:2",   # callee: its invocation is recorded but never ran
])
def test_a_call_to_another_worker_runs_exactly_once(agent, cli, point):
    dead = cli("invoke", agent, "delegate", "5", "--crash-at", point)
    assert dead.returncode == -signal.SIGKILL
    resumed = cli("worker", "resume", agent, check=True)
    assert "-> 5" in resumed.stdout
    assert cli("invoke", "counter/shared", "get", check=True).stdout.strip() == "5"
    assert cli("invoke", agent, "delegate", "1", check=True).stdout.strip() == "6"


def test_a_repeated_idempotency_key_returns_the_recorded_result(cli, guests):
    cli("deploy", str(guests["counter"]), check=True)
    first = cli("invoke", "counter/a", "add", "5", "-k", "order-1", check=True)
    again = cli("invoke", "counter/a", "add", "5", "-k", "order-1", check=True)
    assert first.stdout.splitlines()[-1] == again.stdout.strip() == "5"
    assert "seen before" in again.stderr and "add 5" not in again.stdout
    dead = cli("invoke", "counter/a", "add", "7", "-k", "order-2", "--crash-at",
               "after-invocation:1")
    assert dead.returncode == -signal.SIGKILL
    assert cli("invoke", "counter/a", "add", "7", "-k", "order-2",
               check=True).stdout.strip() == "12"
    assert cli("invoke", "counter/a", "get", check=True).stdout.strip() == "12"
    other = cli("invoke", "counter/a", "get", "-k", "order-1")
    assert other.returncode == 1 and "was already used for add(5)" in other.stderr


def test_a_refused_url_is_an_error_for_the_guest_and_in_the_oplog(agent, cli, home):
    assert cli("invoke", agent, "fetch_url", "80", check=True).stdout.strip() == "1"
    oplog = cli("worker", "oplog", agent, check=True).stdout
    assert "refused" in oplog and "10.255.255.1:80 is not on this worker's HTTP allow-list" \
        in oplog


def test_an_atomic_region_cut_short_runs_again_from_its_start(agent, sink, cli, home):
    # Appends: InvokeStart, AtomicBegin, EffectBegin, HostCall, Log, EffectBegin ...: die
    # after the first fetch finished, inside the region.
    dead = cli("invoke", agent, "atomic_fetch", "1", "--crash-at", "after-oplog-append:5")
    assert dead.returncode == -signal.SIGKILL
    assert sink.requests["/item"] == 1
    resumed = cli("worker", "resume", agent, check=True)
    assert sink.requests["/item"] == 3  # the whole region again: both fetches
    assert "-> 400" in resumed.stdout
    with Runtime(RuntimeConfig(home=home, recovery="replay")) as rt:
        entries = rt.oplog(agent)
        rewinds = [(i, e.to) for i, e in entries if isinstance(e, Rewind)]
        assert len(rewinds) == 1
        rt.resume(agent)  # replay skips the voided entries without diverging
    effects = [i for i, e in entries if isinstance(e, EffectBegin)]
    assert len(effects) == 3
