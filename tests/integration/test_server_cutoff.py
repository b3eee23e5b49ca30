"""Invocations a crash cut off are finished by the next `golemish serve` at start
(server/cutoff.py), from a look at each oplog's tail rather than its whole length.

Cut-offs are made by real SIGKILLs (``--crash-at``); servers are real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from golemish.runtime import versions
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.server.cutoff import cut_off, ends_open

from conftest import golemish_cmd
from serverproc import ServerProc


def cli(home: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOLEMISH_SERVER", "GOLEMISH_SERVER_TOKEN")}
    return subprocess.run([*golemish_cmd(), "--home", home, *args], capture_output=True,
                          text=True, env=env, timeout=120)


def until(cond, what: str, timeout: float = 30.0):
    """Poll ``cond`` until it is true (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def cut(home: str, worker: str) -> None:
    """``add 2`` on ``worker``, the process SIGKILLed after its first commit."""
    r = cli(home, "invoke", worker, "add", "2", "--crash-at", "after-commit:1")
    assert r.returncode == -signal.SIGKILL, r.stderr


@pytest.fixture
def counters(home: str, guests) -> str:
    assert cli(home, "deploy", str(guests["counter"])).returncode == 0
    for w in ("counter/idle", "counter/cut1", "counter/cut2"):
        assert cli(home, "invoke", w, "add", "5").returncode == 0
    cut(home, "counter/cut1")
    cut(home, "counter/cut2")
    return home


def returns(s: ServerProc, worker: str) -> int:
    kinds = [e["kind"] for e in s.http.get(f"/workers/{worker}/oplog").json()]
    assert kinds.count("invoke") == kinds.count("return")  # nothing left open
    return kinds.count("return")


def test_the_tail_of_an_oplog_tells_cut_off_from_idle(counters: str):
    rt = Runtime(RuntimeConfig(home=counters, create=False))
    try:
        metas = {m["id"]: m for m in rt.store.list_workers()}
        assert ends_open(rt.store, "counter/idle") is False
        assert ends_open(rt.store, "counter/cut1") is True
        assert rt.worker_info("counter/cut1")["status"] == "interrupted"
        rt.snapshot("counter/idle")  # a Snapshot entry after the last return
        assert ends_open(rt.store, "counter/idle") is False
        assert not cut_off(rt, metas["counter/idle"])
        # A Revert voids what comes before it: the tail cannot say, the full status does.
        versions.revert(rt, "counter/idle", last_invocations=1)
        assert ends_open(rt.store, "counter/idle") is None
        assert not cut_off(rt, rt.store.get_worker("counter/idle"))
        assert cut_off(rt, metas["counter/cut2"])
        assert not cut_off(rt, {**metas["counter/cut2"], "status": "failed"})
    finally:
        rt.close()


def test_cut_off_invocations_are_finished_at_start_and_idle_workers_left_alone(counters):
    s = ServerProc(counters)
    try:
        # Asked at once: the request takes its turn after (or itself does) the recovery.
        assert s.get("counter/cut1") == 7
        until(lambda: s.http.get("/workers/counter/cut2").json()["status"] == "idle",
              "the second cut-off invocation to finish")
        assert returns(s, "counter/cut1") == 3  # add 5, the cut-off add 2, get
        assert returns(s, "counter/cut2") == 2
        assert s.get("counter/cut2") == 7
        # The idle worker was judged from its oplog's tail, not loaded.
        assert s.http.get("/workers/counter/idle").json()["resident"] is False
    finally:
        assert s.stop() == 0


@pytest.mark.chaos
def test_a_server_killed_while_it_finishes_cut_offs_loses_and_repeats_nothing(counters):
    first = ServerProc(counters)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # mid-recovery, or just after
    s = ServerProc(counters)
    try:
        for w in ("counter/cut1", "counter/cut2"):
            until(lambda: s.http.get(f"/workers/{w}").json()["status"] == "idle",
                  f"{w} to finish")
            assert returns(s, w) == 2
            assert s.get(w) == 7
        assert s.get("counter/idle") == 5
        assert s.http.get("/workers/counter/idle").json()["invocations"] == 2
    finally:
        assert s.stop() == 0
