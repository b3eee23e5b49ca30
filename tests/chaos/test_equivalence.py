"""Equivalence: snapshot + tail, full replay and a crash-free run reach the same state.

Random sequences of kv operations (deterministic guest code) run in a child
process that is killed with SIGKILL at a random crash point, with snapshots
taken by a random policy. The worker is then recovered and the remaining
operations are run. Three ways of reaching the end must agree byte for byte on
memory, on every mutable global, and on every result: recovery from the newest
snapshot plus the oplog tail, recovery by full replay, and a run that never
crashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys

import pytest

from golemish.oplog import InvokeEnd, InvokeStart
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy

pytestmark = pytest.mark.chaos

POINTS = ["before-oplog-append", "after-oplog-append", "before-invocation",
          "after-invocation", "mid-snapshot-write", "after-snapshot-write", "before-commit",
          "after-commit"]

DRIVER = """
import json, sys
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy
home, policy, ops = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with Runtime(RuntimeConfig(home=home, snapshot_policy=SnapshotPolicy.parse(policy))) as rt:
    for fn, args in ops:
        rt.invoke("kv/w", fn, [str(a) for a in args])
"""


def random_ops(rng: random.Random, n: int) -> list[tuple[str, list[int]]]:
    ops = []
    for _ in range(n):
        kind = rng.choice(["put", "put", "put", "del", "touch", "fill", "get"])
        if kind == "put":
            ops.append(("put", [rng.randrange(40), rng.choice([10, 3000, 5000, 70000])]))
        elif kind == "del":
            ops.append(("del", [rng.randrange(40)]))
        elif kind == "touch":
            ops.append(("touch", [rng.choice([1, 10, 100])]))
        elif kind == "fill":
            ops.append(("fill", [1]))
        else:
            ops.append(("get", [rng.randrange(40)]))
    return ops


def final_state(rt: Runtime) -> tuple[str, tuple]:
    w = rt.worker("kv/w")
    inst = w.instance
    mem = hashlib.sha256(inst.read(0, inst.memory_size())).hexdigest()
    return mem, tuple(inst.get_global(n) for n in w.layout.globals)


def results(rt: Runtime) -> list:
    out, entries = [], rt.oplog("kv/w")
    for _, e in entries:
        if isinstance(e, InvokeStart):
            out.append([e.function, [v for _, v in e.params]])
        elif isinstance(e, InvokeEnd):
            out[-1].append([v for _, v in e.results])
    return out


@pytest.mark.parametrize("seed", range(12))
def test_snapshot_replay_and_crash_free_runs_agree(tmp_path, guests, seed):
    rng = random.Random(seed)
    ops = random_ops(rng, rng.randrange(6, 14))
    wasm = guests["kv"].read_bytes()

    # The crash-free reference, with no snapshots at all.
    with Runtime(RuntimeConfig(home="memory://",
                               snapshot_policy=SnapshotPolicy.parse("off"))) as rt:
        rt.deploy(wasm, "kv")
        for fn, args in ops:
            rt.invoke("kv/w", fn, [str(a) for a in args])
        want_state, want_results = final_state(rt), results(rt)

    home = str(tmp_path / "store")
    with Runtime(RuntimeConfig(home=home)) as rt:
        rt.deploy(wasm, "kv")
    policy = rng.choice(["every:1", "every:2", "every:3", "adaptive:0"])
    # Each operation appends at least two entries; snapshots come at most once per op.
    name = rng.choice(POINTS)
    reach = 2 * len(ops) if name.endswith("oplog-append") else len(ops) // 2
    point = f"{name}:{rng.randrange(1, reach + 1)}"
    proc = subprocess.run([sys.executable, "-c", DRIVER, home, policy, json.dumps(ops)],
                          capture_output=True, env={**os.environ, "GOLEMISH_CRASH_AT": point},
                          timeout=300)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.decode()

    # Recover (finishing a cut-off invocation), then run what never got recorded.
    with Runtime(RuntimeConfig(home=home, snapshot_policy=SnapshotPolicy.parse(policy))) as rt:
        if rt.store.get_worker("kv/w") is not None:
            rt.resume("kv/w")
            done = sum(1 for _, e in rt.oplog("kv/w") if isinstance(e, InvokeStart))
        else:
            done = 0
        for fn, args in ops[done:]:
            rt.invoke("kv/w", fn, [str(a) for a in args])
        assert results(rt) == want_results

    with Runtime(RuntimeConfig(home=home)) as rt:
        snap_report = rt.resume("kv/w")
        assert final_state(rt) == want_state
    with Runtime(RuntimeConfig(home=home, recovery="replay")) as rt:
        assert rt.resume("kv/w").mode == "replay"
        assert final_state(rt) == want_state
    assert snap_report.mode in ("snapshot", "replay")
