"""Workers through the Runtime API on a real RocksDB store: durability, replay, limits."""

from __future__ import annotations

import threading

import pytest
import wasmtime

from golemish.oplog import CorruptionError, HostCall, InvokeFailed, StoreInUseError
from golemish.runtime.errors import (
    DivergenceError, GuestTrap, MemoryLimitExceeded, TimeLimitExceeded, WorkerFailedError,
)


def deploy_counter(rt, guests):
    return rt.deploy(guests["counter"].read_bytes(), "counter").meta


def ints(res):
    return [v for _, v in res.results]


def test_state_survives_a_restart_without_repeating_output(make_runtime, guests, output):
    rt = make_runtime()
    deploy_counter(rt, guests)
    assert ints(rt.invoke("counter/a", "add", ["5"], output=output)) == [5]
    assert ints(rt.invoke("counter/a", "add", ["7"], output=output)) == [12]
    before = rt.invoke("counter/a", "checksum").results
    rt.close()

    rt2 = make_runtime()
    out2 = type(output)()
    assert ints(rt2.invoke("counter/a", "get", output=out2)) == [12]
    # The history holds recorded clock and random values: only replay from the oplog
    # rebuilds the same bytes, so an equal checksum shows replay used the recorded values.
    assert rt2.invoke("counter/a", "checksum").results == before
    assert out2.stdout == ""  # nothing printed again on replay
    assert output.stdout.count("add 5") == 1


def test_replay_answers_clock_and_random_from_the_oplog(make_runtime):
    mod = wasmtime.wat2wasm("""
      (module
        (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
        (import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (global $t (mut i64) (i64.const 0))
        (global $r (mut i64) (i64.const 0))
        (func (export "sample")
          (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 0)))
          (drop (call $rand (i32.const 8) (i32.const 8)))
          (global.set $t (i64.load (i32.const 0)))
          (global.set $r (i64.load (i32.const 8))))
        (func (export "t") (result i64) (global.get $t))
        (func (export "r") (result i64) (global.get $r)))""")
    rt = make_runtime()
    rt.deploy(mod, "sampler")
    rt.invoke("sampler/s", "sample")
    t1, r1 = ints(rt.invoke("sampler/s", "t")), ints(rt.invoke("sampler/s", "r"))
    rt.close()
    rt2 = make_runtime()
    report = rt2.resume("sampler/s")
    assert report is not None and report.replayed_host_calls == 2
    assert ints(rt2.invoke("sampler/s", "t")) == t1
    assert ints(rt2.invoke("sampler/s", "r")) == r1
    calls = [e for _, e in rt2.oplog("sampler/s") if isinstance(e, HostCall)]
    assert [c.name for c in calls] == ["clock_time_get", "random_get"]
    assert int.from_bytes(calls[0].response, "little", signed=True) == t1[0]


def test_a_trap_leaves_the_state_from_before_the_invocation(make_runtime, guests, output):
    rt = make_runtime()
    deploy_counter(rt, guests)
    rt.invoke("counter/a", "add", ["5"])
    with pytest.raises(GuestTrap, match="unreachable"):
        rt.invoke("counter/a", "add_then_trap", ["100"], output=output)
    assert "add 100" in output.stdout  # it ran, then trapped
    assert ints(rt.invoke("counter/a", "get")) == [5]
    assert ints(rt.invoke("counter/a", "history_len")) == [1]
    rt.close()
    rt2 = make_runtime()
    assert ints(rt2.invoke("counter/a", "get")) == [5]
    failed = [e for _, e in rt2.oplog("counter/a") if isinstance(e, InvokeFailed)]
    assert len(failed) == 1 and failed[0].reason == "trap"


def test_a_runaway_loop_is_stopped_and_the_worker_goes_on(make_runtime, guests):
    rt = make_runtime(time_limit=0.3)
    deploy_counter(rt, guests)
    rt.invoke("counter/a", "add", ["2"])
    with pytest.raises(TimeLimitExceeded, match="time limit of 0.3 s"):
        rt.invoke("counter/a", "spin")
    assert ints(rt.invoke("counter/a", "add", ["3"])) == [5]


def test_the_memory_cap_holds(make_runtime, guests):
    rt = make_runtime(memory_limit=32 << 20)
    deploy_counter(rt, guests)
    got = ints(rt.invoke("counter/a", "hog", ["100"]))[0]
    assert 20 <= got < 32  # malloc saw NULL at the cap
    bomb = wasmtime.wat2wasm("""
      (module (memory (export "memory") 1)
        (func (export "bomb") (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
          unreachable))""")
    rt.deploy(bomb, "bomb")
    with pytest.raises(MemoryLimitExceeded, match="memory cap of 32 MiB"):
        rt.invoke("bomb/b", "bomb")
    big = wasmtime.wat2wasm('(module (memory (export "memory") 1000) (func (export "f")))')
    rt.deploy(big, "big")
    with pytest.raises(MemoryLimitExceeded, match="cap of 32 MiB"):
        rt.invoke("big/b", "f")
    assert rt.store.get_worker("big/b") is None  # a worker that cannot start is not kept


