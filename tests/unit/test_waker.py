"""The waker's pure choice: which suspended workers are due now."""

from golemish.runtime.server.waker import Timers, due, sleepers


def test_due_picks_sleepers_whose_time_is_near_and_nothing_else():
    now = 10 * 10**9
    metas = [
        {"id": "c/soon", "status": "suspended", "suspended": {"until_ns": now + 4 * 10**8}},
        {"id": "c/late", "status": "suspended", "suspended": {"until_ns": now - 10**9}},
        {"id": "c/later", "status": "suspended", "suspended": {"until_ns": now + 6 * 10**8}},
        {"id": "c/promise", "status": "suspended", "suspended": {"promise": "c/promise#1"}},
        {"id": "c/idle", "status": "idle"},
        {"id": "c/stale", "status": "idle", "suspended": {"until_ns": now}},
    ]
    assert due(metas, now, 0.5) == ["c/soon", "c/late"]


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
