"""Revert, fork and update killed with SIGKILL at every crash point they reach.

Each case copies one prepared store, runs the command in a real `golemish`
subprocess with GOLEMISH_CRASH_AT=<point>:<n>, and when it was killed acts as a
user would: runs the same command again (a repeat of an update or a fork that
had gone through is refused as done; a revert to an index is the same revert).
The worker must end in the state of the crash-free run, and the store must
check clean. n counts up until the command no longer reaches the point.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from golemish.oplog import Create
from golemish.oplog.check import check_store
from golemish.runtime.executor import Runtime, RuntimeConfig

from conftest import golemish_cmd

pytestmark = pytest.mark.chaos

POINTS = ("before-oplog-append", "after-oplog-append", "mid-snapshot-write",
          "after-snapshot-write")
OPS = {
    "revert": ["worker", "revert", "bank/a", "--to-index", "{end2}"],
    "fork": ["worker", "fork", "bank/a", "bank/b"],
    "auto-update": ["worker", "update", "bank/a", "--to", "1"],
    "manual-update": ["worker", "update", "bank/a", "--to", "2", "--mode", "manual"],
}
#: What a repeated command may say when the first one had completed.
DONE = ("runs v1 already", "runs v2 already", "exists already")


@pytest.fixture(scope="module")
def template(tmp_path_factory, guests):
    """bank/a on v0 (bank_v1) with five operations and a snapshot; v1 = bank_v2, v2 = v4."""
    home = str(tmp_path_factory.mktemp("versions") / "store")
    with Runtime(RuntimeConfig(home=home)) as rt:
        for g in ("bank_v1", "bank_v2", "bank_v4"):
            rt.deploy(guests[g].read_bytes(), "bank")
        meta = rt.component("bank", 0)
        rt.store.create_worker(
            {"id": "bank/a", "component": "bank", "version": 0, "created_at": time.time(),
             "status": "idle", "memory_limit": rt.config.memory_limit,
             "time_limit": rt.config.time_limit, "durable": True},
            Create("bank", 0, meta["hash"], (), (), time.time_ns()))
        ends = []
        for fn, n in (("deposit", 50), ("deposit", 7), ("withdraw", 20)):
            rt.invoke("bank/a", fn, [str(n)])
            ends.append(rt.store.oplog("bank/a").last_index)
        rt.snapshot("bank/a")
        for n in (3, 4):
            rt.invoke("bank/a", "deposit", [str(n)])
    return home, {"end2": ends[1]}


def state(home):
    with Runtime(RuntimeConfig(home=home)) as rt:
        out = {}
        for w in ("bank/a", "bank/b"):
            if rt.store.get_worker(w) is None:
                continue
            out[w] = (rt.worker_info(w)["version"],
                      *[rt.invoke(w, f).results[0][1] for f in ("balance", "ops")])
        problems, _ = check_store(rt.store)
    assert problems == [], problems
    return out


def golemish(home, args, crash=None):
    env = {**os.environ, "GOLEMISH_HOME": home}
    env.pop("GOLEMISH_CRASH_AT", None)
    if crash:
        env["GOLEMISH_CRASH_AT"] = crash
    return subprocess.run([*golemish_cmd(), *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("op", list(OPS))
def test_killed_at_every_crash_point_recovers_to_the_crash_free_state(tmp_path, template, op):
    src, fill = template
    args = [a.format(**fill) for a in OPS[op]]
    clean = str(tmp_path / "clean")
    shutil.copytree(src, clean)
    proc = golemish(clean, args)
    assert proc.returncode == 0, proc.stderr
    expected = state(clean)

    killed = 0
    for point in POINTS:
        for n in range(1, 8):
            home = str(tmp_path / f"{point}-{n}")
            shutil.copytree(src, home)
            proc = golemish(home, args, f"{point}:{n}")
            if proc.returncode == 0:
                break  # the command no longer reaches this point n times
            assert proc.returncode == -signal.SIGKILL, proc.stderr
            killed += 1
            again = golemish(home, args)
            assert again.returncode == 0 or any(d in again.stderr for d in DONE), again.stderr
            assert state(home) == expected, f"{op} killed at {point}:{n}"
            shutil.rmtree(home)
    # One batch (entry + metadata) each; all but the fork also snapshot at once.
    assert killed >= (2 if op == "fork" else 4)


def test_fork_then_divergent_invocations_killed_on_both(tmp_path, template):
    src, _ = template
    home = str(tmp_path / "store")
    shutil.copytree(src, home)
    assert golemish(home, ["worker", "fork", "bank/a", "bank/b"]).returncode == 0
    base = state(home)["bank/a"]
    # Killed after the invocation's first commit, so that it is recorded (a kill before
    # it loses an invocation nobody saw, which a client retries instead).
    for worker, fn, n, crash in (("bank/a", "deposit", "10", "after-commit:1"),
                                 ("bank/b", "withdraw", "5", "after-commit:1"),
                                 ("bank/b", "deposit", "1", "after-invocation:1")):
        proc = golemish(home, ["invoke", worker, fn, n], crash)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        resumed = golemish(home, ["worker", "resume", worker])
        assert resumed.returncode == 0, resumed.stderr
    got = state(home)
    # Each operation ran exactly once on its own worker, none leaked to the other.
    assert got["bank/a"] == (0, base[1] + 10, base[2] + 1)
    assert got["bank/b"] == (0, base[1] - 5 + 1, base[2] + 2)
