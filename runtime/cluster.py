"""Several executors on one PostgreSQL store: leased workers, fenced writes, failover.

An executor (a Runtime with a :class:`ClusterConfig`) runs a worker only while it
holds the worker's lease (oplog/leases.py, DESIGN invariant 9):

- Taking a worker's turn (``Runtime._turns.hold``) takes or keeps its lease; when
  another executor holds it, :class:`NotOwner` names that owner (the server forwards
  the request there, runtime/server/routing.py).
- Every write made while a thread holds a worker's turn goes through
  ``golemish_write_fenced`` with that lease's epoch (:class:`FencingBackend`), so a
  zombie (an executor paused past its lease) gets FencedError and stores nothing.
  Its copy of the worker is then dropped; the request fails with NotOwner.
- A background thread renews the held leases every ``renew_s`` (one statement) and
  heartbeats the executor registry. A lease it cannot renew is lost: the worker is
  dropped at its next turn, and its next owner rebuilds it from the store.
- Failover: the same thread looks for leases that expired (their owner died or
  stopped) on workers with an invocation left open, takes them and resumes those
  workers (snapshot + oplog tail, then the rest of the invocation). Sleepers and
  promises are the Waker's and completers' (runtime/server/waker.py): whoever takes
  the lease resumes them.

A worker is checked for failover once per (worker, epoch): nothing can be written to
an expired lease's worker without a new epoch, so an idle one stays idle.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from golemish.oplog import GolemishError, Store
from golemish.oplog.backends.base import Op
from golemish.oplog.errors import FencedError
from golemish.oplog.leases import Executors, Lease, Leases

from .locks import WorkerLocks


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name)
    return float(text) if text else default


@dataclass
class ClusterConfig:
    """One executor's place in a cluster. Defaults: a dead executor's workers are
    taken over about ``lease_s`` + ``scan_s`` after its last renewal (p99 ≤ 2 s)."""

    #: Unique among the executors of the store; default host-pid-random.
    executor_id: str = field(default_factory=lambda: os.environ.get(
        "GOLEMISH_EXECUTOR_ID") or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    #: The base URL other executors forward requests to (set by `golemish serve`).
    address: str = ""
    #: How long a lease lasts without renewal, in seconds.
    lease_s: float = field(default_factory=lambda: _env_float("GOLEMISH_LEASE_S", 1.0))
    #: How often held leases are renewed (well under ``lease_s``).
    renew_s: float = field(default_factory=lambda: _env_float("GOLEMISH_LEASE_RENEW_S", 0.2))
    #: How often expired leases are looked for (failover).
    scan_s: float = field(default_factory=lambda: _env_float("GOLEMISH_FAILOVER_SCAN_S", 0.1))

    def __post_init__(self) -> None:
        if not (0 < self.renew_s < self.lease_s) or self.scan_s <= 0:
            from .errors import ArgumentError
            raise ArgumentError(f"lease {self.lease_s} s, renewal every {self.renew_s} s: "
                                "renewal must be positive and shorter than the lease")


class NotOwner(GolemishError):
    """Another executor holds the worker's lease (``owner``; None: it could not be
    taken, try again)."""

    def __init__(self, worker_id: str, owner: str | None, message: str = "") -> None:
        self.worker_id, self.owner = worker_id, owner
        super().__init__(message or f"worker {worker_id} is owned by executor {owner}")


class FencingBackend:
    """The store's backend as an executor uses it: a write made while this thread
    holds a worker's turn carries that worker's lease (``golemish_write_fenced``);
    other writes (deploys, promise completions) go through as they are."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.location = inner.location
        self.readonly = inner.readonly
        self.stats = inner.stats
        self._local = threading.local()
        #: Batches the database refused because the lease had moved on.
        self.fenced_rejections = 0

    def _fence(self) -> tuple[str, str, int] | None:
        stack = getattr(self._local, "stack", None)
        return stack[-1] if stack else None

    @contextlib.contextmanager
    def fenced(self, fence: tuple[str, str, int]) -> Iterator[None]:
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append(fence)
        try:
            yield
        finally:
            stack.pop()

    def get(self, table: str, key: bytes) -> bytes | None:
        return self.inner.get(table, key)

    def scan(self, table: str, start: bytes, end: bytes | None = None, *,
             reverse: bool = False, bulk: bool = False) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(table, start, end, reverse=reverse, bulk=bulk)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self.write([(table, key, value)])

    def write(self, ops: Sequence[Op]) -> None:
        fence = self._fence()
        if fence is None:
            self.inner.write(ops)
            return
        try:
            self.inner.write_fenced(fence, ops)
        except FencedError:
            self.fenced_rejections += 1
            raise

    def __getattr__(self, name: str) -> Any:  # run, write_fenced, ...
        return getattr(self.inner, name)

    def close(self) -> None:
        self.inner.close()


