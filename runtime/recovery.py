"""The recovery planner: a pure function from what the oplog holds to what to re-run.

Kept apart from the code that applies a plan (``worker.Worker.recover``) so it
can be tested on hand-made kind sequences without an engine or a store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from golemish.oplog import (
    AtomicBegin, AtomicEnd, CorruptionError, Create, InvokeEnd, InvokeFailed, InvokeStart,
    Revert, Rewind,
)

from .errors import ArgumentError


@dataclass(frozen=True)
class RecoveryPlan:
    """How to rebuild a worker: from a snapshot (or Create), then replay of the tail."""

    last_index: int
    #: The snapshot index the tail starts after; 0 means full replay from Create.
    start: int = 0
    #: Completed invocations to re-execute, in order (their InvokeStart indexes).
    replay: tuple[int, ...] = ()
    #: Failed invocations to skip: start index -> end index. Their effects were discarded.
    skip: dict[int, int] = field(default_factory=dict)
    #: An invocation that began but never ended (the process died): finish it.
    open_start: int | None = None
    #: Inclusive index ranges voided by Rewind entries: replay skips them.
    void: tuple[tuple[int, int], ...] = ()
    #: The open invocation was cut inside an atomic region begun here: replay stops at
    #: this index and the region runs again live (after a new Rewind).
    rewind_to: int | None = None


def void_ranges(*targets: Mapping[int, int] | None) -> tuple[tuple[int, int], ...]:
    """Inclusive (first, last) index ranges voided by Rewind or Revert entries, given as
    {entry index: target index} maps."""
    return tuple(sorted((to + 1, at) for m in targets for at, to in (m or {}).items()))


def snapshot_candidates(snapshot_indexes: Iterable[int], last_index: int) -> list[int]:
    """Snapshots worth trying, newest first: those the oplog actually reaches."""
    return sorted((i for i in snapshot_indexes if 1 < i <= last_index), reverse=True)


def plan_recovery(worker_id: str, kinds: Iterable[tuple[int, int]], start: int = 0,
                  rewinds: Mapping[int, int] | None = None,
                  open_at: int | None = None,
                  reverts: Mapping[int, int] | None = None) -> RecoveryPlan:
    """Plan the replay of (index, entry kind) pairs in index order.

    ``start`` is the index of the snapshot being restored (the kinds then begin
    at start + 1), or 0 for full replay (they begin with the Create entry).
    ``rewinds`` maps the index of each Rewind entry to the index it rewinds to.
    ``open_at``: the snapshot was taken inside the invocation begun there (a mid-call
    snapshot), so the kinds start in the middle of its body.
    ``reverts`` maps the index of each Revert entry to the index it reverts to: the
    entries after the target up to the Revert are void, exactly like a Rewind's.
    Raises CorruptionError when the sequence cannot have been written by golemish
    (no Create first, a gap, an end without a start, nested starts).
    """
    kinds = list(kinds)
    void = void_ranges(rewinds, reverts)

    def is_void(index: int) -> bool:
        return any(a <= index <= b for a, b in void)

    def bad(index: int, detail: str) -> CorruptionError:
        return CorruptionError("oplog", worker_id, detail, index=index,
                               hint="run `golemish store check`")

    replay: list[int] = []
    skip: dict[int, int] = {}
    open_start: int | None = open_at
    atomic: list[int] = []  # open atomic regions of the current invocation
    last = start
    for index, kind in kinds:
        if index != last + 1:
            raise bad(last + 1, "missing entry")
        last = index
        if kind in (Rewind.KIND, Revert.KIND) or (void and is_void(index)):
            continue
        if kind == AtomicBegin.KIND:
            atomic.append(index)
        elif kind == AtomicEnd.KIND and atomic:
            atomic.pop()
        if index == 1:
            if kind != Create.KIND:
                raise bad(1, "the first entry is not a create entry")
            continue
        if kind == InvokeStart.KIND:
            if open_start is not None:
                raise bad(index, f"invocation starts inside the one begun at {open_start}")
            open_start = index
            atomic = []
        elif kind in (InvokeEnd.KIND, InvokeFailed.KIND):
            if open_start is None:
                raise bad(index, "invocation end without a start")
            if kind == InvokeEnd.KIND:
                replay.append(open_start)
            else:
                skip[open_start] = index
            open_start = None
        elif kind == Create.KIND:
            raise bad(index, "a second create entry")
    if last == 0:
        raise bad(1, "the oplog is empty")
    rewind_to = atomic[0] if open_start is not None and atomic else None
    return RecoveryPlan(last, start, tuple(replay), skip, open_start, void, rewind_to)


def usable_snapshots(candidates: Iterable[int], reverts: Mapping[int, int],
                     floor: int = 0) -> list[int]:
    """The candidates no Revert has voided: a snapshot taken after a revert's target and
    before the revert shows a state the worker no longer has (order is kept). Those at
    or before ``floor`` (the last manual update, see :func:`recovery_base`) predate the
    loaded state and are unusable too."""
    return [s for s in candidates
            if s > floor and not any(to < s <= at for at, to in reverts.items())]


@dataclass(frozen=True)
class TimeTravelPlan:
    """Where a revert or a fork lands: the worker's state as it was at ``target``."""

    target: int
    #: Effective invocations after the target (their InvokeStart indexes): undone.
    undone: tuple[int, ...]
    #: The component version at the target; None: the one in the Create entry.
    version: int | None
    #: The effective manual Update at or before the target (0: none): replay from
    #: Create is impossible before it, so full recovery starts there.
    base: int


