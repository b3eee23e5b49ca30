"""Leases and fencing on a real PostgreSQL server (oplog/leases.py, DESIGN invariant 9).

Two owners use two backends (two connection pools, so separate database sessions),
or two processes, one of which is paused past its lease with SIGSTOP: the zombie.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from golemish.oplog import Log, Store
from golemish.oplog.backends.postgres import PostgresBackend
from golemish.oplog.errors import FencedError, StoreError
from golemish.oplog.leases import Executors, FencedBackend, Lease, Leases
from golemish.oplog.worker_oplog import WorkerOplog

TTL = 0.5  # seconds; the tests wait past it where a lease must expire


@pytest.fixture
def two(pg_url):
    """Two owners' backends on one store, as two executors would have them."""
    Store(PostgresBackend(pg_url, create=True, exclusive=False)).close()
    a = PostgresBackend(pg_url, exclusive=False)
    b = PostgresBackend(pg_url, exclusive=False)
    yield a, b
    a.close()
    b.close()


def expired(backend, lease) -> bool:
    row = backend.run("t", lambda c: c.execute(
        "SELECT expires_at <= clock_timestamp() FROM golemish_leases WHERE worker = %s",
        (lease.worker,)).fetchone())
    return bool(row[0])


def test_one_owner_at_a_time_and_epochs_only_grow(two):
    a, b = two
    la = Leases(a).acquire("c/w", "exec-a", TTL)
    assert la is not None and la.epoch == 1
    assert Leases(b).acquire("c/w", "exec-b", TTL) is None, "held by a"
    assert Leases(a).acquire("c/w", "exec-a", TTL).epoch == 1, "ours again: same epoch"
    assert Leases(a).release(la)
    lb = Leases(b).acquire("c/w", "exec-b", 30)
    assert lb.epoch == 2 and Leases(b).current("c/w").owner == "exec-b"
    with pytest.raises(FencedError, match="exec-a no longer holds the lease on c/w"):
        Leases(a).renew(la, TTL)
    assert not Leases(a).release(la)
    assert Leases(b).renew(lb, 30).epoch == 2


def test_a_zombies_append_is_refused_after_another_owner_took_the_lease(two):
    a, b = two
    la = Leases(a).acquire("c/w", "exec-a", TTL)
    log_a = Store(FencedBackend(a, la)).create_worker({"id": "c/w"}, Log(1, b"created by a"))
    assert log_a.append(Log(1, b"a while it holds the lease")) == 2
    while not expired(b, la):  # a is paused past its lease...
        time.sleep(TTL / 4)
    lb = Leases(b).acquire("c/w", "exec-b", 30)
    assert lb is not None and lb.epoch == la.epoch + 1
    log_b = WorkerOplog(FencedBackend(b, lb), "c/w")
    assert log_b.append(Log(1, b"b, the new owner")) == 3
    # ...and resumes: its append (index 3 again, as far as it knows) is refused.
    with pytest.raises(FencedError, match=f"exec-a no longer holds the lease on c/w at "
                                          f"epoch {la.epoch}") as exc:
        log_a.append(Log(1, b"the zombie"))
    assert "owner exec-b, epoch 2" in exc.value.detail
    with pytest.raises(FencedError):  # a batch of several ops: none of it lands
        FencedBackend(a, la).write([("meta", b"zombie", b"1"), ("workers", b"c/w", b"x")])
    store = Store(b)
    assert [e for _, e in store.oplog("c/w").read()] == [
        Log(1, b"created by a"), Log(1, b"a while it holds the lease"),
        Log(1, b"b, the new owner")]
    assert b.get("meta", b"zombie") is None and store.get_worker("c/w") == {"id": "c/w"}


def test_an_expired_lease_fences_its_owner_even_before_anyone_takes_over(two):
    a, _ = two
    la = Leases(a).acquire("c/w", "exec-a", TTL)
    fenced = FencedBackend(a, la)
    fenced.put("meta", b"k", b"in time")
    while not expired(a, la):
        time.sleep(TTL / 4)
    with pytest.raises(FencedError):
        fenced.put("meta", b"k", b"too late")
    assert a.get("meta", b"k") == b"in time"
    with pytest.raises(FencedError, match="no lease"):
        FencedBackend(a, Lease("other", "exec-a", 1, la.expires_at)).put(
            "meta", b"k", b"x")


def test_leases_need_a_postgres_store():
    from golemish.oplog.backends.memory import MemoryBackend
    with pytest.raises(StoreError, match="leases need a PostgreSQL store, not memory://"):
        Leases(MemoryBackend())


ZOMBIE = textwrap.dedent("""
    import sys, time
    from golemish.oplog import Log, Store
    from golemish.oplog.backends.postgres import PostgresBackend
    from golemish.oplog.errors import FencedError
    from golemish.oplog.leases import FencedBackend, Leases
    backend = PostgresBackend(sys.argv[1], exclusive=False)
    lease = Leases(backend).acquire("c/w", "zombie", float(sys.argv[2]))
    leases = Leases(backend)
    log = Store(FencedBackend(backend, lease)).oplog("c/w")
    n = 0
    while True:  # append, renew, sleep: a pause lands in any of them
        try:
            where = "append"
            log.append(Log(1, b"zombie %d" % n))
            where = "renew"
            leases.renew(lease, float(sys.argv[2]))
        except FencedError as e:
            print("fenced after", n, "appends, at", where + ":", e, flush=True)
            break
        n += 1
        if n == 3:
            print("ready", flush=True)
        time.sleep(0.01)
    backend.close()
""")


@pytest.mark.chaos
def test_a_process_paused_past_its_lease_cannot_write_when_it_resumes(two):
    a, b = two
    Store(a).create_worker({"id": "c/w"}, Log(1, b"created"))
    with subprocess.Popen([sys.executable, "-c", ZOMBIE, a.url, str(TTL)],
                          stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout.readline().strip() == "ready"
            child.send_signal(signal.SIGSTOP)
            zombie = Leases(b).current("c/w")
            while not expired(b, zombie):
                time.sleep(TTL / 4)
            lb = Leases(b).acquire("c/w", "successor", 30)
            assert lb is not None and lb.epoch == zombie.epoch + 1
            log = WorkerOplog(FencedBackend(b, lb), "c/w")
            before = log.last_index
            log.append(Log(1, b"successor"))
            child.send_signal(signal.SIGCONT)
            out = child.stdout.read()
            assert child.wait(timeout=30) == 0
        finally:
            if child.poll() is None:
                child.kill()
    assert out.startswith("fenced after "), out
    if " at append:" in out:  # (a pause in the middle of an append ends at its renew)
        assert "owner successor" in out
    entries = [e for _, e in WorkerOplog(b, "c/w").read()]
    assert entries[before] == Log(1, b"successor") and len(entries) == before + 1, \
        "nothing from the zombie after the takeover"


def test_executors_register_and_heartbeat(two):
    a, b = two
    Executors(a).register("exec-a", "http://10.0.0.1:7070")
    Executors(b).register("exec-b", "http://10.0.0.2:7070")
    assert Executors(a).heartbeat("exec-a") and not Executors(a).heartbeat("nobody")
    live = Executors(b).live(within_s=60)
    assert [(e.id, e.address) for e in live] == [("exec-a", "http://10.0.0.1:7070"),
                                                 ("exec-b", "http://10.0.0.2:7070")]
    Executors(a).unregister("exec-a")
    assert [e.id for e in Executors(b).live(within_s=60)] == ["exec-b"]
