"""The pure recovery planner, on hand-made oplog shapes."""

import pytest

from golemish.oplog import CorruptionError
from golemish.runtime.recovery import plan_recovery

C, S, E, F, H, L = 1, 2, 3, 4, 5, 6


def plan(*kinds):
    return plan_recovery("w/x", enumerate(kinds, 1))


def test_completed_failed_and_open_invocations():
    p = plan(C, H, S, H, L, E, S, H, F, S, E, S, H)
    assert p.last_index == 13
    assert p.replay == (3, 10)
    assert p.skip == {7: 9}
    assert p.open_start == 12


def test_fresh_worker_has_nothing_to_replay():
    p = plan(C)
    assert (p.replay, p.skip, p.open_start, p.last_index) == ((), {}, None, 1)


@pytest.mark.parametrize("kinds, detail", [
    ((S, E), "not a create"),
    ((C, S, S), "inside"),
    ((C, E), "without a start"),
    ((C, S, E, C), "second create"),
])
def test_impossible_shapes_are_corruption(kinds, detail):
    with pytest.raises(CorruptionError, match=detail):
        plan(*kinds)


def test_gap_is_corruption():
    with pytest.raises(CorruptionError, match="missing entry") as e:
        plan_recovery("w/x", [(1, C), (2, S), (4, E)])
    assert e.value.index == 3


def test_empty_oplog_is_corruption():
    with pytest.raises(CorruptionError, match="empty"):
        plan_recovery("w/x", [])
