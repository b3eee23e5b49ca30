"""PostgreSQL backend (psycopg 3 with a connection pool), for stores shared by machines.

``postgres://user@host/db`` (or ``postgresql://``) opens the golemish store in that
database. The schema (postgres_schema.py) is versioned: opening checks the version,
and only `golemish store migrate` (or creating a store: `store init`, `deploy`)
creates or upgrades it, so a mistyped URL is an error, never a new empty store.

Durability is the server's: a write returns after its transaction committed, which
with PostgreSQL's defaults (fsync, synchronous_commit on) survives a crash of the
database machine too. A libpq ``options`` parameter in the URL (for example
``?options=-c%20synchronous_commit%3Doff``) trades that for speed; see README.

Reads: ``get`` is one query. A scan is a generator (lazy, as the contract says) that
pages through the range by key (keyset pagination, growing chunks) inside one
``REPEATABLE READ`` transaction on one pooled connection, so its key set is the
snapshot taken at its first query and it never holds a whole table in memory.

Ownership: like a RocksDB store, one process writes to a store at a time, unless it
is opened with ``exclusive=False`` (executors that coordinate through leases, see
golemish.oplog.leases). The writer holds a session advisory lock on a connection of
its own, named with its pid, so that another writer is told who has it; the lock goes
with the connection when the process dies, even by SIGKILL. Executors hold the same
lock shared: any number of them at once, but never beside a one writer (whose writes
carry no lease, so they would race the executors' fenced ones).

psycopg exceptions are translated into golemish errors here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg_pool

from ..errors import (
    FencedError, NoStoreError, ReadOnlyStoreError, StoreClosedError, StoreError, StoreInUseError,
)
from ..stats import CommitStats
from .base import TABLES, Op
from .postgres_schema import MIGRATE_LOCK, MIGRATIONS, SCHEMA_TABLE, SCHEMA_VERSION, WRITER_LOCK

#: The advisory lock executors take turns under to change shared page counts.
PAGES_LOCK = WRITER_LOCK + 7

_TABLES = frozenset(TABLES)
#: Rows fetched by a scan's first query, and the most per query after that (each
#: query fetches twice as many as the last). Small first: many scans want one item.
FIRST_CHUNK = 64
MAX_CHUNK = 4096
#: Connections per process: a server runs invocations on many threads.
POOL_MAX = 8
#: Seconds to wait for a free connection or for the server.
CONNECT_TIMEOUT_S = 10.0

T = TypeVar("T")


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def display_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = (parts.username or "") + "@" + (parts.hostname or "")
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def schema_version(conn: psycopg.Connection[Any]) -> int | None:
    """The store's schema version in this database; None: no golemish store there."""
    row = conn.execute("SELECT to_regclass('golemish_schema') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    row = conn.execute("SELECT version FROM golemish_schema WHERE id = 1").fetchone()
    return None if row is None else int(row[0])


def migrate(url: str) -> tuple[int | None, int]:
    """Create or upgrade the schema at ``url``; returns (version before, version now)."""
    shown = display_url(url)
    try:
        with psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT_S)) as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
                before = schema_version(conn)
                if before is not None and before > SCHEMA_VERSION:
                    raise StoreError(f"store {shown} has schema version {before}; this "
                                     f"golemish knows versions up to {SCHEMA_VERSION}")
                conn.execute(SCHEMA_TABLE)
                for sql in MIGRATIONS[before or 0:]:
                    conn.execute(sql)
                conn.execute(
                    "INSERT INTO golemish_schema (id, version, store_id) VALUES (1, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, "
                    "migrated_at = now()", (SCHEMA_VERSION, uuid.uuid4().hex))
    except psycopg.Error as e:
        raise StoreError(f"migrating store {shown} failed: {_one_line(e)}") from None
    return before, SCHEMA_VERSION


