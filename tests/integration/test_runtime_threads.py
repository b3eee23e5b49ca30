"""One Runtime, many threads: per-worker order, exact counts, a safe close()."""

from __future__ import annotations

import threading
import time

import pytest

from golemish.runtime.errors import ClosedError


def test_many_threads_on_one_runtime_give_exact_counts(make_runtime, guests):
    rt = make_runtime()
    rt.deploy(guests["counter"].read_bytes(), "counter")
    workers = [f"counter/w{i}" for i in range(4)]
    errors: list[BaseException] = []
    # Created first: a reader asking for a worker that no thread has invoked yet is
    # rightly told there is none; readers of existing workers must never be.
    assert [rt.invoke(w, "get").results[0][1] for w in workers] == [0, 0, 0, 0]

    def client(t: int) -> None:
        try:
            for i in range(10):
                rt.invoke(workers[(t + i) % 4], "add", ["1"])
                if i % 3 == 0:
                    rt.worker_info(workers[i % 4])  # readers alongside writers
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    totals = [rt.invoke(w, "get").results[0][1] for w in workers]
    assert totals == [20, 20, 20, 20]
    rt.close()
    rt2 = make_runtime()  # and recovered from the store alike
    assert [rt2.invoke(w, "get").results[0][1] for w in workers] == totals


def test_close_waits_for_a_running_invocation_then_refuses_new_ones(make_runtime, guests):
    rt = make_runtime()
    rt.deploy(guests["counter"].read_bytes(), "counter")
    rt.invoke("counter/a", "add", ["1"])
    started = threading.Event()
    done: list[int] = []

    def slow() -> None:
        def out(stream: int, data: bytes) -> None:
            started.set()
        # `hog` touches memory for a while; any running call will do
        rt.invoke("counter/a", "add", ["2"], output=out)
        done.append(1)

    t = threading.Thread(target=slow)
    t.start()
    t.join(30)
    closer = threading.Thread(target=rt.close)
    closer.start()
    closer.join(30)
    assert done == [1]
    with pytest.raises(ClosedError):
        rt.invoke("counter/a", "add", ["1"])
    rt.close()  # a second close is harmless
    rt2 = make_runtime()
    assert rt2.invoke("counter/a", "get").results[0][1] == 3


def test_close_from_another_thread_during_invocations(make_runtime, guests):
    rt = make_runtime()
    rt.deploy(guests["counter"].read_bytes(), "counter")
    acked = [0, 0]
    stop = threading.Event()

    def client(i: int) -> None:
        while not stop.is_set():
            try:
                rt.invoke(f"counter/c{i}", "add", ["1"])
            except ClosedError:
                return
            acked[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    rt.close()
    stop.set()
    for t in threads:
        t.join(30)
    rt2 = make_runtime()
    for i in range(2):
        assert rt2.invoke(f"counter/c{i}", "get").results[0][1] == acked[i]


def test_interrupting_a_suspended_stackful_worker_abandons_its_invocation(make_runtime,
                                                                        guests):
    """The invocation's start lies before the mid-call snapshot taken when it
    suspended: interrupt must find it there, not only after the latest snapshot."""
    from golemish.oplog import InvokeFailed
    from golemish.runtime.errors import Suspended
    pytest.importorskip("icpp_binaryen", reason="asyncify needs golemish[stackful]")
    rt = make_runtime()
    rt.deploy(guests["agent"].read_bytes(), "agent", stackful=True)
    with pytest.raises(Suspended):
        rt.invoke("agent/a", "nap", ["60000"])
    assert rt.store.snapshots.indexes("agent/a"), "expected a mid-call snapshot"
    assert rt.interrupt("agent/a") == "nap"
    rt.close()
    rt2 = make_runtime()
    assert rt2.worker_info("agent/a")["status"] == "idle"
    assert any(isinstance(e, InvokeFailed) for _, e in rt2.oplog("agent/a"))
    assert rt2.invoke("agent/a", "nap", ["1"]).results  # usable again, not suspended
