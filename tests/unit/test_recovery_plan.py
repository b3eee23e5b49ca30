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


# -- versions and time travel ----------------------------------------------------------
from golemish.runtime.errors import ArgumentError  # noqa: E402
from golemish.runtime.recovery import (  # noqa: E402
    plan_time_travel, recovery_base, usable_snapshots,
)

RV, UP, SN = 12, 13, 7


def test_a_revert_voids_the_entries_after_its_target():
    # Invocations at 2 and 5; the revert at 8 goes back to 4 (after the first one).
    kinds = [C, S, E, SN, S, H, E, RV, S, E]
    p = plan_recovery("w/x", enumerate(kinds, 1), reverts={8: 4})
    assert p.void == ((5, 8),)
    assert p.replay == (2, 9)


def test_a_reverted_interrupted_invocation_is_not_open():
    kinds = [C, S, E, S, H, RV, S, E]
    p = plan_recovery("w/x", enumerate(kinds, 1), reverts={6: 3})
    assert p.open_start is None and p.replay == (2, 7)


def test_snapshots_between_a_revert_target_and_the_revert_are_unusable():
    assert usable_snapshots([12, 9, 6, 4], {10: 5}) == [12, 4]
    assert usable_snapshots([9, 5], {10: 5}) == [5]  # the target itself is the state kept


def test_revert_by_index_and_by_invocations():
    kinds = [C, S, E, SN, S, H, E, S, F]
    p = plan_time_travel("w/x", enumerate(kinds, 1), to_index=4)
    assert (p.target, p.undone, p.version) == (4, (5, 8), None)
    p = plan_time_travel("w/x", enumerate(kinds, 1), last_invocations=2)
    assert (p.target, p.undone) == (4, (5, 8))
    p = plan_time_travel("w/x", enumerate(kinds, 1), last_invocations=3)
    assert (p.target, p.undone) == (1, (2, 5, 8))


def test_invocations_already_reverted_do_not_count_again():
    kinds = [C, S, E, S, E, RV, S, E]  # the revert at 6 undid the invocation at 4
    p = plan_time_travel("w/x", enumerate(kinds, 1), last_invocations=2, reverts={6: 3})
    assert (p.target, p.undone) == (1, (2, 7))


@pytest.mark.parametrize("kw, match", [
    ({"to_index": 6}, "inside the invocation begun at 5"),
    ({"to_index": 11}, "outside"),
    ({"last_invocations": 3}, "has 2 invocation"),
    ({"last_invocations": 0}, "cannot undo 0"),
    ({}, "either"),
])
def test_impossible_targets_are_refused(kw, match):
    kinds = [C, S, E, SN, S, H, E]
    with pytest.raises(ArgumentError, match=match):
        plan_time_travel("w/x", enumerate(kinds, 1), **kw)


def test_the_version_at_the_target_follows_updates_that_are_in_effect():
    kinds = [C, S, E, UP, S, E, UP, S, E]
    updates = {4: (1, "auto"), 7: (2, "manual")}
    at = lambda i, **kw: plan_time_travel("w/x", enumerate(kinds, 1), to_index=i,  # noqa: E731
                                          updates=updates, **kw)
    assert (at(3).version, at(3).base) == (None, 0)
    assert (at(6).version, at(6).base) == (1, 0)
    assert (at(9).version, at(9).base) == (2, 7)


def test_a_reverted_update_is_not_in_effect():
    kinds = [C, S, E, UP, S, E, RV, S, E]
    p = plan_time_travel("w/x", enumerate(kinds, 1), to_index=9, updates={4: (1, "manual")},
                         reverts={7: 3})
    assert (p.version, p.base) == (None, 0)
    assert recovery_base({4: (1, "manual")}, [(4, 7)]) == 0
    assert recovery_base({4: (1, "manual"), 9: (2, "auto")}, []) == 4
