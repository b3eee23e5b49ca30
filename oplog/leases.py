"""Leases with fencing epochs, and the executor registry, on a PostgreSQL store.

DESIGN.md invariant 9: each worker is owned by at most one executor, through a row
of ``golemish_leases`` (worker, owner, epoch, expires_at). Taking a lease that is
free or expired makes the caller its owner and raises the epoch by one; renewing
extends it only while it is still the caller's, at the same epoch. Times are the
database's clock (``clock_timestamp()``), never the executors', so a paused or
skewed executor cannot think it still owns a lease the database has expired.

Fencing: an owner writes through :class:`FencedBackend`, which sends every batch
with (worker, owner, epoch) to ``golemish_write_fenced``. That function checks,
in the transaction of the batch, that the lease is still that owner's at that
epoch and unexpired, holding the row ``FOR SHARE`` so that a takeover waits for the
batch to commit. A zombie (an executor paused past its lease, then resumed) gets
FencedError on its next write and nothing of that batch is stored.

The registry (``golemish_executors``) records each executor's address and
heartbeat, for routing requests to a worker's owner.

Only the PostgreSQL backend has these tables; RocksDB and memory stores have one
process and need none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .backends.base import Op
from .errors import FencedError, StoreError


@dataclass(frozen=True)
class Lease:
    """A lease as its owner holds it; ``epoch`` is the fencing token."""

    worker: str
    owner: str
    epoch: int
    expires_at: datetime

    @property
    def fence(self) -> tuple[str, str, int]:
        return (self.worker, self.owner, self.epoch)


def _pg(backend: Any) -> Any:
    if not hasattr(backend, "write_fenced"):
        raise StoreError(f"leases need a PostgreSQL store, not {backend.location}")
    return backend


class Leases:
    """Acquire, renew and release worker leases in the store's database."""

    def __init__(self, backend: Any) -> None:
        self.backend = _pg(backend)

    def acquire(self, worker: str, owner: str, ttl_s: float) -> Lease | None:
        """Take the lease on ``worker`` for ``ttl_s`` seconds if it is free, expired or
        already ours (then at the same epoch); None when another owner holds it."""
        row = self.backend.run("lease acquire", lambda c: c.execute(
            "INSERT INTO golemish_leases AS l (worker, owner, epoch, expires_at) "
            "VALUES (%s, %s, 1, clock_timestamp() + make_interval(secs => %s)) "
            "ON CONFLICT (worker) DO UPDATE SET owner = EXCLUDED.owner, "
            "  epoch = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_at > clock_timestamp() "
            "               THEN l.epoch ELSE l.epoch + 1 END, "
            "  expires_at = EXCLUDED.expires_at "
            "WHERE l.owner = EXCLUDED.owner OR l.expires_at <= clock_timestamp() "
            "RETURNING epoch, expires_at", (worker, owner, ttl_s)).fetchone())
        return None if row is None else Lease(worker, owner, int(row[0]), row[1])

    def renew(self, lease: Lease, ttl_s: float) -> Lease:
        """Extend a lease we still hold; FencedError if it expired or moved on."""
        row = self.backend.run("lease renew", lambda c: c.execute(
            "UPDATE golemish_leases SET expires_at = clock_timestamp() + make_interval(secs => %s) "
            "WHERE worker = %s AND owner = %s AND epoch = %s AND expires_at > clock_timestamp() "
            "RETURNING expires_at", (ttl_s, *lease.fence)).fetchone())
        if row is None:
            raise FencedError(f"fenced: {lease.owner} no longer holds the lease on "
                              f"{lease.worker} at epoch {lease.epoch}")
        return Lease(lease.worker, lease.owner, lease.epoch, row[0])

    def release(self, lease: Lease) -> bool:
        """Give the lease up (it expires now; the epoch is kept, so it only grows).
        False if it was no longer ours."""
        row = self.backend.run("lease release", lambda c: c.execute(
            "UPDATE golemish_leases SET expires_at = '-infinity' "
            "WHERE worker = %s AND owner = %s AND epoch = %s RETURNING 1",
            lease.fence).fetchone())
        return row is not None

    def renew_many(self, owner: str, leases: Sequence[Lease], ttl_s: float) -> set[str]:
        """Renew all of ``leases`` (one owner's) in one statement; returns the workers
        whose lease was still ours and is extended. The others are lost."""
        if not leases:
            return set()
        rows = self.backend.run("lease renew", lambda c: c.execute(
            "UPDATE golemish_leases l SET expires_at = clock_timestamp() "
            "  + make_interval(secs => %s) FROM unnest(%s::text[], %s::bigint[]) AS h(w, e) "
            "WHERE l.worker = h.w AND l.epoch = h.e AND l.owner = %s "
            "AND l.expires_at > clock_timestamp() RETURNING l.worker",
            (ttl_s, [x.worker for x in leases], [x.epoch for x in leases], owner)).fetchall())
        return {r[0] for r in rows}

    def expired(self, limit: int = 1000) -> list[Lease]:
        """Leases that have expired or were released: workers nobody owns now."""
        rows = self.backend.run("lease scan", lambda c: c.execute(
            "SELECT worker, owner, epoch, expires_at FROM golemish_leases "
            "WHERE expires_at <= clock_timestamp() ORDER BY expires_at LIMIT %s",
            (limit,)).fetchall())
        return [Lease(r[0], r[1], int(r[2]), r[3]) for r in rows]

    def owner_address(self, worker: str, me: str) -> tuple[str, str] | None:
        """(owner, address) when another registered executor holds an unexpired lease
        on ``worker``; None when it is ours, free or expired."""
        row = self.backend.run("lease owner", lambda c: c.execute(
            "SELECT l.owner, e.address FROM golemish_leases l JOIN golemish_executors e "
            "ON e.id = l.owner WHERE l.worker = %s AND l.owner <> %s "
            "AND l.expires_at > clock_timestamp()", (worker, me)).fetchone())
        return None if row is None else (row[0], row[1])

    def current(self, worker: str) -> Lease | None:
        """The worker's lease row as the database has it (expired or not)."""
        row = self.backend.run("lease read", lambda c: c.execute(
            "SELECT owner, epoch, expires_at FROM golemish_leases WHERE worker = %s",
            (worker,)).fetchone())
        return None if row is None else Lease(worker, row[0], int(row[1]), row[2])


