"""The recovery planner: a pure function from what the oplog holds to what to re-run.

Kept apart from the code that applies a plan (``worker.Worker.recover``) so it
can be tested on hand-made kind sequences without an engine or a store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from golemish.oplog import Create, CorruptionError, InvokeEnd, InvokeFailed, InvokeStart


@dataclass(frozen=True)
class RecoveryPlan:
    """How to rebuild a worker from its oplog by replay."""

    last_index: int
    #: Completed invocations to re-execute, in order (their InvokeStart indexes).
    replay: tuple[int, ...] = ()
    #: Failed invocations to skip: start index -> end index. Their effects were discarded.
    skip: dict[int, int] = field(default_factory=dict)
    #: An invocation that began but never ended (the process died): finish it.
    open_start: int | None = None


def plan_recovery(worker_id: str, kinds: Iterable[tuple[int, int]]) -> RecoveryPlan:
    """Plan from (index, entry kind) pairs in index order.

    Raises CorruptionError when the sequence cannot have been written by golemish
    (no Create first, a gap, an end without a start, nested starts).
    """
    def bad(index: int, detail: str) -> CorruptionError:
        return CorruptionError("oplog", worker_id, detail, index=index,
                               hint="run `golemish store check`")

    replay: list[int] = []
    skip: dict[int, int] = {}
    open_start: int | None = None
    last = 0
    for index, kind in kinds:
        if index != last + 1:
            raise bad(last + 1, "missing entry")
        last = index
        if index == 1:
            if kind != Create.KIND:
                raise bad(1, "the first entry is not a create entry")
            continue
        if kind == InvokeStart.KIND:
            if open_start is not None:
                raise bad(index, f"invocation starts inside the one begun at {open_start}")
            open_start = index
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
    return RecoveryPlan(last, tuple(replay), skip, open_start)
