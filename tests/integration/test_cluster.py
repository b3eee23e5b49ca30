"""Several `golemish serve --cluster` executors on one real PostgreSQL server:
routing to a worker's owner, failover of a killed executor's pending invocation,
and a zombie (paused past its lease) whose writes are refused (runtime/cluster.py).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import urllib.parse

import httpx
import pytest

from cluster_kit import Executor, Sink, deploy, golemish_cmd, migrate
from golemish.oplog import InvokeStart, Store
from golemish.oplog.backends.postgres import PostgresBackend


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def executors(pg_url, guests, tmp_path, sink):
    migrate(pg_url)
    made: list[Executor] = []

    def make(n: int) -> list[Executor]:
        for i in range(n):
            e = Executor(pg_url, f"e{len(made)}", log_dir=tmp_path)
            e.start()
            made.append(e)
        deploy(made[0].url, "counter", guests["counter"].read_bytes())
        deploy(made[0].url, "agent", guests["agent"].read_bytes(), [sink.host])
        return made

    yield make
    for e in made:
        e.stop()


def invoke(url: str, worker: str, function: str, *args: str, key: str | None = None,
           timeout: float = 60, env: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/workers/{worker}/invoke", timeout=timeout,
                      json={"function": function, "args": list(args), "env": env or {}},
                      headers={"Idempotency-Key": key} if key else {})


def wait_for(pred, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


def starts_with_key(pg_url: str, worker: str, key: str) -> int:
    with Store(PostgresBackend(pg_url, readonly=True, exclusive=False)) as st:
        return sum(1 for _, e in st.oplog(worker).read()
                   if isinstance(e, InvokeStart) and e.idempotency_key == key)


def test_any_executor_takes_a_request_and_the_owner_runs_it(executors):
    a, b = executors(2)
    assert invoke(a.url, "counter/r", "add", "5").json()["results"][0]["value"] == 5
    assert a.info()["leases_held"] == 1 and b.info()["leases_held"] == 0
    r = invoke(b.url, "counter/r", "add", "2")  # b forwards to a, the owner
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["value"] == 7
    assert b.info()["forwarded"] == 1 and b.info()["leases_held"] == 0
    # A second request to b: forwarded again, never run on b (one owner).
    assert invoke(b.url, "counter/r", "add", "1").json()["results"][0]["value"] == 8
    assert b.info()["forwarded"] == 2
    # A promise's completion goes to the executor owning the worker that awaits it.
    r = invoke(a.url, "agent/ask", "approval")
    assert r.status_code == 202, r.text
    assert _promise_done(b.url, r.json()["promise"])
    assert b.info()["forwarded"] == 3 and b.info()["leases_held"] == 0


def test_a_killed_executors_pending_invocation_is_finished_by_another(executors, pg_url,
                                                                       sink):
    a, b = executors(2)
    env = {"AGENT_URL": sink.url}
    assert invoke(a.url, "agent/s", "pay", "1", env=env).status_code == 200  # a owns it
    sink.delay_s = 1.0  # the next payment is in flight when a dies
    threading.Thread(target=lambda: _swallow(invoke, a.url, "agent/s", "pay", "2",
                                             key="k1"), daemon=True).start()
    wait_for(lambda: "2" in sink.effects(), what="payment sent")
    a.kill()
    sink.delay_s = 0
    # Nobody asks b for anything: its failover loop takes the expired lease and
    # finishes the interrupted invocation by itself.
    wait_for(lambda: b.info()["taken_over"] >= 1, what="failover")
    info = httpx.get(f"{b.url}/workers/agent/s", timeout=10).json()
    assert info["status"] == "idle", info
    r = invoke(b.url, "agent/s", "pay", "2", key="k1")  # the client's retry
    assert r.status_code == 200 and r.json()["deduplicated"] is True, r.text
    assert r.json()["results"][0]["value"] == 200
    assert starts_with_key(pg_url, "agent/s", "k1") == 1
    # Re-sent once by the new owner (the first answer never came), with the same key:
    assert len(sink.effects()["2"]) == 1 and len(sink.requests) == 3


def test_a_zombie_is_fenced_and_drops_the_worker(executors, pg_url):
    a, b = executors(2)
    assert invoke(a.url, "counter/z", "add", "1").status_code == 200  # a owns it
    a.signal(signal.SIGSTOP)
    time.sleep(a.lease_s + 0.5)  # a's lease runs out while it is paused
    r = invoke(b.url, "counter/z", "add", "10", key="after")
    assert r.status_code == 200 and r.json()["results"][0]["value"] == 11, r.text
    a.signal(signal.SIGCONT)
    # a's copy of the worker is stale (value 1). Asked directly, it must not write:
    # it forwards to b, the owner, and the count goes on from b's state.
    r = invoke(a.url, "counter/z", "add", "100")
    assert r.status_code == 200 and r.json()["results"][0]["value"] == 111, r.text
    wait_for(lambda: a.info()["leases_lost"] >= 1, what="zombie noticing its lost lease")
    assert a.info()["leases_held"] == 0


def test_a_zombie_mid_invocation_has_its_write_refused(executors, pg_url, sink):
    a, b = executors(2)
    env = {"AGENT_URL": sink.url}
    assert invoke(a.url, "agent/y", "pay", "1", env=env).status_code == 200
    out: list[httpx.Response] = []
    sink.delay_s = 0.5
    t = threading.Thread(target=lambda: out.append(
        invoke(a.url, "agent/y", "pay", "3", key="y1")), daemon=True)
    t.start()
    wait_for(lambda: "3" in sink.effects(), what="payment sent")
    a.signal(signal.SIGSTOP)  # paused while the payment is in flight
    wait_for(lambda: b.info()["taken_over"] >= 1, what="failover")
    sink.delay_s = 0
    a.signal(signal.SIGCONT)
    t.join(30)
    # The zombie's record of the payment's answer was refused by the database; it
    # dropped the worker and passed the request on to b, the owner now, whose result
    # (the invocation b finished) the client gets.
    assert out and out[0].status_code == 200, out and out[0].text
    assert out[0].json()["deduplicated"] is True and out[0].json()["results"][0]["value"] == 200
    assert a.info()["fenced_rejections"] >= 1 and a.info()["forwarded"] == 1
    r = invoke(a.url, "agent/y", "pay", "3", key="y1")
    assert r.status_code == 200 and r.json()["deduplicated"] is True, r.text
    assert starts_with_key(pg_url, "agent/y", "y1") == 1
    assert len(sink.effects()["3"]) == 1


def _swallow(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except httpx.HTTPError:
        pass


def test_a_dead_executors_sleeper_and_promise_waiter_go_on_elsewhere(executors):
    a, b = executors(2)
    # A durable sleep past suspend_after (2 s) suspends the worker; a promise wait too.
    r = invoke(a.url, "agent/sleeper", "nap", "3000", key="nap")
    assert r.status_code == 202 and r.json()["until_ns"], r.text
    r = invoke(a.url, "agent/waiter", "approval", key="ask")
    assert r.status_code == 202, r.text
    promise = r.json()["promise"]
    a.kill()
    # b's waker takes the sleeper when its time comes (a's lease has expired by then).
    wait_for(lambda: httpx.get(f"{b.url}/workers/agent/sleeper", timeout=10).json()[
        "status"] == "idle", what="sleeper woken on b")
    r = invoke(b.url, "agent/sleeper", "nap", "3000", key="nap")
    assert r.status_code == 200 and r.json()["deduplicated"] is True, r.text
    # The promise is completed on b, which takes the waiter over and resumes it.
    wait_for(lambda: _promise_done(b.url, promise), what="promise completed on b")
    r = invoke(b.url, "agent/waiter", "approval", key="ask")
    assert r.status_code == 200 and r.json()["results"][0]["value"] == 1, r.text
    assert r.json()["deduplicated"] is True


def _promise_done(url: str, promise: str) -> bool:
    r = httpx.post(f"{url}/promises/{urllib.parse.quote(promise, safe='/')}/complete",
                   json={"data": "yes"}, timeout=30)
    return r.status_code == 200 and r.json()["status"] == "ok"


def test_a_one_writer_process_is_refused_while_executors_share_the_store(executors,
                                                                         pg_url):
    a, b = executors(2)
    assert invoke(a.url, "counter/o", "add", "1").status_code == 200
    cmd = [*golemish_cmd(), "--store", pg_url]
    # An in-process invoke would write without a lease, racing the executors' fenced
    # writes: it is refused. Reading works, and so does going through an executor.
    out = subprocess.run([*cmd, "invoke", "counter/o", "add", "1"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1 and "in use by pid" in out.stderr, out.stderr
    out = subprocess.run([*cmd, "worker", "list"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "counter/o" in out.stdout, out.stderr
    out = subprocess.run([*cmd, "--server", b.url, "invoke", "counter/o", "add", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert invoke(a.url, "counter/o", "get").json()["results"][0]["value"] == 2


def test_with_a_token_forwarded_requests_carry_it_and_others_are_refused(pg_url, guests,
                                                                          tmp_path):
    migrate(pg_url)
    auth = {"Authorization": "Bearer s3cret"}
    a, b = (Executor(pg_url, n, log_dir=tmp_path, extra=("--token", "s3cret"))
            for n in ("ta", "tb"))
    try:
        a.start()
        b.start()
        r = httpx.post(f"{a.url}/components", params={"name": "counter"}, headers=auth,
                       content=guests["counter"].read_bytes(), timeout=60)
        assert r.status_code == 201, r.text
        for ex in (a, b):
            r = httpx.post(f"{ex.url}/workers/counter/t/invoke", json={"function": "add",
                                                                       "args": ["3"]})
            assert r.status_code == 401, r.text  # refused before any routing
            assert httpx.get(f"{ex.url}/cluster").status_code == 401
        r = httpx.post(f"{a.url}/workers/counter/t/invoke", headers=auth,
                       json={"function": "add", "args": ["3"]})
        assert r.status_code == 200, r.text
        r = httpx.post(f"{b.url}/workers/counter/t/invoke", headers=auth,
                       json={"function": "add", "args": ["4"]})
        assert r.status_code == 200 and r.json()["results"][0]["value"] == 7, r.text
        assert httpx.get(f"{b.url}/cluster", headers=auth).json()["forwarded"] == 1
    finally:
        a.stop()
        b.stop()