class FencedBackend:
    """A backend whose writes are applied only while ``lease`` holds (see the module
    docstring); reads go straight through. Give it to the owner's WorkerOplog/Store."""

    def __init__(self, backend: Any, lease: Lease) -> None:
        self.inner = _pg(backend)
        self.lease = lease
        self.location = backend.location
        self.readonly = False

    def get(self, table: str, key: bytes) -> bytes | None:
        return self.inner.get(table, key)

    def get_many(self, table: str, keys: Sequence[bytes], *,
                 bulk: bool = False) -> list[bytes | None]:
        return self.inner.get_many(table, keys, bulk=bulk)

    def scan(self, table: str, start: bytes, end: bytes | None = None, *,
             reverse: bool = False, bulk: bool = False) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(table, start, end, reverse=reverse, bulk=bulk)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self.inner.write_fenced(self.lease.fence, [(table, key, value)])

    def write(self, ops: Sequence[Op]) -> None:
        self.inner.write_fenced(self.lease.fence, ops)

    def close(self) -> None:
        """The inner backend belongs to whoever made it; nothing to release here."""


@dataclass(frozen=True)
class Executor:
    id: str
    address: str
    started_at: datetime
    heartbeat_at: datetime
    #: Seconds since the last heartbeat, by the database's clock.
    age_s: float


class Executors:
    """The registry of running executors: id, address and heartbeat."""

    def __init__(self, backend: Any) -> None:
        self.backend = _pg(backend)

    def register(self, executor_id: str, address: str) -> None:
        self.backend.run("executor register", lambda c: c.execute(
            "INSERT INTO golemish_executors (id, address) VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, "
            "started_at = now(), heartbeat_at = now()", (executor_id, address)))

    def heartbeat(self, executor_id: str) -> bool:
        """Record that the executor is alive; False if it is not registered."""
        row = self.backend.run("executor heartbeat", lambda c: c.execute(
            "UPDATE golemish_executors SET heartbeat_at = clock_timestamp() WHERE id = %s "
            "RETURNING 1", (executor_id,)).fetchone())
        return row is not None

    def unregister(self, executor_id: str) -> None:
        self.backend.run("executor unregister", lambda c: c.execute(
            "DELETE FROM golemish_executors WHERE id = %s", (executor_id,)))

    def live(self, within_s: float) -> list[Executor]:
        """Executors whose last heartbeat is at most ``within_s`` seconds old."""
        rows = self.backend.run("executor list", lambda c: c.execute(
            "SELECT id, address, started_at, heartbeat_at, "
            "  extract(epoch FROM clock_timestamp() - heartbeat_at) FROM golemish_executors "
            "WHERE heartbeat_at > clock_timestamp() - make_interval(secs => %s) ORDER BY id",
            (within_s,)).fetchall())
        return [Executor(r[0], r[1], r[2], r[3], float(r[4])) for r in rows]
