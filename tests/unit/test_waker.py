"""The waker's pure choice: which suspended workers are due now."""

from golemish.runtime.server.waker import due


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
