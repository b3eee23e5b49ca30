"""Where commits happen, counted through the store's commit hook (oplog/stats.py).

A commit is one batch (with ``sync``, one fsync): at most one per invocation
without external effects, one more for each piece of output shown live, and
always before anything leaves the process.
"""

from __future__ import annotations

import threading

import pytest

from golemish.oplog import InvokeStart, Log
from golemish.runtime.executor import Deferred, Runtime, RuntimeConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy


@pytest.fixture
def synced(tmp_path, guests):
    cfg = RuntimeConfig(home=str(tmp_path / "store"), sync=True,
                        snapshot_policy=SnapshotPolicy.parse("off"))
    with Runtime(cfg) as rt:
        rt.deploy(guests["counter"].read_bytes(), "counter")
        rt.deploy(guests["journal"].read_bytes(), "journal")
        yield rt


class Recorder:
    def __init__(self) -> None:
        self.commits: list[int] = []
        self.fsyncs: list[tuple[int, int]] = []

    def on_commit(self, entries: int, seconds: float) -> None:
        self.commits.append(entries)

    def on_fsync(self, batches: int, entries: int, seconds: float) -> None:
        self.fsyncs.append((batches, entries))


def test_an_invocation_without_effects_costs_one_fsync(synced):
    synced.invoke("counter/a", "add", ["1"])  # creates the worker
    synced.invoke("journal/j", "count")
    seen = Recorder()
    synced.store.stats.add_observer(seen)
    before = synced.store.stats.counters()
    for i in range(10):
        synced.invoke("counter/a", "add", [str(i)])  # clock, random, a Log nobody shows
        synced.invoke("journal/j", "append", ["200"])  # 400 clock and random reads
    after = synced.store.stats.counters()
    assert after["fsyncs"] - before["fsyncs"] == 20  # one per invocation
    # add: InvokeStart, clock, random, Log, InvokeEnd; append: InvokeStart, 400, InvokeEnd.
    assert seen.commits == [5, 402] * 10
    assert [e for _, e in seen.fsyncs] == [5, 402] * 10
    assert synced.invoke("journal/j", "count").results[0][1] == 2000


def test_output_shown_live_is_committed_before_it_is_shown(synced):
    synced.invoke("counter/a", "add", ["1"])
    in_store: list[object] = []

    def show(stream: int, data: bytes) -> None:
        # Another reader of the store (as the CLI's readers are) sees the Log already.
        last = synced.store.oplog("counter/a")
        in_store.append(last.get(last.last_index))

    before = synced.store.stats.counters()["fsyncs"]
    synced.invoke("counter/a", "add", ["2"], output=show)
    assert synced.store.stats.counters()["fsyncs"] - before == 2  # the Log, then the end
    assert len(in_store) == 1 and isinstance(in_store[0], Log)
    assert in_store[0].data.startswith(b"add 2")

    before = synced.store.stats.counters()["fsyncs"]
    shown: list[bytes] = []
    synced.invoke("counter/a", "add", ["3"], output=Deferred(lambda s, d: shown.append(d)))
    assert synced.store.stats.counters()["fsyncs"] - before == 1  # shown after the end
    assert shown and shown[0].startswith(b"add 3")


def test_other_readers_see_whole_commits_only(synced):
    synced.invoke("journal/j", "count")
    base = synced.store.oplog("journal/j").last_index
    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            log = synced.store.oplog("journal/j")
            if log.damage is not None:
                errors.append(str(log.damage))
            seen.append(len(list(log.read())))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(20):
            synced.invoke("journal/j", "append", ["50"])
    finally:
        stop.set()
        t.join()
    assert not errors
    # Each invocation is one commit of 102 entries (InvokeStart, 100 reads, InvokeEnd):
    # a reader finds a whole number of them, never a part of one.
    assert seen and all((n - base) % 102 == 0 for n in seen)
    assert synced.store.oplog("journal/j").last_index == base + 20 * 102


def test_an_invokestart_waits_for_the_end_and_goes_with_it(synced):
    synced.invoke("counter/a", "add", ["1"])
    log = synced.store.oplog("counter/a")
    n = log.last_index
    res = synced.invoke("counter/a", "add", ["4"], idempotency_key="k-4")
    assert res.index == n + 1
    assert isinstance(synced.store.oplog("counter/a").get(n + 1), InvokeStart)
    assert synced.store.idempotent_index("counter/a", "k-4") == n + 1
    again = synced.invoke("counter/a", "add", ["4"], idempotency_key="k-4")
    assert again.deduplicated and again.results == res.results