def open_cluster_store(url: str, *, create: bool, observer: Any = None
                       ) -> tuple[Store, FencingBackend]:
    from golemish.oplog.backends.postgres import PostgresBackend, is_postgres_url
    if not is_postgres_url(url):
        from .errors import ArgumentError
        raise ArgumentError(f"several executors need a PostgreSQL store (--store "
                            f"postgres://…), not {url}")
    backend = FencingBackend(PostgresBackend(url, create=create, exclusive=False))
    try:
        if observer is None:
            return Store(backend), backend
        from golemish.oplog.observe import ObservedBackend
        return Store(ObservedBackend(backend, observer, False)), backend
    except BaseException:
        backend.close()
        raise


class Cluster:
    """The leases this executor holds, their renewal, and failover (module docstring)."""

    def __init__(self, rt: Any, config: ClusterConfig, backend: FencingBackend) -> None:
        self.rt, self.config, self.backend = rt, config, backend
        # The owner name in leases is this process's, not just the executor's: an
        # executor restarted under the same id must not inherit its old leases at the
        # same epoch (the old process may be a zombie, or its copy stale).
        self.me = f"{config.executor_id}#{uuid.uuid4().hex[:6]}"
        self.leases = Leases(backend.inner)
        self.executors = Executors(backend.inner)
        self._held: dict[str, Lease] = {}
        self._guard = threading.Lock()
        self._checked: dict[str, int] = {}  # worker -> epoch found with nothing pending
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resuming: set[str] = set()
        #: Counters for /health and the tests.
        self.taken_over = 0
        self.lost = 0

    # -- turns ----------------------------------------------------------------------
    def ensure(self, worker_id: str) -> Lease:
        """The lease on ``worker_id``, taken now if we do not hold it (the caller holds
        the worker's turn). A worker loaded under an older lease is dropped first."""
        with self._guard:
            lease = self._held.get(worker_id)
        if lease is not None:
            return lease
        got = self.leases.acquire(worker_id, self.me, self.config.lease_s)
        if got is None:
            cur = self.leases.current(worker_id)
            raise NotOwner(worker_id, cur.owner if cur else None)
        self._forget(worker_id)  # whatever we had of it may be stale
        with self._guard:
            self._held[worker_id] = got
        return got

    def _forget(self, worker_id: str) -> None:
        w = self.rt._drop(worker_id)
        if w is not None:
            w.discard()

    def fenced_out(self, worker_id: str) -> None:
        """A write was refused: the lease moved on. Drop the worker (turn held)."""
        with self._guard:
            self._held.pop(worker_id, None)
        self.lost += 1
        self._forget(worker_id)

    def owner_address(self, owner: str | None) -> str | None:
        if owner is None or owner == self.me:
            return None
        for e in self.executors.live(within_s=max(3 * self.config.lease_s, 5.0)):
            if e.id == owner:
                return e.address
        return None

    def holds(self, worker_id: str) -> bool:
        with self._guard:
            return worker_id in self._held

    def held(self) -> list[str]:
        with self._guard:
            return sorted(self._held)

    # -- background -------------------------------------------------------------------
    def start(self) -> None:
        self.executors.register(self.me, self.config.address)
        self._thread = threading.Thread(target=self._loop, name="golemish-cluster",
                                        daemon=True)
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        """Stop renewing; with ``release`` give every lease up (a clean shutdown: the
        others may take the workers at once instead of after the lease)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            if release:
                with self._guard:
                    held, self._held = list(self._held.values()), {}
                for lease in held:
                    self.leases.release(lease)
            self.executors.unregister(self.me)
        except GolemishError:
            pass  # the store is going away; the leases expire by themselves

    def _loop(self) -> None:
        next_renew = next_scan = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_renew:
                    next_renew = now + self.config.renew_s
                    self.renew()
                if now >= next_scan:
                    next_scan = now + self.config.scan_s
                    self.failover()
            except GolemishError:
                pass  # the database is away: nothing is renewed, the leases expire
            self._stop.wait(max(0.005, min(next_renew, next_scan) - time.monotonic()))

    def renew(self) -> None:
        with self._guard:
            held = list(self._held.values())
        kept = self.leases.renew_many(self.me, held, self.config.lease_s)
        self.executors.heartbeat(self.me)
        with self._guard:
            for lease in held:
                if lease.worker not in kept and self._held.get(lease.worker) is lease:
                    # Lost (we were paused, or the database was away): the worker is
                    # dropped at its next turn (ensure takes a new lease).
                    del self._held[lease.worker]
                    self.lost += 1

    def failover(self) -> None:
        """Take workers whose lease expired and that have an invocation left open,
        and finish it (in a thread per worker)."""
        for lease in self.leases.expired():
            wid = lease.worker
            if self._checked.get(wid) == lease.epoch or wid in self._resuming:
                continue
            meta = self.rt.store.get_worker(wid)
            if meta is None or meta.get("status") in ("failed", "suspended") \
                    or not self._open_invocation(wid):
                # Suspended ones are the Waker's and the promise completers'.
                self._checked[wid] = lease.epoch
                continue
            self._resuming.add(wid)
            threading.Thread(target=self._resume, args=(wid,), daemon=True,
                             name=f"golemish-failover-{wid}").start()

    def _open_invocation(self, worker_id: str) -> bool:
        from .worker_recovery import plan_log
        log = self.rt.store.oplog(worker_id)
        return plan_log(log, worker_id, 0).open_start is not None

    def _resume(self, worker_id: str) -> None:
        try:
            self.rt.resume(worker_id)
            self.taken_over += 1
        except GolemishError:
            pass  # another executor was faster, or it suspended/failed: recorded
        finally:
            self._resuming.discard(worker_id)

    def stats(self) -> dict[str, Any]:
        return {"executor": self.me, "address": self.config.address,
                "leases_held": len(self._held), "taken_over": self.taken_over,
                "leases_lost": self.lost,
                "fenced_rejections": self.backend.fenced_rejections}


class LeasedTurns:
    """``WorkerLocks`` whose turns also hold the worker's lease and fence the writes
    made in them (see the module docstring)."""

    def __init__(self, cluster: Cluster) -> None:
        self.inner = WorkerLocks()
        self.cluster = cluster

    def busy(self, worker_id: str) -> bool:
        return self.inner.busy(worker_id)

    @contextlib.contextmanager
    def hold(self, worker_id: str) -> Iterator[None]:
        with self.inner.hold(worker_id):
            lease = self.cluster.ensure(worker_id)
            try:
                with self.cluster.backend.fenced(lease.fence):
                    yield
            except FencedError as e:
                self.cluster.fenced_out(worker_id)
                raise NotOwner(worker_id, None, f"{e}; this executor dropped worker "
                                                f"{worker_id}") from None
