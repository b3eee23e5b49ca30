"""The snapshot policy as a pure object, driven by hand-made timings."""

from __future__ import annotations

import pytest

from golemish.runtime.errors import ArgumentError
from golemish.runtime.snapshot.policy import PolicyState, SnapshotPolicy

ADAPTIVE = SnapshotPolicy.parse("adaptive")  # target 0.05 s, at most 5% overhead


def run(state: PolicyState, seconds: float, limit: int = 10_000) -> int:
    """Invocations of ``seconds`` each until a snapshot is due (then it is taken)."""
    for n in range(1, limit + 1):
        state.invoked(seconds)
        if state.due():
            return n
    return 0


def test_a_recovered_worker_estimates_the_cost_from_the_median_of_its_snapshots():
    # Two ordinary snapshots and one taken while the machine was loaded.
    state = PolicyState(ADAPTIVE, snapshot_costs=[0.002, 0.022, 0.0025])
    assert state.cost_s == 0.0025
    assert state.interval_s() == pytest.approx(0.05)
    assert run(state, 0.001) == 50


def test_the_estimate_moves_with_every_snapshot():
    state = PolicyState(ADAPTIVE, snapshot_costs=[0.022])
    assert state.interval_s() == pytest.approx(0.44)  # 22 ms may take 5%: 0.44 s
    for _ in range(12):
        state.snapshotted(0.002)
    assert state.cost_s < 0.0025
    assert state.interval_s() == pytest.approx(0.05)


def test_a_high_estimate_holds_a_long_tail_only_up_to_the_invocation_bound():
    # The reported case: one 22 ms sample, invocations of 1.2 ms. τ says 0.44 s of
    # work (366 invocations); the invocation bound snapshots at 64 and measures again.
    state = PolicyState(ADAPTIVE, snapshot_costs=[0.022])
    assert run(state, 0.0012) == 64
    state.snapshotted(0.002)
    assert state.cost_s == pytest.approx(0.7 * 0.022 + 0.3 * 0.002)


def test_a_recovered_tail_past_the_bound_is_snapshotted_at_once():
    state = PolicyState(ADAPTIVE, snapshot_costs=[0.022], tail_s=0.111, tail_invocations=91)
    assert state.due()


def test_a_long_tail_that_replays_fast_is_not_forced():
    state = PolicyState(ADAPTIVE, snapshot_costs=[0.022])
    assert run(state, 0.0001, limit=400) == 0  # 400 invocations, 40 ms: under the target
    assert run(state, 0.0001) == 100  # 50 ms reached


def test_cheap_snapshots_follow_the_target_not_the_invocation_bound():
    state = PolicyState(ADAPTIVE, snapshot_costs=[0.0005])
    assert run(state, 0.0001) == 500  # 50 ms of work; the bound of 64 does not apply


def test_the_invocation_bound_is_part_of_the_policy_text():
    p = SnapshotPolicy.parse("adaptive:0.1:16")
    assert (p.target_tail_s, p.max_tail_invocations) == (0.1, 16)
    assert str(p) == "adaptive:0.1:16" and str(ADAPTIVE) == "adaptive:0.05"
    assert SnapshotPolicy.parse(str(p)) == p
    assert SnapshotPolicy.parse("adaptive:0").target_tail_s == 0  # snapshot at every chance
    for bad in ("adaptive:0.1:0", "adaptive:-1", "adaptive:x", "adaptive:0.1:1.5"):
        with pytest.raises(ArgumentError):
            SnapshotPolicy.parse(bad)


def test_a_long_call_counts_its_host_calls_at_their_replay_cost():
    s = PolicyState(ADAPTIVE, snapshot_cost_s=0.001)
    assert s.interval_s() == 0.05
    # 10,000 clock reads ran in 31 ms; replaying them takes ~80 ms: due.
    assert s.midcall_due(0.031, 10_000, 10_000)
    assert not s.midcall_due(0.031, 5_000, 5_000)  # ~40 ms either way
    assert s.midcall_due(0.06, 10, 10)             # slow guest work counts by its time
    s.invoked(0.02)                                # earlier invocations' tail adds up,
    assert s.midcall_due(0.0, 4_000, 4_000)
    # but by their time only: their calls are not counted again in this one's.
    assert not s.midcall_due(0.0, 5_000, 1_000)
