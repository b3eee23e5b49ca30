"""Stackful components: mid-call snapshots, resume without replay, and equivalence."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys

import pytest
import wasmtime

from golemish.oplog import InvokeEnd, InvokeStart, Snapshot
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy

pytest.importorskip("icpp_binaryen", reason="asyncify needs golemish[stackful]")

# One long invocation: `work(n)` makes n durable host calls (sleep_ms(0), recorded) from
# a nested frame, keeps a running sum in a local (on the wasm stack, so an unwind must
# carry it) and writes memory deterministically, so a crash-free run is comparable.
WORK = """
(module
  (import "golemish" "sleep_ms" (func $sleep (param i64) (result i32)))
  (memory (export "memory") 4)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 131072))
  (func $step (param $i i32) (param $acc i64) (result i64)
    (drop (call $sleep (i64.const 0)))
    (i32.store (i32.shl (i32.rem_u (local.get $i) (i32.const 4096)) (i32.const 2))
               (i32.mul (local.get $i) (local.get $i)))
    (i64.add (local.get $acc) (i64.extend_i32_u (i32.mul (local.get $i) (i32.const 3)))))
  (func (export "work") (param $n i32) (result i64)
    (local $i i32) (local $acc i64)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $acc (call $step (local.get $i) (local.get $acc)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $acc)))
"""

DRIVER = """
import sys
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy
home, policy, n = sys.argv[1], sys.argv[2], sys.argv[3]
with Runtime(RuntimeConfig(home=home, snapshot_policy=SnapshotPolicy.parse(policy))) as rt:
    print(rt.invoke("work/w", "work", [n]).results[0][1], flush=True)
"""


def expected(n: int) -> int:
    return sum(3 * i for i in range(n))


def state(rt: Runtime, worker_id: str):
    w = rt.worker(worker_id)
    inst = w.instance
    return (hashlib.sha256(inst.read(0, inst.memory_size())).hexdigest(),
            tuple(inst.get_global(g) for g in w.layout.globals))


def setup(home: str) -> None:
    with Runtime(RuntimeConfig(home=home)) as rt:
        meta = rt.deploy(wasmtime.wat2wasm(WORK), "work", stackful=True).meta
        assert meta["stackful"]
        rt.invoke("work/w", "work", ["0"])  # create the worker: the stack buffer is allocated


def crash_free_state(n: int):
    with Runtime(RuntimeConfig(home="memory://",
                               snapshot_policy=SnapshotPolicy.parse("off"))) as rt:
        rt.deploy(wasmtime.wat2wasm(WORK), "work", stackful=True)
        rt.invoke("work/w", "work", ["0"])
        assert rt.invoke("work/w", "work", [str(n)]).results[0][1] == expected(n)
        return state(rt, "work/w")


def run_killed(home: str, policy: str, n: int, point: str) -> int:
    proc = subprocess.run([sys.executable, "-c", DRIVER, home, policy, str(n)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GOLEMISH_CRASH_AT": point})
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode


def test_a_mid_call_snapshot_replays_only_the_tail(tmp_path):
    home = str(tmp_path / "s")
    setup(home)
    assert run_killed(home, "calls:200", 1000, "after-host-call:700") == -signal.SIGKILL
    with Runtime(RuntimeConfig(home=home)) as rt:
        midcall = [i for i, e in rt.oplog("work/w") if isinstance(e, Snapshot)]
        assert len(midcall) == 3  # after host calls 200, 400, 600 of the invocation
        report = rt.resume("work/w")
        assert report.mode == "snapshot (mid-call)" and report.snapshot_index == midcall[-1]
        assert report.replayed_host_calls <= 100  # calls 601..700 only
        assert report.finished["results"] == [("i64", expected(1000))]
        snap_state = state(rt, "work/w")
    with Runtime(RuntimeConfig(home=home, recovery="replay")) as rt:
        assert rt.resume("work/w").replayed_host_calls >= 700
        assert state(rt, "work/w") == snap_state
    assert snap_state == crash_free_state(1000)


@pytest.mark.chaos
@pytest.mark.parametrize("seed", range(8))
def test_kills_inside_long_invocations_agree_with_replay_and_a_crash_free_run(tmp_path, seed):
    rng = random.Random(seed)
    n = rng.randrange(200, 1500)
    policy = rng.choice(["calls:50", "calls:170", "calls:400", "adaptive:0.002"])
    point = rng.choice([f"after-host-call:{rng.randrange(1, n)}",
                        f"after-oplog-append:{rng.randrange(2, n)}",
                        f"mid-snapshot-write:{rng.randrange(1, 4)}",
                        f"after-snapshot-write:{rng.randrange(1, 4)}"])
    home = str(tmp_path / "s")
    setup(home)
    run_killed(home, policy, n, point)
    with Runtime(RuntimeConfig(home=home)) as rt:
        recorded = [e for _, e in rt.oplog("work/w")
                    if isinstance(e, InvokeStart) and e.params == (("i32", n),)]
        if recorded:
            rt.resume("work/w")
        else:  # killed before its first commit (a mid-call snapshot): never happened
            rt.invoke("work/w", "work", [str(n)])
        ends = [e for _, e in rt.oplog("work/w") if isinstance(e, InvokeEnd)]
        assert ends[-1].results == (("i64", expected(n)),)
        via_snapshot = state(rt, "work/w")
    with Runtime(RuntimeConfig(home=home, recovery="replay")) as rt:
        assert state(rt, "work/w") == via_snapshot
    assert via_snapshot == crash_free_state(n)


def test_a_pending_promise_releases_the_worker_and_resumes_without_replay(tmp_path, guests):
    from golemish.runtime.errors import Suspended
    home = str(tmp_path / "s")
    with Runtime(RuntimeConfig(home=home)) as rt:
        rt.deploy(guests["agent"].read_bytes(), "agent", stackful=True)
        rt.invoke("agent/a", "key")
        with pytest.raises(Suspended) as s:
            rt.invoke("agent/a", "approval")
        pid = s.value.promise
        assert isinstance(rt.oplog("agent/a")[-1][1], Snapshot)  # unwound, snapshotted
    with Runtime(RuntimeConfig(home=home)) as rt:
        _, report = rt.complete_promise(pid, b"yes")
        assert report.mode == "snapshot (mid-call)" and report.replayed_host_calls == 0
        assert report.finished["results"] == [("i32", 1)]
        assert "mid-call" in rt.worker_info("agent/a")["last_recovery"]
