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


AB, AE, RW = 9, 10, 11


def test_an_open_invocation_cut_inside_an_atomic_region_rewinds_to_its_start():
    p = plan(C, S, H, AB, H, H)
    assert p.open_start == 2 and p.rewind_to == 4


def test_closed_regions_and_nested_ones():
    assert plan(C, S, AB, H, AE, H).rewind_to is None
    assert plan(C, S, AB, H, AB, H, AE, H).rewind_to == 3  # the outermost open region


def test_void_ranges_come_from_rewinds_and_are_skipped():
    # 4: atomic begin, 5-6 cut off, 7: rewind to 4, then the region ran again and closed.
    kinds = [C, S, H, AB, H, H, RW, H, AE, E]
    p = plan_recovery("w/x", enumerate(kinds, 1), rewinds={7: 4})
    assert p.void == ((5, 7),)
    assert p.replay == (2,) and p.rewind_to is None


def test_a_region_cut_twice_rewinds_to_the_same_start():
    kinds = [C, S, AB, H, RW, H]
    p = plan_recovery("w/x", enumerate(kinds, 1), rewinds={5: 3})
    assert p.rewind_to == 3 and p.open_start == 2
