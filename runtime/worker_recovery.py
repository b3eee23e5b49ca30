"""Recovery of a worker: rebuild its instance from the newest usable snapshot plus the
oplog tail (or by replay from Create), and finish an invocation a crash cut off.

What to re-run is decided by the pure planner in recovery.py; this module carries
the plan out on a live instance through the worker's journal in replay mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from golemish.oplog import (
    CorruptionError, Create, InvokeEnd, InvokeStart, Manifest, Snapshot, WorkerOplog, codec,
)

from . import invocation
from .errors import DivergenceError, Interrupted, InvocationFailed, WorkerSuspendedError
from .history import History, read_history
from .host.wasi_files import FileWasi
from .journal import Cursor, describe
from .observe import recovery_mode
from .recovery import (
    RecoveryPlan, plan_recovery, recovery_base, snapshot_candidates, usable_snapshots,
    void_ranges,
)
from .snapshot.capture import SnapshotError, restore
from .snapshot.policy import PolicyState
from .typed.values import format_results, same_values
from .versions_manual import manual_base, start_from_state
from .worker_snapshots import host_parts, snapshot_costs

if TYPE_CHECKING:
    from .worker import Worker


@dataclass
class RecoveryReport:
    """What a recovery did, for the CLI and benchmarks."""

    mode: str = "replay"
    #: Oplog index of the snapshot restored (0: full replay from Create).
    snapshot_index: int = 0
    restore_seconds: float = 0.0
    #: Pages the restore wrote: those that differ from a fresh instance (its base).
    restored_pages: int = 0
    #: Snapshots that could not be used, and why (newest first).
    fallbacks: list[str] = field(default_factory=list)
    entries: int = 0
    replayed_invocations: int = 0
    skipped_failed: int = 0
    replayed_host_calls: int = 0
    seconds: float = 0.0
    #: The invocation a crash had cut off, finished by this recovery.
    finished: dict[str, Any] | None = None

    def describe(self) -> str:
        if self.mode.startswith("snapshot"):
            where = "mid-call snapshot" if "mid-call" in self.mode else "snapshot"
            msg = (f"recovered from the {where} at oplog index {self.snapshot_index} plus "
                   f"{self.entries} entries ({self.replayed_invocations} invocations) in "
                   f"{self.seconds * 1e3:.1f} ms")
        else:
            msg = (f"recovered by replay of {self.entries} oplog entries "
                   f"({self.replayed_invocations} invocations) in {self.seconds * 1e3:.1f} ms")
        if self.fallbacks:
            msg += f"; unusable snapshots skipped: {'; '.join(self.fallbacks)}"
        if self.finished:
            f = self.finished
            outcome = (f"-> {format_results(f['results'])}" if f["ok"]
                       else f"failed: {f['error']}")
            msg += (f"; finished the interrupted invocation {f['function']} "
                    f"(oplog index {f['index']}) {outcome}")
        return msg


def ensure_ready(w: Worker) -> RecoveryReport | None:
    """Make the instance live, recovering it from the oplog if needed."""
    w.check_usable()
    if w.instance is not None:
        return None
    # Entries a failed call left waiting (a store error, an interrupt outside guest
    # code) are real records: write them, so that every reader recovers from them.
    w.journal.commit()
    if w.meta.get("suspended") and not w._due():
        raise WorkerSuspendedError(w.id, **w.meta["suspended"])
    try:
        report = w.recover()
    except DivergenceError as e:
        w.discard()
        w._fail(e)
        raise
    except BaseException as e:
        w.discard()
        if isinstance(e, Interrupted) and e.function is None:
            e.recovering = w.id  # a signal during replay: nothing was recorded
        raise
    w.rt.observer.recovered(recovery_mode(report.mode), report.seconds)
    w.maybe_snapshot()
    return report


def restore_latest(w: Worker, create: Create, report: RecoveryReport) -> Manifest | None:
    """Restore the newest snapshot that verifies; None when there is none."""
    if w.rt.config.recovery == "replay" or w.full_replay:
        return None
    snaps = w.rt.store.snapshots
    candidates = snapshot_candidates(snaps.indexes(w.id), w.oplog.last_index)
    if candidates:  # a revert voids the snapshots between its target and itself
        h = read_history(w.oplog, min(candidates) + 1)
        floor = recovery_base(h.updates, void_ranges(h.rewinds, h.reverts))
        candidates = usable_snapshots(candidates, h.reverts, floor)
    for index in candidates:
        t0 = time.perf_counter()
        inst = None
        try:
            manifest = snaps.manifest(w.id, index)
            if manifest.component_hash != w.component["hash"]:
                raise SnapshotError("it was taken of another component version")
            retry, stack, midcall, files = host_parts(manifest)
            if midcall is not None:
                plan_midcall(w, midcall)  # usable only if that invocation did not fail
            inst = w._instantiate(create, initialize=False)
            # The memory may have grown under a later, higher cap; each invocation
            # sets its own cap again before it runs.
            inst.set_memory_limit(max(inst.memory_limit, manifest.memory_size))
            fresh = w.rt.bases.verified(manifest.base, inst) if manifest.base else None
            report.restored_pages = restore(inst, manifest, w.layout,
                                            snaps.pages_for(w.id, manifest), fresh)
            w.host_api.restore_state(retry)
            if files is not None:
                if not isinstance(w.wasi, FileWasi):
                    raise SnapshotError("it has files, this component has no filesystem")
                try:
                    w.wasi.fs.restore(files)
                except (ValueError, TypeError, codec.DecodeError) as e:
                    raise SnapshotError(f"its filesystem state is unreadable: {e}") from None
            if w.midcall is not None and stack is not None:
                w.midcall.attach(inst, ptr=stack[0], size=stack[1])
        except (CorruptionError, SnapshotError, InvocationFailed) as e:
            if inst is not None:
                inst.close()
            if isinstance(e, Interrupted):
                raise
            report.fallbacks.append(f"index {index}: {e}")
            continue
        w.instance = inst
        report.mode, report.snapshot_index = "snapshot", index
        report.restore_seconds = time.perf_counter() - t0
        return manifest
    return None


def plan_log(log: WorkerOplog, worker_id: str, start: int,
             open_at: int | None = None, history: History | None = None) -> RecoveryPlan:
    """The one way a recovery is planned: the pure planner over the history after
    ``start`` (Rewind and Revert markers read here). ``open_at``: the invocation a
    mid-call snapshot was taken inside, which stays open. ``history``: that history,
    already read (from ``start + 1``) by a caller that needs it too."""
    h = history if history is not None else read_history(log, start + 1)
    return plan_recovery(worker_id, h.kinds, start, h.rewinds, open_at=open_at,
                         reverts=h.reverts)


def plan_tail(w: Worker, start: int, open_at: int | None = None,
              history: History | None = None) -> RecoveryPlan:
    """Plan the replay of the worker's entries after ``start``."""
    return plan_log(w.oplog, w.id, start, open_at, history)


