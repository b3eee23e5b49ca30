"""Typed (WIT) functions of stackful components: unwound mid-call like core exports.

The guest is a hand-written Canonical ABI module: ``tick(label, n)`` reads the clock
n times and returns a record with the label (a string in guest memory, lowered by
the host), how many clock reads succeeded, and a running total kept in memory.
Under ``calls:1`` every clock read is preceded by a mid-call snapshot, so the
lowered arguments and the returned record must survive unwinds, rewinds and a
restore in a new process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import wasmtime

from golemish.oplog import InvokeEnd, Snapshot
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy

pytest.importorskip("icpp_binaryen", reason="asyncify needs golemish[stackful]")

WIT = """package test:clocks@0.1.0;
world clocks {
  record stamp { label: string, calls: u32, total: u32 }
  export tick: func(label: string, n: u32) -> stamp;
}
"""

# Memory: 0..16 the clock result, 16 the running total, 32.. the result record,
# 1024.. a bump allocator (cabi_realloc) for the host's arguments and the stack buffer.
GUEST = """
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func $read (result i32)  ;; 1 when the clock answered with a time
    (i64.store (i32.const 0) (i64.const 0))
    (if (result i32) (i32.eqz (call $clock (i32.const 1) (i64.const 1) (i32.const 0)))
      (then (i64.ne (i64.load (i32.const 0)) (i64.const 0)))
      (else (i32.const 0))))
  (func (export "tick") (param $ptr i32) (param $len i32) (param $n i32) (result i32)
    (local $i i32) (local $ok i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $ok (i32.add (local.get $ok) (call $read)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.store (i32.const 16) (i32.add (i32.load (i32.const 16)) (local.get $ok)))
    (i32.store (i32.const 32) (local.get $ptr))
    (i32.store (i32.const 36) (local.get $len))
    (i32.store (i32.const 40) (local.get $ok))
    (i32.store (i32.const 44) (i32.load (i32.const 16)))
    (i32.const 32)))
"""

CALLS = [('"first"', "3"), ('"a longer label"', "1"), ('"zero"', "0"), ('"x"', "5")]


def expected() -> list[str]:
    total, out = 0, []
    for label, n in CALLS:
        total += int(n)
        out.append(f"{{label: {label}, calls: {n}, total: {total}}}")
    return out


def runtime(home: str, policy: str = "calls:1", **kw) -> Runtime:
    return Runtime(RuntimeConfig(home=home, snapshot_policy=SnapshotPolicy.parse(policy), **kw))


def deploy(rt: Runtime, stackful: bool) -> None:
    meta = rt.deploy(wasmtime.wat2wasm(GUEST), "clocks", wit=WIT, stackful=stackful).meta
    assert meta["stackful"] == stackful


def results(rt: Runtime, worker: str, calls=CALLS) -> list[str]:
    return [rt.invoke(worker, "tick", list(args)).results[0][1] for args in calls]


@pytest.mark.parametrize("stackful", [False, True])
def test_typed_calls_give_the_same_results_stackful_or_not(tmp_path, stackful):
    home = str(tmp_path / "s")
    with runtime(home) as rt:
        deploy(rt, stackful)
        assert results(rt, "clocks/w") == expected()
        ends = [e.results[0][1] for _, e in rt.oplog("clocks/w") if isinstance(e, InvokeEnd)]
        assert ends == expected()  # what was recorded is what was returned
        snaps = sum(isinstance(e, Snapshot) for _, e in rt.oplog("clocks/w"))
        assert snaps >= (9 if stackful else 0)  # one before each clock read
    for recovery in ("auto", "replay"):  # a new process: recover, then go on
        with runtime(home, recovery=recovery) as rt:
            rt.resume("clocks/w")
            assert rt.worker_info("clocks/w")["status"] == "idle"
            assert rt.invoke("clocks/w", "tick", ['"after"', "2"]).results[0][1] \
                == f'{{label: "after", calls: 2, total: {11 + 2 * (recovery == "replay")}}}'
    with runtime(home) as rt:
        assert rt.worker_info("clocks/w")["status"] == "idle"


DRIVER = """
import sys
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy
policy = SnapshotPolicy.parse("calls:1")
with Runtime(RuntimeConfig(home=sys.argv[1], snapshot_policy=policy)) as rt:
    print(rt.invoke("clocks/k", "tick", ['"killed"', "6"]).results[0][1], flush=True)
"""


@pytest.mark.parametrize("point", ["after-host-call:4", "after-invocation:1"])
def test_a_typed_invocation_killed_resumes_from_its_mid_call_snapshot(tmp_path, point):
    home = str(tmp_path / "s")
    with runtime(home) as rt:
        deploy(rt, True)
        assert results(rt, "clocks/k", CALLS[:1]) == expected()[:1]
    proc = subprocess.run([sys.executable, "-c", DRIVER, home], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "GOLEMISH_CRASH_AT": point})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    killed = ("wave", '{label: "killed", calls: 6, total: 9}')
    with runtime(home) as rt:
        report = rt.resume("clocks/k")
        assert report.mode == "snapshot (mid-call)", report.describe()
        if point.startswith("after-host-call"):  # cut off inside: finished now
            assert report.finished["ok"], report.finished
            assert report.finished["results"] == [killed]
        else:  # it had ended: the tail after the snapshot replays to its recorded end
            assert report.finished is None and report.replayed_invocations == 1
            ends = [e for _, e in rt.oplog("clocks/k") if isinstance(e, InvokeEnd)]
            assert ends[-1].results == (killed,)
        assert rt.invoke("clocks/k", "tick", ['"next"', "1"]).results == [
            ("wave", '{label: "next", calls: 1, total: 10}')]
    with runtime(home, recovery="replay") as rt:  # full replay agrees
        assert rt.invoke("clocks/k", "tick", ['"again"', "0"]).results == [
            ("wave", '{label: "again", calls: 0, total: 10}')]