def plan_time_travel(worker_id: str, kinds: Iterable[tuple[int, int]], *,
                     to_index: int | None = None, last_invocations: int | None = None,
                     rewinds: Mapping[int, int] | None = None,
                     reverts: Mapping[int, int] | None = None,
                     updates: Mapping[int, tuple[int, str]] | None = None) -> TimeTravelPlan:
    """Plan a revert (or the prefix of a fork) of a whole oplog given as (index, kind).

    Exactly one of ``to_index`` and ``last_invocations`` is given. ``updates`` maps
    each Update entry's index to (version, mode). The target must lie between
    invocations: a state in the middle of one is not a state the worker ever rested in.
    Raises ArgumentError for a target that does not exist or is not between invocations.
    """
    kinds = list(kinds)
    rewinds, reverts, updates = dict(rewinds or {}), dict(reverts or {}), dict(updates or {})
    void = void_ranges(rewinds, reverts)

    def effective(index: int) -> bool:
        return not any(a <= index <= b for a, b in void)

    starts = [i for i, k in kinds if k == InvokeStart.KIND and effective(i)]
    if (to_index is None) == (last_invocations is None):
        raise ArgumentError("give either an oplog index or a number of invocations")
    if last_invocations is not None:
        if last_invocations < 1 or last_invocations > len(starts):
            raise ArgumentError(f"worker {worker_id} has {len(starts)} invocation(s) in "
                                f"effect; cannot undo {last_invocations}")
        target = starts[-last_invocations] - 1
    else:
        assert to_index is not None
        target = to_index
        if not 1 <= target <= len(kinds):
            raise ArgumentError(f"oplog index {target} is outside 1..{len(kinds)} of "
                                f"worker {worker_id}")

    def upto(m: dict[int, int]) -> dict[int, int]:
        return {at: to for at, to in m.items() if at <= target}

    prefix = plan_recovery(worker_id, kinds[:target], rewinds=upto(rewinds),
                           reverts=upto(reverts))
    if prefix.open_start is not None:
        raise ArgumentError(f"oplog index {target} of worker {worker_id} is inside the "
                            f"invocation begun at {prefix.open_start}; choose an index "
                            f"between invocations")
    in_prefix = void_ranges(upto(rewinds), upto(reverts))
    version: int | None = None
    base = 0
    for at in sorted(updates):
        if at <= target and not any(a <= at <= b for a, b in in_prefix):
            version = updates[at][0]
            if updates[at][1] == "manual":
                base = at
    return TimeTravelPlan(target, tuple(i for i in starts if i > target), version, base)


def recovery_base(updates: Mapping[int, tuple[int, str]],
                  void: Iterable[tuple[int, int]]) -> int:
    """Where replay without a snapshot starts: the last effective manual Update (its
    saved state is loaded into the new version), or 0 for the Create entry."""
    void = list(void)
    manual = [at for at, (_, mode) in updates.items()
              if mode == "manual" and not any(a <= at <= b for a, b in void)]
    return max(manual, default=0)