def plan_midcall(w: Worker, midcall: list[Any]) -> Any:
    invocation, tail_from = midcall[0], midcall[1]
    plan = plan_tail(w, tail_from - 1, open_at=invocation)
    if invocation in plan.skip:
        raise SnapshotError("it was taken inside an invocation that later failed")
    return plan


def recover(w: Worker) -> RecoveryReport:
    t0 = time.perf_counter()
    report = RecoveryReport()
    create = w.oplog.get(1)
    if not isinstance(create, Create):
        raise CorruptionError("oplog", w.id, "the first entry is not a create entry",
                              index=1)
    w.journal.replayed_calls = 0
    base = w._restore_latest(create, report)
    midcall = host_parts(base)[2] if base is not None else None
    # Without a snapshot, a manual update's saved state is where replay can start.
    loaded = manual_base(w) if base is None else None
    start = midcall[1] - 1 if midcall is not None else report.snapshot_index
    if loaded is not None:
        start = report.snapshot_index = loaded[0]
    if midcall is not None:
        plan = plan_midcall(w, midcall)
    else:
        plan = plan_tail(w, start)
    report.entries = plan.last_index - start
    if loaded is not None:  # sealed, as at the update: before the replay cursor
        start_from_state(w, create, loaded[1])
        report.mode = "manual update"
    cursor = Cursor(w.oplog.read(start + 1), plan.void, plan.rewind_to)
    w.journal.rewind_to = plan.rewind_to
    w.journal.replay_from(cursor)
    if base is None and loaded is None:
        cursor.next()  # the Create entry
        w.instance = w._instantiate(create, fresh=w._track_fresh)
    w._track(base)
    t_tail = time.perf_counter()
    if midcall is not None:
        # Continue inside the invocation the snapshot interrupted: rewind into it.
        assert w.midcall is not None
        index, entry = midcall[0], w.oplog.get(midcall[0])
        assert isinstance(entry, InvokeStart)
        w.midcall._saved_globals = {n: (t, b) for n, t, b in midcall[2]}
        w.midcall.resume_args = list(midcall[3]) if len(midcall) > 3 else None
        w.midcall.resume()
        report.mode = "snapshot (mid-call)"
        if index == plan.open_start:
            report.finished = finish_open(w, index, entry)
            cursor = Cursor(iter(()))  # the oplog ends inside that invocation
        else:
            replay_one(w, index, entry, cursor)
            report.replayed_invocations += 1
    while (item := cursor.peek()) is not None:
        index, entry = item
        if isinstance(entry, Snapshot):
            cursor.next()
            continue
        if not isinstance(entry, InvokeStart):
            # Initialisation or the previous invocation made fewer calls than recorded.
            raise DivergenceError(w.id, index, describe(entry),
                                  "nothing more (the guest had returned)")
        cursor.next()
        if index in plan.skip:
            cursor.skip_through(plan.skip[index])
            report.skipped_failed += 1
            continue
        w.journal.replay_from(cursor)
        if index == plan.open_start:
            report.finished = finish_open(w, index, entry)
            break
        replay_one(w, index, entry, cursor)
        report.replayed_invocations += 1
    w.journal.go_live()
    report.replayed_host_calls = w.journal.replayed_calls
    report.seconds = time.perf_counter() - t0
    if report.finished is not None and not report.finished["ok"]:
        # The finished invocation failed and took the instance with it: rebuild.
        # The plan now skips it, so this cannot loop.
        again = w.recover()
        again.finished = report.finished
        again.seconds += report.seconds
        return again
    # The replayed tail is work a crash now would replay again: the policy counts it.
    w.policy_state = PolicyState(w.policy, tail_s=time.perf_counter() - t_tail,
                                    tail_invocations=report.replayed_invocations,
                                    snapshot_costs=snapshot_costs(w))
    w.last_recovery = report
    w.last_recovery_ns = w.rt.clock.time_ns()
    if report.finished is not None or report.fallbacks:
        # Worth remembering for `worker show`: a crash was repaired, or snapshots failed.
        w._set_meta(last_recovery=report.describe(), status="idle", suspended=None)
    return report


