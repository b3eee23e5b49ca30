"""A private PostgreSQL cluster for the tests, started from the binaries on PATH.

``postgres_cluster`` (session scope) runs ``initdb`` and ``pg_ctl start`` in a temporary
directory: TCP on 127.0.0.1 only (a free port), its unix socket in that directory,
trust authentication (nothing but this machine can reach it), fsync and synchronous
commit on, as they are in production. When the tests run as root the cluster runs as
the ``postgres`` user (the server refuses root), and the directory is handed to it.
At the end ``pg_ctl stop -m fast`` stops it and the directory is removed.

``pg_url`` gives each test a fresh database of its own (CREATE DATABASE, dropped after).

Without ``initdb`` the tests that need it are skipped, with the reason; with
``GOLEMISH_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) that is a failure instead.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Who runs the server when the tests run as root (the server refuses to run as root).
PG_USER = "postgres"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One running cluster: ``url(db)`` names a database on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0
        self._names = itertools.count(1)

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if self._as_root:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                               f"{proc.stdout}\n{proc.stderr}\n{tail}")

    def start(self) -> None:
        if self._as_root:
            shutil.chown(self.root, PG_USER, PG_USER)
        # --no-sync only skips flushing initdb's own files; the server runs with fsync on.
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.root} -c fsync=on "
                "-c synchronous_commit=on -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", opts, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def admin(self, sql: str) -> None:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def scratch_store(self) -> str:
        """A database with an empty golemish schema, the same one on every call (its
        rows deleted): for property tests that want a new store per example."""
        if not hasattr(self, "_scratch"):
            from golemish.oplog.backends.postgres import migrate
            self._scratch = self.create_database()
            migrate(self._scratch)
        import psycopg
        with psycopg.connect(self._scratch, autocommit=True) as conn:
            conn.execute("DELETE FROM golemish_kv")
        return self._scratch

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _missing_reason() -> str | None:
    missing = [b for b in ("initdb", "pg_ctl") if shutil.which(b) is None]
    if missing:
        return f"PostgreSQL binaries not on PATH: {', '.join(missing)}"
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as e:
        return f"psycopg is not installed ({e})"
    return None


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    reason = _missing_reason()
    if reason is not None:
        if os.environ.get("GOLEMISH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"GOLEMISH_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="golemish-pg-"))
    cluster = Cluster(root)
    try:
        cluster.start()
        yield cluster
        cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_cluster: Cluster) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    url = postgres_cluster.create_database()
    yield url
    postgres_cluster.drop_database(url)
