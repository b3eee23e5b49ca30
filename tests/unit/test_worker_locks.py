"""WorkerLocks: arrival order per worker, parallel across workers, cross-thread cycles."""

from __future__ import annotations

import threading
import time

import pytest

from golemish.runtime.locks import CallCycle, WorkerLocks


def test_turns_are_served_in_arrival_order():
    locks = WorkerLocks()
    order: list[int] = []
    gate = threading.Event()

    def holder() -> None:
        with locks.hold("c/a"):
            gate.wait(5)

    def waiter(i: int) -> None:
        with locks.hold("c/a"):
            order.append(i)

    t0 = threading.Thread(target=holder)
    t0.start()
    while not locks.busy("c/a"):
        time.sleep(0.001)
    threads = []
    for i in range(20):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.005)  # each asks after the previous one
    gate.set()
    for t in [t0, *threads]:
        t.join(5)
    assert order == list(range(20))
    assert not locks.busy("c/a")  # nothing left behind once nobody waits


def test_different_workers_do_not_wait_for_each_other():
    locks = WorkerLocks()
    inside = threading.Barrier(3, timeout=5)

    def run(wid: str) -> None:
        with locks.hold(wid):
            inside.wait()  # breaks (BrokenBarrierError) if the three are not inside at once

    threads = [threading.Thread(target=run, args=(f"c/{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    inside.wait()
    for t in threads:
        t.join(5)


def test_a_cycle_across_threads_is_refused_not_deadlocked():
    locks = WorkerLocks()
    a_held, b_waiting = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def t1() -> None:  # holds A, then waits for B
        with locks.hold("c/a"):
            a_held.set()
            b_waiting.wait(5)
            try:
                with locks.hold("c/b"):
                    pass
            except CallCycle as e:
                errors.append(e)

    def t2() -> None:  # holds B, asks for A after t1 holds it
        with locks.hold("c/b"):
            a_held.wait(5)
            b_waiting.set()
            time.sleep(0.05)  # t1 is now waiting for B (or about to ask)
            try:
                with locks.hold("c/a"):
                    pass
            except CallCycle as e:
                errors.append(e)

    threads = [threading.Thread(target=t1), threading.Thread(target=t2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads), "deadlocked"
    assert len(errors) == 1 and "call cycle" in str(errors[0])


def test_the_same_thread_asking_again_is_a_cycle():
    locks = WorkerLocks()
    with locks.hold("c/a"):
        with pytest.raises(CallCycle):
            with locks.hold("c/a"):
                pass
