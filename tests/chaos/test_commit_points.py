"""kill -9 around commit points: entries that wait in memory, effects, group commit.

Clock and random entries wait in memory until something leaves the process (an
HTTP request, the invocation's end); a SIGKILL before that loses them, and that
must be invisible: the recovered worker equals a pure replay of what was
committed (the crash-free state, see runtime/testing/crashes.py), every payment
reaches the real local sink (runtime/testing/sink.py) once per idempotency key,
and a request whose answer was committed is never sent again.

The ``mixer`` guest (tests/guests/mixer.c) does, per round, N clock and random
reads and then one POST /pay; then N more reads. On an existing worker,
``mix(2, N)`` commits five times: before each request (the InvokeStart and the
reads before it go with it), after each answer, and at the end.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from golemish.oplog import InvokeEnd, InvokeStart
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.testing.sink import EffectSink

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]
WORKER = "mixer/m"


@pytest.fixture(scope="module")
def mixer(tmp_path_factory) -> Path:
    import importlib.util
    spec = importlib.util.spec_from_file_location("guest_build", ROOT / "guest_examples/build.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    wasm = tmp_path_factory.mktemp("mixer") / "mixer.wasm"
    subprocess.run([sys.executable, "-m", "ziglang", "cc", *build.FLAGS,
                    "-I", str(build.INCLUDE_DIR), "-o", str(wasm),
                    str(ROOT / "tests/guests/mixer.c")], check=True, capture_output=True)
    return wasm


@pytest.fixture
def sink():
    with EffectSink() as s:
        yield s


@pytest.fixture
def mix_worker(golemish_runtime, mixer, sink) -> str:
    golemish_runtime.deploy(mixer.read_bytes(), "mixer", http_allow=[sink.address])
    assert golemish_runtime.call(WORKER, "paid", env={"SINK_URL": sink.url}) == 0
    return WORKER


# (crash point, n, requests the sink sees for round 1 and round 2)
CASES = [
    ("before-commit", 1, (1, 1)),   # nothing committed: the call is retried whole
    ("after-commit", 1, (1, 1)),    # round 1's request recorded, not yet sent
    ("before-commit", 2, (2, 1)),   # sent, answer not committed: re-sent, same key
    ("after-commit", 2, (1, 1)),    # answer committed: never sent again
    ("after-host-call", 60, (1, 1)),  # in round 2's reads, which wait in memory
    ("after-oplog-append", 70, (1, 1)),
    ("before-commit", 5, (1, 1)),   # the end not committed: only reads are lost
    ("after-invocation", 1, (1, 1)),
]


@pytest.mark.parametrize("point, n, sent", CASES, ids=[f"{p}:{n}" for p, n, _ in CASES])
def test_a_kill_before_a_commit_loses_only_what_nobody_saw(
        golemish_runtime, golemish_crash, sink, mix_worker, point, n, sent):
    out = golemish_crash.crash_at(point, n).invoke(mix_worker, "mix", 2, 20)
    assert out.killed and out.equivalent, out.notes
    assert out.retried == (point == "before-commit" and n == 1)
    # Two payments, each delivered with its own key; only a request cut off before its
    # answer was committed went out twice, with the same key, so the sink counts it once.
    assert sorted(sink.deliveries.values()) == sorted(sent)
    assert len(sink.payments) == 2 and sorted(sink.payments.values()) == ["round 1", "round 2"]
    assert golemish_runtime.call(mix_worker, "paid") == 2
    entries = golemish_runtime.oplog(mix_worker)
    assert sum(isinstance(e, InvokeStart) and e.function == "mix" for _, e in entries) == 1
    ends = [e for _, e in entries if isinstance(e, InvokeEnd)]
    assert ends[-2].results[0][1] == out.value  # the recorded result is the one returned


@pytest.mark.parametrize("seed", range(3))
def test_an_outside_kill_at_a_random_moment_pays_each_round_once(
        golemish_runtime, golemish_crash, sink, mix_worker, seed):
    after = random.Random(seed).uniform(0.05, 0.3)
    # Long enough to be running at any of those moments: three rounds of 10,000 reads
    # came to ~0.27 s once the engine got faster, and the latest kill found them done.
    out = golemish_crash.kill_and_recover(mix_worker, "mix", 3, 20_000, after_s=after)
    assert out.killed and out.equivalent
    assert len(sink.payments) == 3 and all(v <= 2 for v in sink.deliveries.values())
    assert golemish_runtime.call(mix_worker, "paid") == 3


# -- group commit under SIGKILL -------------------------------------------------------------

DRIVER = """
import sys, threading
from golemish.runtime.executor import Deferred, Runtime, RuntimeConfig
home, n = sys.argv[1], int(sys.argv[2])
lock = threading.Lock()
def say(line):
    with lock:
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()
with Runtime(RuntimeConfig(home=home, sync=True)) as rt:
    quiet = Deferred(lambda s, d: None)
    def loop(i):
        while True:
            res = rt.invoke(f"counter/t{i}", "add", ["1"], output=quiet)
            say(f"ack {i} {res.results[0][1]}")
            if res.results[0][1] % 10 == 0:
                c = rt.store.stats.counters()
                say(f"stats {c['fsyncs']} {c['fsync_batches']}")
    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
"""


def test_concurrent_synced_commits_share_fsyncs_and_survive_sigkill(tmp_path, guests):
    home, n = str(tmp_path / "store"), 8
    with Runtime(RuntimeConfig(home=home)) as rt:
        rt.deploy(guests["counter"].read_bytes(), "counter")
        for i in range(n):
            rt.invoke(f"counter/t{i}", "add", ["0"])  # created: the child goes straight in
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, home, str(n)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked: dict[int, int] = {}
    shared = False
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        word, *rest = line.split()
        if word == "ack":
            acked[int(rest[0])] = max(acked.get(int(rest[0]), 0), int(rest[1]))
        elif word == "stats":
            shared = shared or int(rest[1]) > int(rest[0])  # batches > fsyncs: shared
        if sum(acked.values()) >= 400 or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert sum(acked.values()) >= 400
    assert shared, "no fsync was shared by two commits"
    with Runtime(RuntimeConfig(home=home)) as rt:
        for i in range(n):
            wid = f"counter/t{i}"
            rt.resume(wid)  # an add recorded but cut off is finished
            total = rt.invoke(wid, "get").results[0][1]
            adds = [e for _, e in rt.oplog(wid)
                    if isinstance(e, InvokeStart) and e.function == "add"]
            # Every acknowledged add is recorded (and at most one more that was not).
            assert acked.get(i, 0) <= total <= acked.get(i, 0) + 1
            assert total == len(adds) - 1  # the first add was of 0
