"""The runtime on a PostgreSQL store: a slice of the RocksDB runtime tests run again
with ``home`` a fresh database (tests/pg.py), plus snapshots, a SIGKILL of a CLI
process in the middle of an invocation, and `store check` on damage."""

from __future__ import annotations

import subprocess
import sys

import pytest

from golemish.oplog import InvokeStart, Snapshot
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy

from conftest import APPEND_DRIVER

# Run here again, on Postgres (the names are collected in this module too).
from test_runtime import (  # noqa: F401
    test_a_flipped_byte_is_a_corruption_error_not_a_wrong_state,
    test_a_second_runtime_on_the_store_is_refused,
    test_a_trap_leaves_the_state_from_before_the_invocation,
    test_invocations_on_one_worker_run_one_at_a_time,
    test_replay_answers_clock_and_random_from_the_oplog,
    test_state_survives_a_restart_without_repeating_output,
)


@pytest.fixture
def home(pg_url: str, tmp_path) -> str:
    """This module's store: a Postgres database (make_runtime and cli use it)."""
    return pg_url


@pytest.fixture(autouse=True)
def _setting(tmp_path, monkeypatch):
    """Each test's executor keeps compiled code in a cache directory of its own.

    Snapshots only where a test asks for them: the adaptive policy counts an
    invocation's commit time, several ms per commit on Postgres, as replay cost and
    snapshots after the first invocation, which the RocksDB tests above do not expect.
    """
    monkeypatch.setenv("GOLEMISH_CACHE_DIR", str(tmp_path / "compiled"))
    monkeypatch.setenv("GOLEMISH_SNAPSHOT_POLICY", "off")


def ints(res):
    return [v for _, v in res.results]


def test_compiled_code_is_cached_locally_and_checked(make_runtime, guests, tmp_path):
    rt = make_runtime()
    rt.deploy(guests["counter"].read_bytes(), "counter")
    assert ints(rt.invoke("counter/a", "add", ["2"])) == [2]
    rt.close()
    files = list((tmp_path / "compiled").glob("*.cwasm"))
    assert len(files) == 1
    files[0].write_bytes(files[0].read_bytes()[:-1] + b"\0")  # a damaged local copy
    rt2 = make_runtime()
    assert ints(rt2.invoke("counter/a", "add", ["3"])) == [5]  # replaced, not run


def test_recovery_restores_a_snapshot_and_replays_only_the_tail(home, guests):
    def runtime(policy="off"):
        return Runtime(RuntimeConfig(home=home, snapshot_policy=SnapshotPolicy.parse(policy)))

    with runtime("every:4") as rt:
        rt.deploy(guests["counter"].read_bytes(), "counter")
        for i in range(1, 11):
            rt.invoke("counter/a", "add", [str(i)])
        want = ints(rt.invoke("counter/a", "checksum"))
        assert any(isinstance(e, Snapshot) for _, e in rt.oplog("counter/a"))
    with runtime() as rt:
        report = rt.resume("counter/a")
        assert report.mode == "snapshot" and report.fallbacks == []
        assert report.replayed_invocations == 3
        assert ints(rt.invoke("counter/a", "get")) == [55]
        assert ints(rt.invoke("counter/a", "checksum")) == want


@pytest.mark.chaos
def test_a_cli_killed_mid_invocation_is_recovered_by_the_next(cli, guests):
    cli("deploy", str(guests["counter"]), check=True)
    cli("invoke", "counter/a", "add", "5", check=True)
    # Killed just after its first commit: the invocation is in the store, unfinished.
    killed = cli("invoke", "counter/a", "add", "100", "--crash-at", "after-commit:1")
    assert killed.returncode == -9
    shown = cli("--json", "worker", "show", "counter/a", check=True).stdout
    assert '"interrupted"' in shown
    resumed = cli("worker", "resume", "counter/a", check=True)
    # Its output was committed and shown before the kill: resume finishes it only.
    assert "finished the interrupted invocation add (oplog index 7) -> 105" in resumed.stdout
    assert cli("invoke", "counter/a", "get", check=True).stdout.endswith("105\n")
    assert cli("store", "check", check=True).stdout.startswith("ok: ")


@pytest.mark.chaos
def test_an_outside_kill_loses_no_acknowledged_invocation(home, guests):
    import signal
    with Runtime(RuntimeConfig(home=home)) as rt:
        rt.deploy(guests["journal"].read_bytes(), "journal")
        rt.invoke("journal/j", "count")
    proc = subprocess.Popen([sys.executable, "-c", APPEND_DRIVER, home], stdout=subprocess.PIPE,
                            text=True)
    acks = [proc.stdout.readline() for _ in range(3)]  # running: kill it mid-stream
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate()
    acked = len([a for a in [*acks, *rest.splitlines()] if a.startswith("ack")])
    with Runtime(RuntimeConfig(home=home)) as rt:
        count = ints(rt.invoke("journal/j", "count"))[0]
        appends = sum(1 for _, e in rt.oplog("journal/j")
                      if isinstance(e, InvokeStart) and e.function == "append")
    assert appends >= acked >= 3
    assert count == 7 * appends


def test_store_check_finds_damage_in_a_postgres_store(cli, guests, home):
    import psycopg
    cli("deploy", str(guests["counter"]), check=True)
    cli("invoke", "counter/a", "add", "5", check=True)
    assert cli("store", "check", check=True).returncode == 0
    with psycopg.connect(home) as conn:  # lose entry 3 behind the store's back
        conn.execute("DELETE FROM golemish_kv WHERE tbl = 'oplog' AND key = %s",
                     (b"counter/a\0" + (3).to_bytes(8, "big"),))
    out = cli("store", "check")
    assert out.returncode == 1
    assert out.stdout.startswith("problem: counter/a oplog index 3: missing (next present: 4)")