CLOCK_GUEST = """
  (module
    (import "wasi_snapshot_preview1" "{call}" (func $f (param i32 {extra} i32) (result i32)))
    (memory (export "memory") 1)
    (global $n (mut i64) (i64.const 0))
    (func (export "tick") (result i64)
      (drop (call $f (i32.const {a}) {extra_arg} (i32.const 8)))
      (global.set $n (i64.add (global.get $n) (i64.const 1)))
      (global.get $n)))"""


def test_replaying_a_changed_guest_is_a_divergence(make_runtime):
    v0 = wasmtime.wat2wasm(CLOCK_GUEST.format(call="clock_time_get", extra="i64", a=0,
                                              extra_arg="(i64.const 1)"))
    v1 = wasmtime.wat2wasm(CLOCK_GUEST.format(call="random_get", extra="", a=16, extra_arg=""))
    rt = make_runtime()
    rt.deploy(v0, "ticker")
    rt.invoke("ticker/t", "tick")
    rt.invoke("ticker/t", "tick")
    assert rt.deploy(v1, "ticker").meta["version"] == 1
    # The host is redeployed with the worker pointing at changed code.
    meta = rt.store.get_worker("ticker/t")
    rt.store.put_worker({**meta, "version": 1})
    rt.close()

    rt2 = make_runtime()
    before = rt2.oplog("ticker/t")
    with pytest.raises(DivergenceError) as e:
        rt2.invoke("ticker/t", "tick")
    assert e.value.index == 3
    assert "clock_time_get" in e.value.recorded and "random_get" in e.value.asked
    assert "index 3" in str(e.value)
    assert rt2.worker_info("ticker/t")["status"] == "failed"
    with pytest.raises(WorkerFailedError, match="diverged"):
        rt2.invoke("ticker/t", "tick")
    assert rt2.oplog("ticker/t") == before  # nothing recorded was overwritten


def test_a_flipped_byte_is_a_corruption_error_not_a_wrong_state(make_runtime, guests):
    rt = make_runtime()
    deploy_counter(rt, guests)
    rt.invoke("counter/a", "add", ["5"])
    key = b"counter/a\0" + (3).to_bytes(8, "big")
    raw = bytearray(rt.store.backend.get("oplog", key))
    raw[len(raw) // 2] ^= 0x10
    rt.store.backend.put("oplog", key, bytes(raw))
    rt.close()
    rt2 = make_runtime()
    with pytest.raises(CorruptionError, match="counter/a index 3"):
        rt2.invoke("counter/a", "get")


def test_a_second_runtime_on_the_store_is_refused(make_runtime, home):
    import os
    make_runtime()
    with pytest.raises(StoreInUseError, match=f"in use by pid {os.getpid()}"):
        make_runtime()


def test_invocations_on_one_worker_run_one_at_a_time(make_runtime, guests):
    rt = make_runtime()
    rt.deploy(guests["journal"].read_bytes(), "journal")
    rt.invoke("journal/j", "count")
    errors = []

    def work():
        try:
            for _ in range(5):
                rt.invoke("journal/j", "append", ["20"])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ints(rt.invoke("journal/j", "count")) == [400]
    rt.close()
    assert ints(make_runtime().invoke("journal/j", "count")) == [400]


def test_worker_ids_narrowed_by_stored_status_agree_with_worker_info(make_runtime, guests):
    from golemish.runtime.errors import Suspended
    rt = make_runtime()
    deploy_counter(rt, guests)
    rt.deploy(guests["agent"].read_bytes(), "agent")
    rt.invoke("counter/a", "add", ["1"])
    rt.invoke("agent/idle", "nap", ["0"])
    with pytest.raises(Suspended):
        rt.invoke("agent/asleep", "nap", ["600000"])
    everyone = sorted(rt.worker_ids())
    assert everyone == ["agent/asleep", "agent/idle", "counter/a"]
    for status in ("suspended", "idle", "interrupted", "failed", None):
        for component in ("agent", "counter", None):
            for version in (1, 2, None):
                slow = sorted(w for w in everyone
                              if (status is None or rt.worker_info(w)["status"] == status)
                              and (component is None or w.startswith(component + "/"))
                              and (version is None or rt.worker_info(w)["version"] == version))
                cut = rt.worker_ids(component, status, version)
                # The cheap cut keeps every match (the caller checks the rest)...
                assert set(slow) <= set(cut)
                # ...and drops the workers whose stored status or component rules them out.
                if status == "suspended":
                    assert set(cut) <= {"agent/asleep"}
                if status in ("idle", "interrupted"):
                    assert "agent/asleep" not in cut
                if component == "counter":
                    assert set(cut) <= {"counter/a"}
                if version == 2:
                    assert cut == []
    assert rt.worker_ids(status="suspended") == ["agent/asleep"]
