"""A golemish store on a real PostgreSQL server (tests/pg.py): opening, schema
versions and `golemish store migrate`, the one-writer lock, and the CLI on it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import psycopg
import pytest

from golemish.oplog import Log, StoreInUseError, open_store
from golemish.oplog.backends.postgres import PostgresBackend, display_url, migrate
from golemish.oplog.backends.postgres_schema import MIGRATIONS, SCHEMA_TABLE, SCHEMA_VERSION
from golemish.oplog.errors import NoStoreError, StoreError


def test_a_database_without_the_schema_is_no_store_and_is_left_alone(pg_url):
    with pytest.raises(NoStoreError, match=r"no golemish store at postgresql://.*; run "
                                           r"`golemish store migrate --store postgresql://"):
        open_store(pg_url)
    with pytest.raises(NoStoreError):
        open_store(pg_url, readonly=True)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                            ).fetchone() == (0,)


def test_an_older_schema_is_refused_until_migrated(pg_url):
    with psycopg.connect(pg_url) as conn:  # what a golemish with schema 1 made
        conn.execute(SCHEMA_TABLE)
        conn.execute(MIGRATIONS[0])
        conn.execute("INSERT INTO golemish_schema (id, version, store_id) VALUES (1, 1, 'x')")
        conn.execute("INSERT INTO golemish_kv VALUES ('meta', 'k', 'kept')")
    for kw in ({}, {"create": True}, {"readonly": True}):
        with pytest.raises(StoreError, match=f"schema version 1; this golemish uses version "
                                             f"{SCHEMA_VERSION}: run `golemish store migrate"):
            open_store(pg_url, **kw)
    assert migrate(pg_url) == (1, SCHEMA_VERSION)
    assert migrate(pg_url) == (SCHEMA_VERSION, SCHEMA_VERSION)
    with open_store(pg_url) as s:
        assert s.backend.get("meta", b"k") == b"kept"


def test_a_newer_schema_is_refused(pg_url):
    migrate(pg_url)
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE golemish_schema SET version = 99")
    with pytest.raises(StoreError, match="schema version 99.*upgrade golemish"):
        open_store(pg_url)
    with pytest.raises(StoreError, match="knows versions up to"):
        migrate(pg_url)


def test_the_password_stays_out_of_messages():
    url = "postgresql://alice:s3cret@127.0.0.1:1/db"
    assert display_url(url) == "postgresql://alice@127.0.0.1:1/db"
    with pytest.raises(StoreError) as exc:
        open_store(url)
    assert "s3cret" not in str(exc.value) and "127.0.0.1:1/db" in str(exc.value)


CHILD = textwrap.dedent("""
    import sys, time
    from golemish.oplog import Log, open_store
    store = open_store(sys.argv[1])
    store.oplog("w").append(Log(1, b"from the child"))
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.mark.chaos
def test_one_writer_at_a_time_and_the_lock_dies_with_its_process(pg_url):
    with open_store(pg_url, create=True) as s:
        s.create_worker({"id": "w"}, Log(1, b"first"))
    with subprocess.Popen([sys.executable, "-c", CHILD, pg_url], stdout=subprocess.PIPE,
                          text=True) as child:
        try:
            assert child.stdout.readline().strip() == "ready"
            with pytest.raises(StoreInUseError, match=f"in use by pid {child.pid}\\b") as exc:
                open_store(pg_url)
            assert exc.value.pid == child.pid
            with open_store(pg_url, readonly=True) as r:  # readers are welcome meanwhile
                assert r.oplog("w").get(2) == Log(1, b"from the child")
            # Executors that coordinate through leases share the lock with each other,
            # not with a one writer (its writes carry no lease).
            with pytest.raises(StoreInUseError, match=f"in use by pid {child.pid}\\b"):
                PostgresBackend(pg_url, exclusive=False)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
    # The server ends the dead process's session, and its lock with it.
    with open_store(pg_url) as s:
        assert s.oplog("w").last_index == 2


def test_cli_migrate_deploy_invoke_check(pg_url, cli, guests):
    out = cli("--store", pg_url, "worker", "list")
    assert out.returncode == 1 and "run `golemish store migrate" in out.stderr
    assert "created store" in cli("--store", pg_url, "store", "migrate", check=True).stdout
    assert "up to date" in cli("--store", pg_url, "store", "migrate", check=True).stdout
    cli("--store", pg_url, "deploy", str(guests["counter"]), check=True)
    assert cli("--store", pg_url, "invoke", "counter/a", "add", "5", check=True).stdout.endswith("\n5\n")
    assert cli("--home", pg_url, "invoke", "counter/a", "add", "2", check=True).stdout.endswith("\n7\n")
    check = cli("--store", pg_url, "store", "check", check=True)
    assert check.stdout.startswith("ok: checked 1 workers")
    bad = cli("--store", "/nonexistent/x", "store", "migrate")
    assert bad.returncode == 1 and "works on PostgreSQL stores" in bad.stderr
