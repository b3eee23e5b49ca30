"""A durable worker: one component instance whose life is its oplog.

The worker holds what a worker is (its metadata, instance, journal, limits) and the
life of its instance; the three things it does live beside it: invocation.py (run
an invocation, record its outcome), worker_recovery.py (rebuild the instance from
the newest snapshot plus the tail, as the planner in recovery.py says) and
worker_snapshots.py (dirty tracking and capture). What it needs of the runtime is
the narrow WorkerServices port below, not the whole Runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from golemish.oplog import Create, Entry, InvokeStart, Manifest, Snapshot, TypedValue

from . import invocation, worker_recovery, worker_snapshots
from .component_files import component_wasi
from .errors import DivergenceError, NotFoundError, WorkerFailedError
from .history import History
from .host.api import GolemishHost, Services
from .host.wasi import WasiHost
from .invocation import InvocationResult
from .journal import Journal, OutputFn
from .snapshot.asyncify import is_stackful
from .snapshot.capture import Layout, MemoryImage
from .snapshot.policy import PolicyState, SnapshotPolicy
from .snapshot.stackful import Stackful
from .worker_recovery import RecoveryReport

if TYPE_CHECKING:
    from golemish.oplog import Store

    from .bases import Bases
    from .clock import Clock
    from .components import ModuleCache
    from .crash import CrashPoints
    from .engine import Engine, FuncSig, Instance
    from .executor import RuntimeConfig
    from .observe import Observer

__all__ = ["InvocationResult", "RecoveryReport", "Worker", "WorkerServices"]


class WorkerServices(Services, Protocol):
    """What a worker needs of its runtime (the Runtime is one).

    The store, the engine and its compiled modules, the components' fresh-instance
    bases, the settings, the source of time, the crash points and the observer, plus
    what the host API needs (Services: the allow-list, promises, calls to other workers).
    """

    store: Store
    engine: Engine
    modules: ModuleCache
    bases: Bases
    config: RuntimeConfig
    clock: Clock
    crash: CrashPoints
    #: Told of recoveries and snapshots (the server's metrics; runtime/observe.py).
    observer: Observer
    #: Told ``(worker_id, until_ns)`` when a worker suspends in a durable sleep.
    sleep_listeners: list[Callable[[str, int], None]]


class Worker:
    """One worker. Not thread-safe: the Runtime serialises calls per worker."""

    def __init__(self, runtime: WorkerServices, meta: dict[str, Any], output: OutputFn | None) -> None:
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
        #: When ``last_recovery`` finished (durable clock, ns), for the web console.
        self.last_recovery_ns = 0
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
    def _instantiate(self, create: Create, *, initialize: bool = True,
                     fresh: Callable[[Instance], None] | None = None) -> Instance:
        """A new instance; ``fresh(inst)`` runs before anything in it has (bases)."""
        python = self.component.get("kind") == "python"
        if python:
            from .python import worker as pyw
            host, pyhost = pyw.hosts(self.journal, create, self.rt.clock,
                                     self.component.get("stdlib"))
        elif self.component.get("files"):
            host = component_wasi(self.rt.store, self.component, self.journal, create,
                                  self.rt.clock)
        else:
            host = WasiHost(self.journal, create.args, create.env, self.rt.clock)
        #: The WASI host (a FileWasi when the worker has a filesystem: snapshots carry it).
        self.wasi: WasiHost = host
        self.host_api = GolemishHost(self.id, self.journal, self.rt, self.rt.clock)
        funcs = host.functions() + self.host_api.functions()
        if python:
            funcs = pyhost.functions() + funcs
        if self.midcall is not None:
            funcs = self.midcall.wrap(funcs)
        inst = self.rt.engine.instantiate(self.module, funcs,
                                          memory_limit=self.created_limits[0])
        if fresh is not None:
            try:
                fresh(inst)
            except BaseException:
                inst.close()
                raise
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

    def _set_meta(self, *, commit: bool = False, **changes: Any) -> None:
        """Change the metadata; ``commit`` writes it with the oplog's waiting entries."""
        self.meta = {k: v for k, v in {**self.meta, **changes}.items() if v is not None}
        if commit and self.journal.recording:
            self.journal.commit([self.rt.store.worker_op(self.meta)])
        else:
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
        self.instance = self._instantiate(create, fresh=self._track_fresh)
        self._track(None)

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

    # -- recovery (worker_recovery.py) -------------------------------------------
    def ensure_ready(self) -> RecoveryReport | None:
        """Make the instance live, recovering it from the oplog if needed."""
        return worker_recovery.ensure_ready(self)

    def recover(self) -> RecoveryReport:
        return worker_recovery.recover(self)

    def _restore_latest(self, create: Create, report: RecoveryReport) -> Manifest | None:
        """Restore the newest snapshot that verifies (a pure replay has none)."""
        return worker_recovery.restore_latest(self, create, report)

    # -- invocation (invocation.py) ---------------------------------------------
    def invoke(self, function: str, params: Sequence[TypedValue],
               idempotency_key: str | None = None) -> InvocationResult:
        return invocation.invoke(self, function, params, idempotency_key)

    def recorded_result(self, index: int, function: str, key: str,
                        params: Sequence[TypedValue] = ()) -> InvocationResult:
        return invocation.recorded_result(self, index, function, key, params)

    # -- snapshots (worker_snapshots.py) ------------------------------------------
    def snapshot(self, *, full: bool = False, midcall: list[Any] | None = None
                 ) -> Snapshot | None:
        return worker_snapshots.snapshot(self, full=full, midcall=midcall)

    def maybe_snapshot(self) -> Snapshot | None:
        return worker_snapshots.maybe_snapshot(self)

    def midcall_due(self, st: Stackful) -> bool:
        return worker_snapshots.midcall_due(self, st)

    def snapshot_midcall(self, invocation: int, tail_from: int) -> Snapshot | None:
        return worker_snapshots.snapshot_midcall(self, invocation, tail_from)

    def _track(self, base: Manifest | None) -> None:
        """Start dirty tracking of the live instance (a pure replay tracks nothing)."""
        worker_snapshots.track(self, base)

    def _track_fresh(self, inst: Instance) -> None:
        """Start dirty tracking on a fresh instance, relative to its component's base."""
        worker_snapshots.track_fresh(self, inst)

    def status(self, history: History | None = None) -> str:
        """idle, interrupted (an invocation left open), failed or suspended;
        ``history``: the whole oplog's, if the caller has read it already."""
        if self.meta.get("status") in ("failed", "suspended"):
            return str(self.meta["status"])
        plan = worker_recovery.plan_tail(self, 0, history=history)
        return "interrupted" if plan.open_start is not None else "idle"

    def entries(self, start: int = 1, end: int | None = None) -> list[tuple[int, Entry]]:
        return list(self.oplog.read(start, end))