class PostgresBackend:
    """The golemish store in the PostgreSQL database at ``url``.

    ``create``: make the schema if the database has none (not an upgrade: that is
    `golemish store migrate`). ``readonly``: refuse writes. ``exclusive``: be the one
    writer process of the store (see the module docstring).
    """

    def __init__(self, url: str, *, create: bool = False, readonly: bool = False,
                 exclusive: bool = True, pool_max: int = POOL_MAX) -> None:
        self.url = url
        self.location = display_url(url)
        #: Commit counters and observers; the server's own fsyncs are not seen here.
        self.stats = CommitStats()
        self.readonly = readonly
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._pool: psycopg_pool.ConnectionPool | None = None
        try:
            self._check_schema(create and not readonly)
            if not readonly:
                self._lock_conn = self._take_writer_lock(shared=not exclusive)
            self._pool = psycopg_pool.ConnectionPool(
                url, min_size=1, max_size=pool_max, timeout=CONNECT_TIMEOUT_S, open=True,
                kwargs={"autocommit": True, "connect_timeout": int(CONNECT_TIMEOUT_S)},
                name="golemish")
        except psycopg.Error as e:
            self._release()
            raise StoreError(f"cannot open store {self.location}: {_one_line(e)}") from None
        except BaseException:
            self._release()
            raise

    # -- opening ------------------------------------------------------------------
    def _check_schema(self, create: bool) -> None:
        with psycopg.connect(self.url, autocommit=True,
                             connect_timeout=int(CONNECT_TIMEOUT_S)) as conn:
            version = schema_version(conn)
        if version is None and create:
            migrate(self.url)
            return
        if version is None:
            raise NoStoreError(self.location, hint=f"run `golemish store migrate --store "
                                                   f"{self.location}` to create one")
        if version != SCHEMA_VERSION:
            newer = version > SCHEMA_VERSION
            raise StoreError(
                f"store {self.location} has schema version {version}; this golemish uses "
                f"version {SCHEMA_VERSION}: " + (
                    "upgrade golemish" if newer else
                    f"run `golemish store migrate --store {self.location}`"))

    def _take_writer_lock(self, shared: bool = False) -> psycopg.Connection[Any]:
        """The one writer's lock, or with ``shared`` one of the leased executors' (they
        share it with each other, never with a one writer, whose writes are unfenced)."""
        me = f"golemish pid {os.getpid()} on {socket.gethostname()}"
        conn = psycopg.connect(self.url, autocommit=True, application_name=me[:63],
                               connect_timeout=int(CONNECT_TIMEOUT_S))
        fn = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        row = conn.execute(f"SELECT {fn}(%s)", (WRITER_LOCK,)).fetchone()
        if row and row[0]:
            return conn
        holder = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
            (WRITER_LOCK,)).fetchone()
        conn.close()
        pid = None
        name = holder[0] if holder else ""
        if name.startswith("golemish pid ") and name.split()[2].isdigit():
            pid = int(name.split()[2])
        raise StoreInUseError(self.location + (f" ({name.split(' on ', 1)[1]})"
                                               if " on " in name else ""), pid)

    def _release(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._lock_conn is not None:
            # Unlock before closing: the server drops a closed session's locks only when
            # it has noticed the disconnect, so a reopen right after could find the store
            # still "in use" by us.
            try:
                self._lock_conn.execute("SELECT pg_advisory_unlock_all()")
            except psycopg.Error:
                pass  # a broken connection: its locks go with its session
            self._lock_conn.close()
            self._lock_conn = None

    # -- the Backend interface --------------------------------------------------------
    def run(self, what: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn(connection)`` on a pooled connection (autocommit), errors translated;
        for modules that keep tables of their own in the store's database (leases)."""
        pool = self._pool
        if pool is None:
            raise StoreClosedError("store is closed")
        try:
            with pool.connection() as conn:
                return fn(conn)
        except psycopg_pool.PoolClosed:
            raise StoreClosedError("store is closed") from None
        except psycopg_pool.PoolTimeout:
            raise StoreError(f"{what} on {self.location}: no connection to the database "
                             f"within {CONNECT_TIMEOUT_S:.0f} s") from None
        except psycopg.Error as e:
            raise translate_error(what, self.location, e) from None

    def _writable(self) -> None:
        if self._pool is None:
            raise StoreClosedError("store is closed")
        if self.readonly:
            raise ReadOnlyStoreError(f"store {self.location} was opened for reading only")

    def get(self, table: str, key: bytes) -> bytes | None:
        _check_table(table)
        row = self.run(f"read from {table}", lambda c: c.execute(
            "SELECT val FROM golemish_kv WHERE tbl = %s AND key = %s", (table, key)).fetchone())
        return None if row is None else bytes(row[0])

    @contextlib.contextmanager
    def pages_lock(self) -> Iterator[None]:
        """Held around every change of shared page counts: executors sharing this
        store take turns (a session advisory lock on a pooled connection)."""
        assert self._pool is not None
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (PAGES_LOCK,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (PAGES_LOCK,))

    def get_many(self, table: str, keys: Sequence[bytes], *,
                 bulk: bool = False) -> list[bytes | None]:
        # One query for all of them (a restore reads its pages in runs of hundreds).
        _check_table(table)
        wanted = [bytes(k) for k in keys]
        rows = self.run(f"read from {table}", lambda c: c.execute(
            "SELECT key, val FROM golemish_kv WHERE tbl = %s AND key = ANY(%s)",
            (table, wanted)).fetchall())
        found = {bytes(k): bytes(v) for k, v in rows}
        return [found.get(k) for k in wanted]

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._writable()
        _check_table(table)
        self.run(f"write to {table}", lambda c: c.execute(
            "INSERT INTO golemish_kv (tbl, key, val) VALUES (%s, %s, %s) "
            "ON CONFLICT (tbl, key) DO UPDATE SET val = EXCLUDED.val",
            (table, key, bytes(value))))

    def write(self, ops: Sequence[Op]) -> None:
        self._writable()
        args = batch_args(ops)
        if args is not None:
            self.run("batch write", lambda c: c.execute(
                "SELECT golemish_write(%s::text[], %s::bytea[], %s::bytea[], %s::text[], "
                "%s::bytea[])", args))

    def write_fenced(self, fence: tuple[str, str, int], ops: Sequence[Op]) -> None:
        """``write``, applied only while ``fence`` = (worker, owner, epoch) holds the
        worker's lease; otherwise nothing is written and FencedError is raised."""
        self._writable()
        args = batch_args(ops) or ([], [], [], [], [])
        self.run("fenced batch write", lambda c: c.execute(
            "SELECT golemish_write_fenced(%s, %s, %s, %s::text[], %s::bytea[], %s::bytea[], "
            "%s::text[], %s::bytea[])", (*fence, *args)))

    def scan(self, table: str, start: bytes, end: bytes | None = None, *,
             reverse: bool = False, bulk: bool = False) -> Iterator[tuple[bytes, bytes]]:
        return self._scan(table, start, end, reverse, bulk)

    def _scan(self, table: str, start: bytes, end: bytes | None, reverse: bool,
              bulk: bool) -> Iterator[tuple[bytes, bytes]]:
        _check_table(table)
        if end is not None and end <= start:
            return
        pool = self._pool
        if pool is None:
            raise StoreClosedError("store is closed")
        # Forward: start <= key < end, then key > last. Reverse: the same range from
        # the top, then key < last.
        lo, hi = ("key >= %s", "key < %s")
        order, after = ("DESC", "key < %s") if reverse else ("ASC", "key > %s")
        bounds: list[Any] = [start] + ([] if end is None else [end])
        base = f"SELECT key, val FROM golemish_kv WHERE tbl = %s AND {lo}" + (
            "" if end is None else f" AND {hi}")
        chunk = MAX_CHUNK if bulk else FIRST_CHUNK
        last: bytes | None = None
        try:
            with pool.connection() as conn:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                try:
                    while True:
                        sql = base + ("" if last is None else f" AND {after}") + \
                            f" ORDER BY key {order} LIMIT {chunk}"
                        params = [table, *bounds] + ([] if last is None else [last])
                        rows = conn.execute(sql, params).fetchall()
                        for k, v in rows:
                            last = bytes(k)
                            yield last, bytes(v)
                        if len(rows) < chunk:
                            return
                        chunk = min(chunk * 2, MAX_CHUNK)
                finally:
                    if not conn.closed:
                        conn.execute("COMMIT")
        except psycopg_pool.PoolClosed:
            raise StoreClosedError("store is closed") from None
        except psycopg_pool.PoolTimeout:
            raise StoreError(f"scan of {table} on {self.location}: no connection to the "
                             f"database within {CONNECT_TIMEOUT_S:.0f} s") from None
        except psycopg.Error as e:
            raise translate_error(f"scan of {table}", self.location, e) from None

    def close(self) -> None:
        self._release()


def _check_table(table: str) -> None:
    if table not in _TABLES:
        raise StoreError(f"no table {table!r} in a golemish store")


def batch_args(ops: Sequence[Op]) -> tuple[list[str], list[bytes], list[bytes], list[str],
                                           list[bytes]] | None:
    """A batch as the arrays ``golemish_write`` takes; None for an empty batch.

    A later op on a key replaces an earlier one, so each key is written once and the
    deletes and upserts of one statement never meet.
    """
    if not ops:
        return None
    last: dict[tuple[str, bytes], bytes | None] = {}
    for table, key, value in ops:
        _check_table(table)
        last[(table, bytes(key))] = value
    pt: list[str] = []
    pk: list[bytes] = []
    pv: list[bytes] = []
    dt: list[str] = []
    dk: list[bytes] = []
    for (table, key), value in last.items():
        if value is None:
            dt.append(table)
            dk.append(key)
        else:
            pt.append(table)
            pk.append(key)
            pv.append(bytes(value))
    return pt, pk, pv, dt, dk


def translate_error(what: str, location: str, e: psycopg.Error) -> StoreError:
    if e.sqlstate == "GL001":
        diag = e.diag
        return FencedError(diag.message_primary or _one_line(e), diag.message_detail or "")
    if isinstance(e, psycopg.OperationalError):
        return StoreError(f"{what} on {location} failed: the database connection: "
                          f"{_one_line(e)}")
    return StoreError(f"{what} on {location} failed: {_one_line(e)}")