def replay_one(w: Worker, index: int, entry: InvokeStart, cursor: Cursor) -> None:
    if w.midcall is not None:
        w.midcall.invocation = index
    memory, time_limit = w.limits_of(entry)
    assert w.instance is not None
    w.instance.set_memory_limit(memory)
    try:
        # Replay answers host calls from the oplog, so a completed invocation gets
        # slack over its limit: it must not fail here for a slower machine.
        got = invocation.execute(w, entry.function, entry.params, time_limit * 2 + 1)
    except Interrupted:
        raise  # a signal, not a divergence: nothing is recorded
    except InvocationFailed as e:
        end = cursor.peek()
        raise DivergenceError(w.id, end[0] if end else index,
                              describe(end[1]) if end else "a completed invocation",
                              f"a failure ({e})") from None
    end = cursor.next()
    if end is None or not isinstance(end[1], InvokeEnd):
        raise DivergenceError(w.id, end[0] if end else index + 1,
                              describe(end[1]) if end else "nothing",
                              f"the end of the invocation with {format_results(got)}")
    if not same_values(end[1].results, got):
        raise DivergenceError(w.id, end[0],
                              f"result {format_results(end[1].results)}",
                              f"result {format_results(got)}")


def finish_open(w: Worker, index: int, entry: InvokeStart) -> dict[str, Any]:
    """Re-run the cut-off invocation: recorded calls from the oplog, then live."""
    info: dict[str, Any] = {"function": entry.function, "index": index,
                            "params": list(entry.params)}
    if w.midcall is not None:
        w.midcall.invocation = index
    try:
        results = invocation.run(w, entry.function, entry.params, w.limits_of(entry))
    except Interrupted:
        raise  # recorded as abandoned by _run; stop here, the next command recovers
    except InvocationFailed as e:
        info.update(ok=False, error=str(e), results=[])
        return info
    info.update(ok=True, results=results)
    return info
