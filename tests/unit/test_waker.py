"""The waker's pure choice: which suspended workers are due now."""

import gc
import weakref

from golemish.runtime.server.waker import FullCollections, Timers, collect_now, sleepers


def test_the_sleepers_whose_time_is_near_are_due_and_nothing_else():
    now = 10 * 10**9
    metas = [
        {"id": "c/soon", "status": "suspended", "suspended": {"until_ns": now + 4 * 10**8}},
        {"id": "c/late", "status": "suspended", "suspended": {"until_ns": now - 10**9}},
        {"id": "c/later", "status": "suspended", "suspended": {"until_ns": now + 6 * 10**8}},
        {"id": "c/promise", "status": "suspended", "suspended": {"promise": "c/promise#1"}},
        {"id": "c/idle", "status": "idle"},
        {"id": "c/stale", "status": "idle", "suspended": {"until_ns": now}},
    ]
    found = sleepers(metas)
    assert [wid for wid, _ in found] == ["c/soon", "c/late", "c/later"]
    t = Timers()
    for wid, until in found:
        t.set(wid, until)
    assert [wid for wid, _ in t.pop_due(now, int(0.5e9))] == ["c/late", "c/soon"]


def test_timers_pop_in_deadline_order_within_the_lead():
    t = Timers()
    t.set("c/c", 300)
    t.set("c/a", 100)
    t.set("c/b", 200)
    assert len(t) == 3 and t.next_ns() == 100
    assert t.pop_due(now_ns=0, lead_ns=50) == []
    assert t.pop_due(now_ns=150, lead_ns=60) == [("c/a", 100), ("c/b", 200)]
    assert len(t) == 1 and t.next_ns() == 300
    assert t.pop_due(now_ns=10**9, lead_ns=0) == [("c/c", 300)]
    assert t.next_ns() is None and len(t) == 0


def test_a_timer_set_again_counts_only_with_its_latest_deadline():
    t = Timers()
    t.set("c/a", 100)
    t.set("c/b", 150)
    t.set("c/a", 500)  # slept again, until later: the old entry is stale
    t.set("c/b", 150)  # the same deadline twice is one timer
    assert len(t) == 2 and t.next_ns() == 150
    assert t.pop_due(now_ns=200, lead_ns=0) == [("c/b", 150)]
    assert t.next_ns() == 500
    t.set("c/a", 50)  # ...or earlier
    assert t.pop_due(now_ns=60, lead_ns=0) == [("c/a", 50)]
    assert t.pop_due(now_ns=10**9, lead_ns=0) == []


def test_sleepers_reads_only_suspended_sleeps_from_metadata():
    metas = [
        {"id": "c/s", "status": "suspended", "suspended": {"until_ns": 7}},
        {"id": "c/p", "status": "suspended", "suspended": {"promise": "c/p#1"}},
        {"id": "c/i", "status": "idle", "suspended": {"until_ns": 7}},
    ]
    assert sleepers(metas) == [("c/s", 7)]


def test_a_full_collection_waits_for_a_gap_between_deadlines_but_not_forever():
    now, ms = 10**12, 10**6
    # Not yet: Python itself would not collect before 10 young collections.
    assert not collect_now(now, None, 0.1, gen1_runs=9, since_full_s=100)
    # Nothing due: now.
    assert collect_now(now, None, 0.1, gen1_runs=10, since_full_s=0)
    # A sleeper due within twice the last pause (+10 ms) blocks it...
    assert not collect_now(now, now + 200 * ms, 0.1, gen1_runs=10, since_full_s=5)
    assert collect_now(now, now + 211 * ms, 0.1, gen1_runs=10, since_full_s=5)
    # ...until the last full collection is max_wait_s old.
    assert collect_now(now, now + ms, 0.1, gen1_runs=10, since_full_s=60)
    assert not collect_now(now, now + ms, 0.1, gen1_runs=10, since_full_s=59,
                           max_wait_s=60)


def test_full_collections_take_over_generation_2_and_give_it_back():
    before = gc.get_threshold()
    fc = FullCollections()
    try:
        assert fc.install()
        assert not fc.install()  # once
        assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] > 10**6
        assert gc.get_freeze_count() > 0  # start-up objects are not walked again

        class Cycle:
            pass
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
        gc.collect(1)  # promoted to the old generation, as long-lived objects are
        gone = weakref.ref(a)
        del a, b
        assert fc.due(0, None) is (gc.get_count()[2] >= 10)
        fc.collect()
        assert fc.collections == 1 and fc.pause_s > 0
        assert gone() is None
    finally:
        fc.uninstall()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_two_wakers_in_one_process_give_generation_2_back_when_the_last_stops():
    before = gc.get_threshold()
    a, b = FullCollections(), FullCollections()
    assert a.install() and b.install()
    a.uninstall()
    assert gc.get_threshold()[2] > 10**6  # b still holds it
    a.uninstall()  # twice is once
    assert gc.get_threshold()[2] > 10**6
    b.uninstall()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
