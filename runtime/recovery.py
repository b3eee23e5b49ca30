"""The recovery planner: a pure function from what the oplog holds to what to re-run.

Kept apart from the code that applies a plan (``worker.Worker.recover``) so it
can be tested on hand-made kind sequences without an engine or a store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from golemish.oplog import (
    AtomicBegin, AtomicEnd, CorruptionError, Create, InvokeEnd, InvokeFailed, InvokeStart, Rewind,
)


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


def snapshot_candidates(snapshot_indexes: Iterable[int], last_index: int) -> list[int]:
    """Snapshots worth trying, newest first: those the oplog actually reaches."""
    return sorted((i for i in snapshot_indexes if 1 < i <= last_index), reverse=True)


def plan_recovery(worker_id: str, kinds: Iterable[tuple[int, int]], start: int = 0,
                  rewinds: Mapping[int, int] | None = None,
                  open_at: int | None = None) -> RecoveryPlan:
    """Plan the replay of (index, entry kind) pairs in index order.

    ``start`` is the index of the snapshot being restored (the kinds then begin
    at start + 1), or 0 for full replay (they begin with the Create entry).
    ``rewinds`` maps the index of each Rewind entry to the index it rewinds to.
    ``open_at``: the snapshot was taken inside the invocation begun there (a mid-call
    snapshot), so the kinds start in the middle of its body.
    Raises CorruptionError when the sequence cannot have been written by golemish
    (no Create first, a gap, an end without a start, nested starts).
    """
    kinds = list(kinds)
    void = tuple(sorted((to + 1, at) for at, to in (rewinds or {}).items()))

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
        if kind == Rewind.KIND or (void and is_void(index)):
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
