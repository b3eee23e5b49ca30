"""A durable worker: one component instance whose life is its oplog.

Live path of an invocation: record InvokeStart, run the export with the journal
live, record InvokeEnd (or InvokeFailed, after which the instance is thrown
away, DESIGN.md invariant 5). Recovery rebuilds the instance by replaying the
oplog as planned by :mod:`recovery`, and finishes an invocation that a crash
cut off.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from golemish.oplog import (
    codec,
    CorruptionError, Create, Entry, GolemishError, InvokeEnd, InvokeFailed, InvokeStart,
    Manifest, Snapshot, TypedValue,
)

from .errors import (
    ArgumentError, DivergenceError, Interrupted, InvocationFailed, NotFoundError, Suspended,
    WorkerFailedError, WorkerSuspendedError,
)
from .asyncify import is_stackful
from .host_api import GolemishHost
from .stackful import Stackful
from .journal import Cursor, Journal, OutputFn, describe
from .policy import PolicyState, SnapshotPolicy
from .history import read_history
from .recovery import (
    plan_recovery, recovery_base, snapshot_candidates, usable_snapshots, void_ranges,
)
from .versions_manual import manual_base, start_from_state
from .snapshots import Layout, MemoryImage, SnapshotError, restore
from . import wave
from .values import format_results, format_value, same_values, typed
from .wave_json import to_json
from .wasi import WasiHost

if TYPE_CHECKING:
    from .engine import FuncSig, Instance
    from .executor import Runtime


@dataclass
class RecoveryReport:
    """What a recovery did, for the CLI and benchmarks."""

    mode: str = "replay"
    #: Oplog index of the snapshot restored (0: full replay from Create).
    snapshot_index: int = 0
    restore_seconds: float = 0.0
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


@dataclass
class InvocationResult:
    function: str
    results: list[TypedValue]
    index: int  # oplog index of the InvokeStart
    seconds: float
    recovery: RecoveryReport | None = field(default=None)
    #: True when an idempotency key matched: the recorded result, nothing ran.
    deduplicated: bool = False
    #: The result as JSON, for functions of a WIT interface.
    json: Any = None


class Worker:
    """One worker. Not thread-safe: the Runtime serialises calls per worker."""

    def __init__(self, runtime: Runtime, meta: dict[str, Any], output: OutputFn | None) -> None:
        self.rt = runtime
        self.meta = meta
        self.id: str = meta["id"]
        self.oplog = runtime.store.oplog(self.id)
        self.journal = Journal(self.id, self.oplog, runtime.crash, output,
                               runtime.store.append_invocation)
        self.journal.recording = self.durable = meta.get("durable", True)
        self.component = runtime.store.get_component(meta["component"], meta["version"])
        if self.component is None:
            raise NotFoundError(f"worker {self.id}: component {meta['component']} "
                                f"v{meta['version']} is gone")
        self.module = runtime.modules.load(self.component)
        self.signatures: dict[str, FuncSig] = runtime.modules.signatures(self.component)
        self.iface = runtime.modules.interface(self.component)
        #: The JSON form of the last typed result (WIT components), for --json.
        self.last_json: Any = None
        self.layout = Layout.of(e[0] for e in runtime.engine.exports(self.module))
        self.instance: Instance | None = None
        self.image: MemoryImage | None = None
        self.policy = SnapshotPolicy.parse(meta["snapshot_policy"]) \
            if meta.get("snapshot_policy") else runtime.config.snapshot_policy
        self.policy_state = PolicyState(self.policy)
        self.last_recovery: RecoveryReport | None = None
        #: Mid-call snapshots, for components transformed with asyncify.
        self.midcall: Stackful | None = Stackful(self) if is_stackful(
            e[0] for e in runtime.engine.exports(self.module)) else None
        #: Rebuild from Create, ignoring snapshots (an auto update's trial replay).
        self.full_replay = False
        #: The limits the worker was created with (initialisation runs under them) and
        #: those in force now; an invocation under other ones records them (set_limits).
        self.created_limits: tuple[int, float] = (
            meta.get("memory_limit", runtime.config.memory_limit),
            meta.get("time_limit", runtime.config.time_limit))
        self.memory_limit, self.time_limit = self.created_limits
        if meta.get("limits"):
            self.memory_limit, self.time_limit = int(meta["limits"][0]), float(meta["limits"][1])

    # -- instance lifecycle ---------------------------------------------------
    def _instantiate(self, create: Create, *, initialize: bool = True) -> Instance:
        python = self.component.get("kind") == "python"
        if python:
            from .python import worker as pyw
            host, pyhost = pyw.hosts(self.journal, create, self.rt.clock,
                                     self.component.get("stdlib"))
        else:
            host = WasiHost(self.journal, create.args, create.env, self.rt.clock)
        self.host_api = GolemishHost(self.id, self.journal, self.rt, self.rt.clock)
        funcs = host.functions() + self.host_api.functions()
        if python:
            funcs = pyhost.functions() + funcs
        if self.midcall is not None:
            funcs = self.midcall.wrap(funcs)
        inst = self.rt.engine.instantiate(self.module, funcs,
                                          memory_limit=self.created_limits[0])
        host.bind(inst)
        self.host_api.bind(inst)
        if python:
            pyhost.golemish = self.host_api
            pyw.attach(inst, pyhost, host, self.component, self.created_limits[1], initialize,
                       self.rt.store)
        if initialize:
            if inst.has_export("_initialize"):
                inst.call("_initialize", [], time_limit=self.created_limits[1])
            if self.midcall is not None:
                self.midcall.attach(inst)  # the asyncify buffer, at the same point every time
        return inst

    def _host_blob(self, midcall: list[Any] | None = None) -> bytes:
        """Host-side state a snapshot carries: retry policy, asyncify buffer, mid-call."""
        stack = self.midcall.state() if self.midcall is not None else None
        return codec.encode([self.host_api.state(), stack, midcall])

    @staticmethod
    def _host_parts(manifest: Manifest) -> tuple[bytes, list[int] | None, list[Any] | None]:
        """(retry policy blob, asyncify buffer, mid-call position) of a snapshot.

        A blob of another shape (an older format) makes the snapshot unusable rather
        than the recovery fail: an older snapshot or replay is used instead.
        """
        if not manifest.host:
            return b"", None, None
        try:
            retry, stack, midcall = codec.decode(manifest.host)
            ok = (isinstance(retry, bytes) and (stack is None or len(stack) == 2)
                  and (midcall is None or (len(midcall) in (3, 4)
                                           and isinstance(midcall[0], int))))
        except (codec.DecodeError, TypeError, ValueError):
            ok = False
        if not ok:
            raise SnapshotError("its host state is in a format this version does not read")
        return retry, stack, midcall

    def _track(self, base: Manifest | None) -> None:
        """Start dirty tracking of the live instance, relative to ``base``."""
        assert self.instance is not None
        if self.durable and not self.meta.get("snapshots_disabled"):
            self.image = MemoryImage(self.instance, self.layout, self.rt.config.snapshots, base)

    def discard(self) -> None:
        if self.image is not None:
            self.image.close()
            self.image = None
        if self.instance is not None:
            self.instance.close()
            self.instance = None
        self.journal.go_live()

    def _fail(self, err: DivergenceError) -> None:
        """Mark the worker failed; nothing recorded is touched (invariant 2)."""
        self._set_meta(status="failed", error=str(err))

    def _set_meta(self, **changes: Any) -> None:
        self.meta = {k: v for k, v in {**self.meta, **changes}.items() if v is not None}
        self.rt.store.put_worker(self.meta)

    def _due(self) -> bool:
        """Can the suspended invocation make progress now?"""
        susp = self.meta.get("suspended") or {}
        if "promise" in susp:
            state = self.rt.promise_state(susp["promise"])
            return state is None or state[0] == "completed"
        return (susp.get("until_ns", 0) - self.rt.clock.time_ns()) / 1e9 \
            <= self.rt.suspend_after_s()

    def check_usable(self) -> None:
        if self.meta.get("status") == "failed":
            raise WorkerFailedError(f"worker {self.id} is failed: {self.meta.get('error')}; "
                                    f"inspect it with `golemish worker oplog {self.id}` or "
                                    f"delete it")

    def create(self, create: Create) -> None:
        """First start: the Create entry is already stored; run initialisation live."""
        self.journal.go_live()
        self.instance = self._instantiate(create)
        self._track(None)

    # -- recovery ------------------------------------------------------------
    def ensure_ready(self) -> RecoveryReport | None:
        """Make the instance live, recovering it from the oplog if needed."""
        self.check_usable()
        if self.instance is not None:
            return None
        if self.meta.get("suspended") and not self._due():
            raise WorkerSuspendedError(self.id, **self.meta["suspended"])
        try:
            report = self.recover()
        except DivergenceError as e:
            self.discard()
            self._fail(e)
            raise
        except BaseException as e:
            self.discard()
            if isinstance(e, Interrupted) and e.function is None:
                e.recovering = self.id  # a signal during replay: nothing was recorded
            raise
        self.maybe_snapshot()
        return report

    def _restore_latest(self, create: Create, report: RecoveryReport) -> Manifest | None:
        """Restore the newest snapshot that verifies; None when there is none."""
        if self.rt.config.recovery == "replay" or self.full_replay:
            return None
        snaps = self.rt.store.snapshots
        candidates = snapshot_candidates(snaps.indexes(self.id), self.oplog.last_index)
        if candidates:  # a revert voids the snapshots between its target and itself
            h = read_history(self.oplog, min(candidates) + 1)
            floor = recovery_base(h.updates, void_ranges(h.rewinds, h.reverts))
            candidates = usable_snapshots(candidates, h.reverts, floor)
        for index in candidates:
            t0 = time.perf_counter()
            inst = None
            try:
                manifest = snaps.manifest(self.id, index)
                if manifest.component_hash != self.component["hash"]:
                    raise SnapshotError("it was taken of another component version")
                retry, stack, midcall = self._host_parts(manifest)
                if midcall is not None:
                    self._plan_midcall(midcall)  # usable only if that invocation did not fail
                inst = self._instantiate(create, initialize=False)
                # The memory may have grown under a later, higher cap; each invocation
                # sets its own cap again before it runs.
                inst.set_memory_limit(max(inst.memory_limit, manifest.memory_size))
                restore(inst, manifest, self.layout,
                        lambda wanted: snaps.stream_pages(self.id, wanted))
                self.host_api.restore_state(retry)
                if self.midcall is not None and stack is not None:
                    self.midcall.attach(inst, ptr=stack[0], size=stack[1])
            except (CorruptionError, SnapshotError, InvocationFailed) as e:
                if inst is not None:
                    inst.close()
                if isinstance(e, Interrupted):
                    raise
                report.fallbacks.append(f"index {index}: {e}")
                continue
            self.instance = inst
            report.mode, report.snapshot_index = "snapshot", index
            report.restore_seconds = time.perf_counter() - t0
            return manifest
        return None

    def _plan_tail(self, start: int, open_at: int | None = None) -> Any:
        """Plan the replay of the entries after ``start`` (Rewind targets read here)."""
        h = read_history(self.oplog, start + 1)
        return plan_recovery(self.id, h.kinds, start, h.rewinds, open_at=open_at,
                             reverts=h.reverts)

    def _plan_midcall(self, midcall: list[Any]) -> Any:
        invocation, tail_from = midcall[0], midcall[1]
        plan = self._plan_tail(tail_from - 1, open_at=invocation)
        if invocation in plan.skip:
            raise SnapshotError("it was taken inside an invocation that later failed")
        return plan

    def recover(self) -> RecoveryReport:
        t0 = time.perf_counter()
        report = RecoveryReport()
        create = self.oplog.get(1)
        if not isinstance(create, Create):
            raise CorruptionError("oplog", self.id, "the first entry is not a create entry",
                                  index=1)
        self.journal.replayed_calls = 0
        base = self._restore_latest(create, report)
        midcall = self._host_parts(base)[2] if base is not None else None
        # Without a snapshot, a manual update's saved state is where replay can start.
        loaded = manual_base(self) if base is None else None
        start = midcall[1] - 1 if midcall is not None else report.snapshot_index
        if loaded is not None:
            start = report.snapshot_index = loaded[0]
        if midcall is not None:
            plan = self._plan_midcall(midcall)
        else:
            plan = self._plan_tail(start)
        report.entries = plan.last_index - start
        if loaded is not None:  # sealed, as at the update: before the replay cursor
            start_from_state(self, create, loaded[1])
            report.mode = "manual update"
        cursor = Cursor(self.oplog.read(start + 1), plan.void, plan.rewind_to)
        self.journal.rewind_to = plan.rewind_to
        self.journal.replay_from(cursor)
        if base is None and loaded is None:
            cursor.next()  # the Create entry
            self.instance = self._instantiate(create)
        self._track(base)
        t_tail = time.perf_counter()
        if midcall is not None:
            # Continue inside the invocation the snapshot interrupted: rewind into it.
            assert self.midcall is not None
            index, entry = midcall[0], self.oplog.get(midcall[0])
            assert isinstance(entry, InvokeStart)
            self.midcall._saved_globals = {n: (t, b) for n, t, b in midcall[2]}
            self.midcall.resume_args = list(midcall[3]) if len(midcall) > 3 else None
            self.midcall.resume()
            report.mode = "snapshot (mid-call)"
            if index == plan.open_start:
                report.finished = self._finish_open(index, entry)
                cursor = Cursor(iter(()))  # the oplog ends inside that invocation
            else:
                self._replay_one(index, entry, cursor)
                report.replayed_invocations += 1
        while (item := cursor.peek()) is not None:
            index, entry = item
            if isinstance(entry, Snapshot):
                cursor.next()
                continue
            if not isinstance(entry, InvokeStart):
                # Initialisation or the previous invocation made fewer calls than recorded.
                raise DivergenceError(self.id, index, describe(entry),
                                      "nothing more (the guest had returned)")
            cursor.next()
            if index in plan.skip:
                cursor.skip_through(plan.skip[index])
                report.skipped_failed += 1
                continue
            self.journal.replay_from(cursor)
            if index == plan.open_start:
                report.finished = self._finish_open(index, entry)
                break
            self._replay_one(index, entry, cursor)
            report.replayed_invocations += 1
        self.journal.go_live()
        report.replayed_host_calls = self.journal.replayed_calls
        report.seconds = time.perf_counter() - t0
        if report.finished is not None and not report.finished["ok"]:
            # The finished invocation failed and took the instance with it: rebuild.
            # The plan now skips it, so this cannot loop.
            again = self.recover()
            again.finished = report.finished
            again.seconds += report.seconds
            return again
        # The replayed tail is work a crash now would replay again: the policy counts it.
        self.policy_state = PolicyState(self.policy, tail_s=time.perf_counter() - t_tail,
                                        tail_invocations=report.replayed_invocations,
                                        snapshot_costs=self._snapshot_costs())
        self.last_recovery = report
        if report.finished is not None or report.fallbacks:
            # Worth remembering for `worker show`: a crash was repaired, or snapshots failed.
            self._set_meta(last_recovery=report.describe(), status="idle", suspended=None)
        return report

    def _snapshot_costs(self) -> list[float]:
        """Measured costs of the kept snapshots, for the policy's estimate."""
        costs = []
        for index in self.rt.store.snapshots.indexes(self.id):
            if index <= self.oplog.last_index:
                entry = self.oplog.get(index)
                if isinstance(entry, Snapshot):
                    costs.append(entry.duration_ns / 1e9)
        return costs

    def limits_of(self, entry: InvokeStart) -> tuple[int, float]:
        """(memory cap, time limit) an invocation ran under, as its InvokeStart says."""
        return (entry.memory_limit or self.created_limits[0],
                entry.time_limit or self.created_limits[1])

    def set_limits(self, memory_limit: int | None = None, time_limit: float | None = None
                   ) -> None:
        """Change the limits for this worker's next invocations (each records them)."""
        mem = self.memory_limit if memory_limit is None else int(memory_limit)
        tl = self.time_limit if time_limit is None else float(time_limit)
        if (mem, tl) != (self.memory_limit, self.time_limit):
            self.memory_limit, self.time_limit = mem, tl
            self._set_meta(limits=[mem, tl] if (mem, tl) != self.created_limits else [])

    def _replay_one(self, index: int, entry: InvokeStart, cursor: Cursor) -> None:
        if self.midcall is not None:
            self.midcall.invocation = index
        memory, time_limit = self.limits_of(entry)
        assert self.instance is not None
        self.instance.set_memory_limit(memory)
        try:
            # Replay answers host calls from the oplog, so a completed invocation gets
            # slack over its limit: it must not fail here for a slower machine.
            got = self._execute(entry.function, entry.params, time_limit * 2 + 1)
        except Interrupted:
            raise  # a signal, not a divergence: nothing is recorded
        except InvocationFailed as e:
            end = cursor.peek()
            raise DivergenceError(self.id, end[0] if end else index,
                                  describe(end[1]) if end else "a completed invocation",
                                  f"a failure ({e})") from None
        end = cursor.next()
        if end is None or not isinstance(end[1], InvokeEnd):
            raise DivergenceError(self.id, end[0] if end else index + 1,
                                  describe(end[1]) if end else "nothing",
                                  f"the end of the invocation with {format_results(got)}")
        if not same_values(end[1].results, got):
            raise DivergenceError(self.id, end[0],
                                  f"result {format_results(end[1].results)}",
                                  f"result {format_results(got)}")

    def _finish_open(self, index: int, entry: InvokeStart) -> dict[str, Any]:
        """Re-run the cut-off invocation: recorded calls from the oplog, then live."""
        info: dict[str, Any] = {"function": entry.function, "index": index,
                                "params": list(entry.params)}
        if self.midcall is not None:
            self.midcall.invocation = index
        try:
            results = self._run(entry.function, entry.params, self.limits_of(entry))
        except Interrupted:
            raise  # recorded as abandoned by _run; stop here, the next command recovers
        except InvocationFailed as e:
            info.update(ok=False, error=str(e), results=[])
            return info
        info.update(ok=True, results=results)
        return info

    # -- invocation ----------------------------------------------------------
    def _execute(self, function: str, params: Sequence[TypedValue],
                 limit: float) -> list[TypedValue]:
        """Call the export (through the Canonical ABI for a WIT function)."""
        inst = self.instance
        assert inst is not None
        func = self.iface.find(function) if self.iface is not None else None
        if func is not None:
            assert self.iface is not None
            if self.midcall is None or not self.durable:
                results, self.last_json = self.iface.run(inst, func, params, limit)
                return results
            return self._execute_typed_stackful(inst, func, params, limit)
        args = [v for _, v in params]
        if self.midcall is not None and self.durable:
            values = self.midcall.call(function, args, limit)
        else:
            values = inst.call(function, args, time_limit=limit)
        self.last_json = None
        return typed(self.signatures[function].results, values)

    def _execute_typed_stackful(self, inst: Instance, func: Any, params: Sequence[TypedValue],
                                limit: float) -> list[TypedValue]:
        """A WIT function of a stackful worker: its core export may unwind mid-call.

        The arguments are lowered into guest memory once; a mid-call snapshot records
        the core arguments, and a call resumed from one reuses them instead of lowering
        again (that would allocate in the guest a second time).
        """
        sf = self.midcall
        assert sf is not None and self.iface is not None
        lowered, sf.resume_args = sf.resume_args, None

        def lowered_now(args: list[int | float]) -> None:
            sf.core_args = args

        try:
            results, self.last_json = self.iface.run(
                inst, func, params, limit, lowered=lowered, on_lowered=lowered_now,
                call_export=lambda name, args: sf.call(name, args, limit))
        finally:
            sf.core_args = None
        return results

    def _run(self, function: str, params: Sequence[TypedValue],
             limits: tuple[int, float]) -> list[TypedValue]:
        """Run the body of an invocation whose InvokeStart is recorded; record its end."""
        t0 = time.perf_counter_ns()
        try:
            assert self.instance is not None
            self.instance.set_memory_limit(limits[0])
            results = self._execute(function, params, limits[1])
        except InvocationFailed as e:
            self.discard()
            self.journal.append(InvokeFailed(e.reason, str(e)))
            if isinstance(e, Interrupted):
                # Abandoned like `worker interrupt` does: the state is from before it.
                e.worker_id, e.function = self.id, function
            raise
        except Suspended as e:
            # The invocation stays open in the oplog; its state is rebuilt on resume.
            self.discard()
            self._set_meta(status="suspended", suspended=e.as_meta())
            raise
        except DivergenceError:
            raise
        except GolemishError:
            self.discard()
            raise
        except Exception as e:  # a host function bug must not leave the invocation open
            self.discard()
            failure = InvocationFailed(f"host error: {type(e).__name__}: {e}")
            self.journal.append(InvokeFailed("host-error", str(failure)))
            raise failure from e
        except BaseException:
            # KeyboardInterrupt without catch_signals: the instance may be half-way
            # through; like a crash, the open invocation is finished by recovery.
            self.discard()
            raise
        if self.journal.replaying:
            left = self.journal.pending()
            if left is not None:
                raise DivergenceError(self.id, left[0], describe(left[1]),
                                      "nothing more (the guest had returned)")
            # Every recorded call was consumed and the guest returned: the crash came
            # just before the end was recorded. Whatever follows is live.
            self.journal.go_live()
        self.journal.append(InvokeEnd(tuple(results), time.perf_counter_ns() - t0))
        self.rt.crash.hit("after-invocation")
        return results

    # -- snapshots -------------------------------------------------------------
    def midcall_due(self, st: Stackful) -> bool:
        """At a host call inside an invocation: is a mid-call snapshot due?"""
        if self.image is None:
            return False
        in_call = time.perf_counter() - max(st.invocation_t0, self.policy_state.last_perf)
        return self.policy_state.midcall_due(in_call, st.calls)

    def snapshot_midcall(self, invocation: int, tail_from: int) -> Snapshot | None:
        """A snapshot while the guest's stack is unwound into memory (see stackful)."""
        assert self.midcall is not None
        saved = [[n, t, b] for n, (t, b) in self.midcall._saved_globals.items()]
        position: list[Any] = [invocation, tail_from, saved]
        if self.midcall.core_args is not None:  # a typed call: its lowered arguments
            position.append(list(self.midcall.core_args))
        entry = self.snapshot(midcall=position)
        self.midcall.calls = 0
        return entry

    def snapshot(self, *, full: bool = False, midcall: list[Any] | None = None
                 ) -> Snapshot | None:
        """Capture memory and globals now (between invocations, or unwound mid-call).

        None if not possible. ``full`` captures every page as if there were no
        earlier snapshot.
        """
        self.ensure_ready()
        if self.image is None:
            return None
        t0 = time.perf_counter_ns()
        index = self.oplog.last_index + 1
        snaps = self.rt.store.snapshots
        try:
            manifest, new, changed = self.image.capture(
                index, self.component["hash"], lambda h: snaps.has_page(self.id, h), full=full,
                host=self._host_blob(midcall))
        except SnapshotError as e:
            self.image.close()
            self.image = None
            self.meta = dict(self.meta, snapshots_disabled=str(e))
            self.rt.store.put_worker(self.meta)
            return None
        page_ops, stored = snaps.page_ops(self.id, new)
        entry = Snapshot(manifest.memory_size, manifest.page_size, changed, stored,
                         self.image.tracker_name, time.perf_counter_ns() - t0)
        self.rt.crash.hit("mid-snapshot-write")
        self.rt.store.write_snapshot(self.oplog, entry, manifest, page_ops,
                                     self.rt.config.snapshots.keep,
                                     archive=self.rt.config.oplog_retention == "archive")
        self.rt.crash.hit("after-snapshot-write")
        self.image.committed(manifest)
        # The policy budgets the whole cost, write and pruning included (duration_ns
        # in the entry can only cover what happened before it was written).
        self.policy_state.snapshotted((time.perf_counter_ns() - t0) / 1e9)
        return entry

    def maybe_snapshot(self) -> Snapshot | None:
        if self.image is not None and self.policy_state.due():
            return self.snapshot()
        return None

    def recorded_result(self, index: int, function: str, key: str,
                        params: Sequence[TypedValue] = ()) -> InvocationResult:
        """The outcome of the invocation recorded at ``index`` (an idempotency key hit).

        Only the same call gets it: a key reused for another function or other
        arguments is refused, as payment APIs do, rather than answered with the
        result of a call that was not asked for.
        """
        start = self.oplog.get(index)
        if not isinstance(start, InvokeStart) or start.function != function \
                or not same_values(start.params, params):
            recorded = (f"{start.function}({', '.join(map(format_value, start.params))})"
                        if isinstance(start, InvokeStart) else f"oplog index {index}")
            raise ArgumentError(
                f"idempotency key {key!r} was already used for {recorded} on {self.id}, "
                f"not {function}({', '.join(map(format_value, params))}); use a new key")
        for _, entry in self.oplog.read(index + 1):
            if isinstance(entry, InvokeEnd):
                return InvocationResult(function, list(entry.results), index, 0.0,
                                        deduplicated=True,
                                        json=self._result_json(function, entry.results))
            if isinstance(entry, InvokeFailed):
                raise InvocationFailed(f"{entry.message} (recorded for idempotency key {key!r})")
            if isinstance(entry, InvokeStart):
                break
        susp = self.meta.get("suspended") or {}
        raise WorkerSuspendedError(self.id, **susp) if susp else \
            InvocationFailed(f"the invocation with idempotency key {key!r} has no outcome")

    def _result_json(self, function: str, results: Sequence[TypedValue]) -> Any:
        """The JSON form of a recorded WIT result, as a live call would give it."""
        func = self.iface.find(function) if self.iface is not None else None
        if func is None or func.result is None or len(results) != 1:
            return None
        return to_json(wave.parse(str(results[0][1]), func.result), func.result)

    def invoke(self, function: str, params: Sequence[TypedValue],
               idempotency_key: str | None = None) -> InvocationResult:
        t0 = time.perf_counter()
        recovery = self.ensure_ready()
        if idempotency_key is not None:
            seen = self.rt.store.idempotent_index(self.id, idempotency_key)
            if seen is not None:
                return self.recorded_result(seen, function, idempotency_key, params)
        limits = (self.memory_limit, self.time_limit)
        changed = (0, 0.0) if limits == self.created_limits else limits
        start = self.journal.append_invocation(
            InvokeStart(function, tuple(params), idempotency_key, self.rt.clock.time_ns(),
                        *changed),
            idempotency_key)
        self.rt.crash.hit("before-invocation")
        if self.midcall is not None:
            self.midcall.invocation = start
        t_run = time.perf_counter()
        try:
            results = self._run(function, params, limits)
        except DivergenceError as e:
            self.discard()
            self._fail(e)
            raise
        self.policy_state.invoked(time.perf_counter() - max(t_run, self.policy_state.last_perf))
        self.maybe_snapshot()
        if self.instance is not None:
            self.instance.memory_size()  # refreshes .size, which eviction reads unlocked
        return InvocationResult(function, results, start, time.perf_counter() - t0, recovery,
                                json=self.last_json)

    def status(self) -> str:
        if self.meta.get("status") in ("failed", "suspended"):
            return str(self.meta["status"])
        plan = self._plan_tail(0)
        return "interrupted" if plan.open_start is not None else "idle"

    def entries(self, start: int = 1, end: int | None = None) -> list[tuple[int, Entry]]:
        return list(self.oplog.read(start, end))
