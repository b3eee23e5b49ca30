"""Limits given for an existing worker apply from that invocation on, and replay agrees."""

from __future__ import annotations

import time

import pytest

from golemish.oplog import InvokeStart
from golemish.runtime.errors import TimeLimitExceeded

MIB = 1 << 20


def hog(rt, mib: int, **limits) -> int:
    return rt.invoke("counter/a", "hog", [str(mib)], **limits).results[0][1]


def test_a_raised_memory_cap_is_recorded_and_replayed(make_runtime, guests):
    rt = make_runtime(memory_limit=32 * MIB)
    rt.deploy(guests["counter"].read_bytes(), "counter")
    first = hog(rt, 100)
    assert 20 <= first < 32  # malloc saw NULL at 32 MiB
    second = hog(rt, 100, memory_limit=64 * MIB)
    assert 28 <= second <= 32  # the other 32 MiB, under the new cap
    assert hog(rt, 100) == 0  # the cap stays at 64 MiB for later invocations
    assert rt.worker_info("counter/a")["memory_limit"] == 64 * MIB
    starts = [e for _, e in rt.oplog("counter/a") if isinstance(e, InvokeStart)]
    assert [e.memory_limit for e in starts] == [0, 64 * MIB, 64 * MIB]
    rt.close()
    for recovery in ("replay", "auto"):  # a process with the default cap of 256 MiB
        rt = make_runtime(recovery=recovery)
        rt.resume("counter/a")
        assert rt.worker_info("counter/a")["status"] == "idle"
        assert hog(rt, 1) == 0  # replayed under the recorded caps: memory is full
        rt.close()


def test_a_lower_time_limit_stops_the_next_invocation(make_runtime, guests):
    rt = make_runtime(time_limit=30)
    rt.deploy(guests["counter"].read_bytes(), "counter")
    rt.invoke("counter/a", "add", ["2"])
    t0 = time.monotonic()
    with pytest.raises(TimeLimitExceeded, match="time limit of 0.3 s"):
        rt.invoke("counter/a", "spin", time_limit=0.3)
    assert time.monotonic() - t0 < 5
    assert rt.invoke("counter/a", "add", ["3"]).results == [("i64", 5)]
    assert rt.worker_info("counter/a")["time_limit"] == 0.3


def test_the_cli_applies_limits_to_an_existing_worker(cli, guests):
    cli("deploy", str(guests["counter"]), check=True)
    cli("invoke", "counter/c", "add", "1", check=True)
    t0 = time.monotonic()
    proc = cli("invoke", "counter/c", "spin", "--time-limit", "0.5")
    assert proc.returncode == 1 and "time limit of 0.5 s" in proc.stderr, proc.stderr
    assert time.monotonic() - t0 < 8  # not the 10 s the worker was created with
    show = cli("worker", "show", "counter/c", check=True).stdout
    assert "memory 256 MiB, 0.5 s per invocation" in show
    cli("invoke", "counter/c", "add", "1", "--memory-limit", "64", check=True)
    assert "memory 64 MiB, 0.5 s" in cli("worker", "show", "counter/c", check=True).stdout
    assert cli("invoke", "counter/c", "add", "1", check=True).stdout.splitlines()[-1] == "3"
