"""The Runtime: one open store, an engine, and the workers running in this process.

A Runtime is an ordinary object (no globals): tests create and close as many
as they like. Invocations on one worker run one at a time; different workers
may run in parallel threads (wasmtime releases the GIL while wasm runs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from golemish.oplog import Create, Store, TypedValue, open_store
from golemish.oplog.store import store_path

from . import components
from .bases import Bases
from .calls import WorkerCalls
from .clock import Clock
from .components import DeployResult, ModuleCache
from .config import DEFAULT_HOME, RuntimeConfig
from .crash import CrashPoints
from .describe import Describe
from .engine import Engine, FuncSig
from .errors import (
    ClosedError, ComponentError, ExistsError, GolemishError, NotFoundError,
    PromiseError, Suspended,
)
from .host import http
from .journal import Deferred, OutputFn
from .locks import WorkerLocks
from .names import parse_worker_id
from .observe import NULL_OBSERVER, Observer
from .snapshot.policy import SnapshotPolicy
from .typed.values import parse_args
from .worker import InvocationResult, RecoveryReport, Worker
from .worker_recovery import plan_log

class Runtime(WorkerCalls, Describe):
    """Deploys components and runs durable workers on one store."""

    def __init__(self, config: RuntimeConfig | None = None) -> None:
        self.config = config or RuntimeConfig()
        self.crash = self.config.crash or CrashPoints.from_env()
        self.clock: Clock = self.config.clock
        #: Told of invocations, recoveries, snapshots and commits (server metrics).
        self.observer: Observer = self.config.observer or NULL_OBSERVER
        #: Called as ``fn(worker_id, until_ns)`` once a worker's suspension in a durable
        #: sleep is committed (the server's waker keeps a timer heap of them).
        self.sleep_listeners: list[Callable[[str, int], None]] = []
        self.cluster: Any = None
        self.store: Store
        if self.config.cluster is not None:
            from .cluster import open_cluster_store
            self.store, fencing = open_cluster_store(self.config.home, create=self.config.create,
                                                     observer=self.config.observer)
        else:
            self.store = open_store(self.config.home, sync=self.config.sync,
                                    create=self.config.create,
                                    readonly=self.config.readonly,
                                    group=self.config.group_commit,
                                    observer=self.config.observer)
        self.engine = Engine()
        #: Fresh-instance images per component (shared page store, restore of diffs).
        self.bases = Bases(self.store)
        if self.config.catch_signals:
            self.engine.catch_signals()
        path = store_path(self.config.home)
        cache = Path(path) / "cache" if path is not None else None
        if self.config.cache_dir:
            cache = Path(self.config.cache_dir)
        elif self.config.home.startswith(("postgres://", "postgresql://")):
            cache = Path.home() / ".cache" / "golemish" / "compiled"
        self.modules = ModuleCache(self.store, self.engine, cache,
                                   readonly=self.config.readonly)
        #: Loaded workers; read and changed under ``_guard``, a worker used only by
        #: the thread holding its turn (``_turns``).
        self._workers: dict[str, Worker] = {}
        #: When each loaded worker's last use began (monotonic), for idle eviction.
        self._used: dict[str, float] = {}
        #: Workers dropped from memory by ``evict`` since start (for metrics).
        self.evicted_total = 0
        self._turns: Any = WorkerLocks()
        if self.config.cluster is not None:
            from .cluster import Cluster, LeasedTurns
            self.cluster = Cluster(self, self.config.cluster, fencing)
            self._turns = LeasedTurns(self.cluster)
        self._guard = threading.Lock()
        self._promises = threading.Lock()  # read-check-write of a promise's state
        self._closed = False
        self._calls = threading.local()  # workers on this thread's call stack

    def close(self) -> None:
        """Wait for running invocations, then close the store. Safe from any thread and
        more than once; calls after it fail with ClosedError."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            ids = list(self._workers)
        # Each worker's turn: its invocation in flight finishes first. (An executor's
        # leases are not taken again for this: LeasedTurns.inner is the plain turns.)
        turns = getattr(self._turns, "inner", self._turns)
        for wid in ids:
            with turns.hold(wid):
                with self._guard:
                    w = self._workers.pop(wid, None)
                if w is not None:
                    w.discard()
        with self._guard:
            rest, self._workers = list(self._workers.values()), {}
        for w in rest:  # loaded while we closed; their callers hit ClosedError next
            w.discard()
        self.engine.close()
        self.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- components -----------------------------------------------------------
    def deploy(self, wasm: bytes, name: str, wit: str | None = None,
               wit_source: str | None = None, stackful: bool = False,
               http_allow: Sequence[str] = (),
               files: Sequence[tuple[str, bytes, bool]] = ()) -> DeployResult:
        """Deploy a new component version. ``http_allow`` entries are added to that
        version's HTTP allow-list (also when the bytes were deployed before)."""
        rules = http.normalize_rules(http_allow)  # refuse a bad entry before deploying
        components.check_size(len(wasm), self.config.max_component_bytes)
        res = components.deploy(self.store, self.engine, bytes(wasm), name, wit, wit_source,
                                stackful, files)
        if rules:
            meta = self.configure_component(name, res.meta["version"], allow_http=rules)
            res = DeployResult(meta, res.created)
        return res

    def deploy_python(self, path: Any, name: str | None = None,
                      progress: Any = None, entry: str | None = None,
                      http_allow: Sequence[str] = ()) -> DeployResult:
        """Deploy a Python module (a .py file, or a package directory with an entry
        module) as a component of kind python."""
        from .python.component import deploy as deploy_py
        rules = http.normalize_rules(http_allow)
        res = deploy_py(self.store, self.engine, Path(path), name, progress, entry)
        if rules:
            res = DeployResult(self.configure_component(res.meta["name"], res.meta["version"],
                                                        allow_http=rules), res.created)
        return res

    def configure_component(self, name: str, version: int | None = None, *,
                            allow_http: Sequence[str] = (),
                            deny_http: Sequence[str] = ()) -> dict[str, Any]:
        """Change a component version's HTTP allow-list (the latest version by default).

        Its workers see the change at their next request. Returns the new metadata.
        """
        meta = self.component(name, version)
        meta["http_allow"] = _edit_rules(meta.get("http_allow", []), allow_http, deny_http)
        self.store.put_component_meta(meta)
        return meta

    def component(self, name: str, version: int | None = None) -> dict[str, Any]:
        return components.resolve(self.store, name, version)

    def list_components(self) -> list[dict[str, Any]]:
        return self.store.list_components()

    # -- workers --------------------------------------------------------------
    def _cached(self, worker_id: str) -> Worker | None:
        with self._guard:
            if self._closed:
                raise ClosedError("the runtime is closed (shutting down)")
            return self._workers.get(worker_id)

    def _lock(self, worker_id: str) -> Any:
        """The worker's turn (a context manager), for modules working on workers."""
        return self._turns.hold(worker_id)

    def _put(self, worker_id: str, w: Worker) -> None:
        with self._guard:
            self._workers[worker_id] = w
            self._used[worker_id] = time.monotonic()

    def _drop(self, worker_id: str) -> Worker | None:
        with self._guard:
            self._used.pop(worker_id, None)
            return self._workers.pop(worker_id, None)

    # -- residency (idle eviction, runtime/eviction.py) ------------------------------
    def residents(self) -> list[Any]:
        """What eviction decides on: each loaded worker's idle time, memory, busyness."""
        from .eviction import Resident
        now = time.monotonic()
        with self._guard:
            loaded = [(wid, w, self._used.get(wid, now)) for wid, w in self._workers.items()]
        return [Resident(wid, now - used,
                         w.instance.size if w.instance is not None else 0,
                         busy=self._turns.busy(wid), evictable=w.durable)
                for wid, w, used in loaded]

    def evict(self, worker_id: str) -> bool:
        """Snapshot a loaded, durable worker (unless its newest snapshot is already at
        the end of its oplog) and drop it from memory; the next use restores it.

        Under the worker's turn, so never in the middle of an invocation. False when
        it was not loaded (or is ephemeral: dropping it would lose its state).
        """
        with self._turns.hold(worker_id):
            w = self._cached(worker_id)
            if w is None or not w.durable:
                return False
            try:
                if w.instance is not None and w.image is not None:
                    latest = self.store.snapshots.indexes(worker_id)[:1]
                    if latest != [w.oplog.last_index]:
                        w.snapshot()
            except GolemishError:
                pass  # no snapshot: the next use replays the tail from an older one
            finally:
                self._drop(worker_id)
                w.discard()
            with self._guard:
                self.evicted_total += 1
            return True

    def _get(self, worker_id: str, output: OutputFn | None, *, create: bool,
             env: Sequence[tuple[str, str]] = (), args: Sequence[str] = (),
             durable: bool = True, memory_limit: int | None = None,
             time_limit: float | None = None) -> Worker:
        """The loaded worker; the caller holds its turn."""
        w = self._cached(worker_id)
        if w is not None:
            w.journal.output = output
            with self._guard:
                self._used[worker_id] = time.monotonic()
            return w
        comp, _ = parse_worker_id(worker_id)
        meta = self.store.get_worker(worker_id)
        if meta is None:
            if not create:
                raise NotFoundError(f"no worker {worker_id}")
            cmeta = self.component(comp)
            # Limits are fixed for the worker's life: a guest can observe its memory cap
            # (malloc returning NULL), so replay must run under the same one.
            meta = {"id": worker_id, "component": comp, "version": cmeta["version"],
                    "created_at": self.clock.time_ns() / 1e9, "status": "idle",
                    "memory_limit": memory_limit or self.config.memory_limit,
                    "time_limit": time_limit or self.config.time_limit, "durable": durable}
            entry = Create(comp, cmeta["version"], cmeta["hash"], tuple(args),
                           tuple((k, v) for k, v in env), self.clock.time_ns())
            self.crash.hit("before-oplog-append")
            self.store.create_worker(meta, entry)
            self.crash.hit("after-oplog-append")
            w = Worker(self, meta, output)
            t0 = time.perf_counter()
            try:
                w.create(entry)
                self.observer.recovered("fresh", time.perf_counter() - t0)
            except BaseException:
                w.discard()
                self.store.delete_worker(worker_id)
                raise
        else:
            w = Worker(self, meta, output)
        with self._guard:
            self._workers[worker_id] = w
            self._used[worker_id] = time.monotonic()
        return w

    def _component_for(self, worker_id: str) -> dict[str, Any]:
        """The worker's component version, or the latest for a worker not created yet."""
        meta = self.store.get_worker(worker_id)
        comp, _ = parse_worker_id(worker_id)
        return (self.component(meta["component"], meta["version"]) if meta
                else self.component(comp))

    def prepare(self, worker_id: str, function: str,
                args: Sequence[str]) -> tuple[str, list[TypedValue]]:
        """CLI-style arguments -> (function, recorded parameters).

        With a WIT interface: WIT names and WAVE values, either as FUNCTION ARG… or as
        one call expression ``name(arg, …)``. Otherwise: core exports and numbers.
        """
        iface = self.modules.interface(self._component_for(worker_id))
        if iface is not None:
            if "(" in function and not args:
                func, params = iface.parse_call(function)
                return func.name, params
            func = iface.find(function)
            if func is not None:
                return func.name, iface.parse_args(func, args)
        elif "(" in function and function.rstrip().endswith(")") and not args:
            # ``add(5)`` for a core export (numbers only, so a comma split is exact): how
            # a worker calls another with a WAVE call, whatever the callee's kind.
            name, _, inner = function.rstrip()[:-1].partition("(")
            function, args = name.strip(), [a.strip() for a in inner.split(",") if a.strip()]
        return function, parse_args(function, self.signature(worker_id, function), args)

    def signature(self, worker_id: str, function: str) -> FuncSig:
        """The export's signature, from the worker's version or the latest component."""
        cmeta = self._component_for(worker_id)
        sigs = self.modules.signatures(cmeta)
        if function not in sigs or function.startswith("_initialize"):
            callable_ = sorted(n for n in sigs if not n.startswith("_initialize"))
            raise NotFoundError(f"component {cmeta['name']} v{cmeta['version']} exports no "
                                f"function {function!r}; it has: {', '.join(callable_) or 'none'}")
        return sigs[function]

    def invoke(self, worker_id: str, function: str, args: Sequence[str] = (), *,
               idempotency_key: str | None = None, output: OutputFn | None = None,
               env: Sequence[tuple[str, str]] = (), durable: bool = True,
               memory_limit: int | None = None, time_limit: float | None = None,
               ) -> InvocationResult:
        """Invoke an export with CLI-style string arguments, creating the worker if new.

        ``env`` and ``durable`` apply when this call creates the worker. An ephemeral
        (``durable=False``) worker records nothing: it is fast, and it forgets its state
        when the process ends. ``memory_limit`` (bytes) and ``time_limit`` (seconds)
        change an existing worker's limits from this invocation on; the invocation
        records them, so replay runs it under the same ones.
        """
        self._cached(worker_id)  # ClosedError before touching the store
        function, params = self.prepare(worker_id, function, args)
        with self._turns.hold(worker_id):
            w = self._get(worker_id, output, create=True, env=env, durable=durable)
            w.set_limits(memory_limit, time_limit)
            t0, outcome = time.perf_counter(), "error"
            try:
                res = w.invoke(function, params, idempotency_key)
                outcome = "ok"
                return res
            except Suspended:
                outcome = "suspended"
                raise
            finally:
                self.observer.invoked(w.meta["component"], outcome, time.perf_counter() - t0)

    def create_worker(self, worker_id: str, *, args: Sequence[str] = (),
                      env: Sequence[tuple[str, str]] = (), durable: bool = True,
                      memory_limit: int | None = None,
                      time_limit: float | None = None) -> None:
        """Create a worker of its component's latest version without invoking it; its
        WASI arguments, environment and limits are fixed in its Create entry."""
        comp, _ = parse_worker_id(worker_id)
        self._cached(worker_id)
        self.component(comp)  # NotFoundError before taking the turn
        with self._turns.hold(worker_id):
            if self.store.get_worker(worker_id) is not None:
                raise ExistsError(f"worker {worker_id} already exists")
            self._get(worker_id, None, create=True, env=env, args=args, durable=durable,
                      memory_limit=memory_limit, time_limit=time_limit)

    def resume(self, worker_id: str, output: OutputFn | None = None) -> RecoveryReport | None:
        """Load a worker, finishing an interrupted invocation if there is one."""
        with self._turns.hold(worker_id):
            w = self._get(worker_id, output, create=False)
            return w.ensure_ready()

    def snapshot(self, worker_id: str, *, full: bool = False) -> Any:
        """Take a snapshot of a worker now; returns the Snapshot entry (None if impossible)."""
        with self._turns.hold(worker_id):
            w = self._get(worker_id, None, create=False)
            return w.snapshot(full=full)

    @contextmanager
    def using(self, worker_id: str) -> Iterator[Worker]:
        """The loaded worker object (recovered if needed), held for the block: no
        invocation, eviction or delete of it runs on another thread meanwhile."""
        with self._turns.hold(worker_id):
            w = self._get(worker_id, None, create=False)
            w.ensure_ready()
            yield w

    def worker(self, worker_id: str) -> Worker:
        """The loaded worker object, for single-threaded tools and benchmarks.

        The object is handed out after its turn ends: with other threads using this
        Runtime, take it with :meth:`using` instead.
        """
        with self.using(worker_id) as w:
            return w

    def configure(self, worker_id: str, *, snapshot_policy: SnapshotPolicy | None = None,
                  allow_http: Sequence[str] = (), deny_http: Sequence[str] = ()) -> None:
        """Per-worker settings that may change over its life."""
        with self._turns.hold(worker_id):
            meta = self.store.get_worker(worker_id)
            if meta is None:
                raise NotFoundError(f"no worker {worker_id}")
            if snapshot_policy is not None:
                meta["snapshot_policy"] = str(snapshot_policy)
            meta["http_allow"] = _edit_rules(meta.get("http_allow", []), allow_http, deny_http)
            self.store.put_worker(meta)
            self._drop(worker_id)

    def interrupt(self, worker_id: str) -> str | None:
        """Abandon a worker's pending (suspended or cut-off) invocation.

        It is recorded as failed, so the worker goes back to its state from before
        it. Effects it already had (HTTP calls, calls to other workers) stay done.
        Returns the abandoned function's name, or None when nothing was pending.
        """
        from golemish.oplog import InvokeFailed
        with self._turns.hold(worker_id):
            meta = self.store.get_worker(worker_id)
            if meta is None:
                raise NotFoundError(f"no worker {worker_id}")
            w = self._drop(worker_id)
            if w is not None:
                w.discard()
            log = self.store.oplog(worker_id)
            # From the start, not from the latest snapshot: a stackful worker's mid-call
            # snapshot lies inside the pending invocation, after its InvokeStart.
            plan = plan_log(log, worker_id, 0)
            pending = None
            if plan.open_start is not None:
                entry = log.get(plan.open_start)
                pending = getattr(entry, "function", "?")
                log.append(InvokeFailed("interrupted", "interrupted by the user"))
            meta.pop("suspended", None)
            meta["status"] = "idle"
            self.store.put_worker(meta)
            return pending

    # -- services the host API uses (see host_api.Services) ---------------------------
    def http_allow(self, worker_id: str) -> list[str]:
        meta = self.store.get_worker(worker_id) or {}
        comp = self.store.get_component(meta.get("component", ""), meta.get("version")) or {}
        return [*self.config.http_allow, *comp.get("http_allow", []),
                *meta.get("http_allow", [])]

    def suspend_after_s(self) -> float:
        return self.config.suspend_after_s

    def promise_create(self, worker_id: str, promise_id: str) -> None:
        self.store.put_promise({"id": promise_id, "worker": worker_id, "state": "pending",
                                "created_at": self.clock.time_ns() / 1e9})

    def promise_state(self, promise_id: str) -> tuple[str, bytes] | None:
        p = self.store.get_promise(promise_id)
        return None if p is None else (p["state"], bytes.fromhex(p.get("payload", "")))

    def complete_promise(self, promise_id: str, payload: bytes,
                         output: OutputFn | None = None) -> tuple[dict[str, Any], Any]:
        """Record a promise's completion, then resume the worker awaiting it.

        Returns (promise, outcome): the RecoveryReport of the resumed worker, or the
        Suspended it stopped at next.
        """
        with self._promises:  # two completers: exactly one wins
            p = self.store.get_promise(promise_id)
            if p is None:
                raise PromiseError(f"no promise {promise_id!r} (see `golemish promise list`)")
            if p["state"] == "completed":
                raise PromiseError(f"promise {promise_id} was already completed")
            p.update(state="completed", payload=payload.hex(),
                     completed_at=self.clock.time_ns() / 1e9)
            self.store.put_promise(p)
        try:
            return p, self.resume(p["worker"], output)
        except Suspended as s:
            return p, s

    def delete_worker(self, worker_id: str) -> None:
        with self._turns.hold(worker_id):
            if self.store.get_worker(worker_id) is None:
                raise NotFoundError(f"no worker {worker_id}")
            w = self._drop(worker_id)
            if w is not None:
                w.discard()
            self.store.delete_worker(worker_id)


def _edit_rules(current: Sequence[str], allow: Sequence[str],
                deny: Sequence[str]) -> list[str]:
    """An allow-list with ``deny`` taken off and ``allow`` added, all normalised.

    Stored entries are normalised leniently (an older store may hold ``VM``); new
    ones must be valid.
    """
    allow, deny = http.normalize_rules(allow), http.normalize_rules(deny)
    kept = []
    for rule in current:
        try:
            rule = http.normalize_rule(rule)
        except GolemishError:
            pass
        if rule not in deny and rule not in kept:
            kept.append(rule)
    return kept + [r for r in allow if r not in kept]


__all__ = ["DEFAULT_HOME", "Runtime", "RuntimeConfig", "parse_worker_id", "ComponentError",
           "Deferred"]
