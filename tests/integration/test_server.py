"""`golemish serve` as a real process, driven over HTTP.

Each test starts the server on an ephemeral loopback port (``--listen
127.0.0.1:0``; the address is read from server.json in the store), talks to it
with httpx, and stops it with SIGTERM (or SIGKILL where the crash is the point).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.server.app import build_app
from golemish.runtime.server.openapi import openapi_document

from conftest import golemish_cmd
from serverproc import ServerProc as Server


@pytest.fixture
def store(home: str) -> str:
    subprocess.run([*golemish_cmd(), "--home", home, "store", "init"], check=True,
                   capture_output=True)
    return home


@pytest.fixture
def server(store: str, guests):
    s = Server(store)
    r = s.http.post("/components", params={"name": "counter"},
                    content=guests["counter"].read_bytes())
    assert r.status_code == 201, r.text
    yield s
    if s.proc.poll() is None:
        assert s.stop() == 0


def test_deploy_invoke_show_list_and_oplog(server, guests):
    r = server.invoke("counter/a", "add", "5")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"] == [{"type": "i64", "value": 5}]
    assert "total 5" in body["stdout"]
    assert server.get("counter/a") == 5
    info = server.http.get("/workers/counter/a").json()
    assert info["id"] == "counter/a" and info["status"] == "idle" and info["invocations"] == 2
    assert [w["id"] for w in server.http.get("/workers").json()] == ["counter/a"]
    assert server.http.get("/workers", params={"component": "other"}).json() == []
    assert server.http.get("/workers", params={"status": "failed"}).json() == []
    assert len(server.http.get("/workers", params={"version": 0}).json()) == 1
    assert server.http.get("/workers", params={"version": 1}).json() == []
    assert server.http.get("/workers", params={"version": "x"}).status_code == 400
    page = server.http.get("/workers/counter/a/oplog", params={"start": 2, "limit": 1}).json()
    assert [(e["index"], e["kind"], e["function"]) for e in page] == [(2, "invoke", "add")]
    assert [c["name"] for c in server.http.get("/components").json()] == ["counter"]
    assert server.http.get("/components/counter").json()["version"] == 0
    again = server.http.post("/components", params={"name": "counter"},
                             content=guests["counter"].read_bytes())
    assert again.status_code == 200 and again.json()["created"] is False
    assert server.http.delete("/workers/counter/a").json() == {"deleted": "counter/a"}
    assert server.http.get("/workers/counter/a").status_code == 404


def test_an_idempotency_key_runs_once(server):
    first = server.invoke("counter/k", "add", "7", key="order-1")
    second = server.invoke("counter/k", "add", "7", key="order-1")
    assert first.status_code == second.status_code == 200
    assert first.json()["deduplicated"] is False and second.json()["deduplicated"] is True
    assert second.json()["results"] == first.json()["results"]
    assert server.get("counter/k") == 7
    other_args = server.invoke("counter/k", "add", "8", key="order-1")
    assert other_args.status_code == 400, other_args.text  # a key reused for another call


def test_concurrent_invocations_over_several_workers_give_exact_counts(server):
    workers = [f"counter/c{i}" for i in range(4)]
    errors: list[str] = []

    def client(t: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for i in range(15):
                r = server.invoke(workers[(t + i) % 4], "add", "1", client=http)
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert [server.get(w) for w in workers] == [30, 30, 30, 30]


def test_bad_requests_get_4xx_json_errors(server):
    def err(r: httpx.Response, status: int, code: str) -> str:
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        e = r.json()["error"]
        assert e["code"] == code and "\n" not in e["message"] and "Traceback" not in r.text
        return e["message"]

    err(server.http.get("/nope"), 404, "no-route")
    err(server.http.put("/workers"), 405, "method-not-allowed")
    err(server.http.post("/workers/counter/a/invoke", content=b"{not json"), 400, "bad-json")
    err(server.http.post("/workers/counter/a/invoke", json=[1]), 400, "bad-json")
    err(server.http.post("/workers/counter/a/invoke", json={"args": []}), 400, "bad-argument")
    err(server.http.post("/workers/counter/a/invoke", json={"function": "add", "args": [1]}),
        400, "bad-argument")
    assert err(server.invoke("counter/a", "add"), 400, "bad-argument") == \
        "add(i64) takes 1 argument, got 0"
    assert "exports no function 'nope'" in err(server.invoke("counter/a", "nope"), 404,
                                               "not-found")
    assert err(server.http.get("/workers/counter/zz"), 404, "not-found") == "no worker counter/zz"
    err(server.http.get("/workers/counter/zz/oplog"), 404, "not-found")
    err(server.http.get("/workers/counter/a/oplog", params={"limit": "x"}), 400, "bad-argument")
    err(server.invoke("nosuch/a", "add", "1"), 404, "not-found")
    err(server.http.get("/workers/counter/bad name!"), 400, "bad-argument")
    err(server.http.post("/workers/counter/a/invoke", content=b"x" * (2 << 20)), 413,
        "too-large")
    err(server.http.post("/components"), 400, "bad-argument")
    err(server.http.post("/components", params={"name": "junk"}, content=b"not wasm"), 400,
        "bad-component")
    err(server.http.post("/promises/nope/complete", json={}), 404, "not-found")
    assert server.invoke("counter/a", "add", "2").status_code == 200
    err(server.invoke("counter/a", "add_then_trap", "5"), 422, "invocation-failed:trap")
    assert server.get("counter/a") == 2  # the trapped invocation changed nothing


def test_the_openapi_document_names_exactly_the_served_routes(server):
    served = server.http.get("/openapi.json").json()
    assert served == openapi_document()
    with Runtime(RuntimeConfig(home="memory://")) as rt:
        app = build_app(rt)
        routes = {(r.path.replace(":path", ""), m.lower())
                  for r in app.routes for m in r.methods if m != "HEAD"}
    documented = {(p, m) for p, ops in served["paths"].items() for m in ops}
    assert routes == documented


def test_a_token_is_required_when_given(store):
    s = Server(store, token="s3cret")
    try:
        assert s.http.get("/health").status_code == 200
        bare = httpx.get(s.url + "/health")
        assert bare.status_code == 401 and bare.json()["error"]["code"] == "unauthorized"
        wrong = httpx.get(s.url + "/workers", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    finally:
        assert s.stop() == 0


def test_a_non_loopback_listen_needs_a_token(store):
    r = subprocess.run([*golemish_cmd(), "--home", store, "serve", "--listen", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        "error: --listen 0.0.0.0:0 is reachable from other machines: give --token "
        "(or GOLEMISH_SERVER_TOKEN) so that every call needs it"]


def test_sigterm_drains_in_flight_invocations_and_exits_0(store, guests):
    s = Server(store)
    s.http.post("/components", params={"name": "agent"}, content=guests["agent"].read_bytes())
    got: list[httpx.Response] = []

    def nap() -> None:
        with httpx.Client(base_url=s.url, timeout=30) as http:
            got.append(s.invoke("agent/a", "nap", "1000", client=http))

    t = threading.Thread(target=nap)
    t.start()
    time.sleep(0.5)  # the nap is running
    assert s.stop(signal.SIGTERM) == 0
    t.join(30)
    assert got and got[0].status_code == 200, got
    assert not (Path(store) / "server.json").exists()
    s2 = Server(store)  # the store was closed cleanly: it opens, the nap is complete
    try:
        info = s2.http.get("/workers/agent/a").json()
        assert info["status"] == "idle" and info["invocations"] == 1
    finally:
        assert s2.stop() == 0


@pytest.mark.chaos
def test_sigkill_under_load_loses_no_acknowledged_invocation(server):
    workers = [f"counter/k{i}" for i in range(4)]
    acked = {w: 0 for w in workers}
    stop = threading.Event()

    def client(w: str) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                try:
                    r = server.invoke(w, "add", "1", client=http)
                except httpx.HTTPError:
                    return  # the server died: this one was not acknowledged
                if r.status_code == 200:
                    acked[w] += 1

    threads = [threading.Thread(target=client, args=(w,)) for w in workers for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    stop.set()
    for t in threads:
        t.join(30)
    assert all(acked.values()), acked
    s2 = Server(server.home)  # server.json is stale (dead pid): the new server replaces it
    try:
        for w in workers:
            got = s2.get(w)
            # every acknowledged add is there once; at most the in-flight one per client
            # (run but not acknowledged) comes on top
            assert acked[w] <= got <= acked[w] + 2, (w, acked[w], got)
    finally:
        assert s2.stop() == 0


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_durable_sleep_wakes_by_itself_in_the_server(store, guests):
    s = Server(store)
    try:
        s.http.post("/components", params={"name": "agent"},
                    content=guests["agent"].read_bytes())
        t0 = time.monotonic()
        r = s.invoke("agent/s", "nap", "3000")  # longer than suspend_after_s: suspends
        assert r.status_code == 202 and r.json()["status"] == "suspended", r.text
        busy = s.invoke("agent/s", "nap", "1")
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "worker-suspended"
        _wait_for(lambda: s.http.get("/workers/agent/s").json()["status"] == "idle")
        assert time.monotonic() - t0 >= 2.9  # woke on time, not before
        ends = [e for e in s.http.get("/workers/agent/s/oplog").json() if e["kind"] == "return"]
        assert len(ends) == 1  # the nap finished, with nobody calling resume
    finally:
        assert s.stop() == 0


def test_several_sleepers_wake_by_themselves_in_deadline_order(store, guests):
    s = Server(store)
    try:
        s.http.post("/components", params={"name": "agent"},
                    content=guests["agent"].read_bytes())
        # Put to sleep out of deadline order, 0.6 s apart, all past suspend_after_s (2 s).
        naps = {"agent/d": 4400, "agent/a": 2600, "agent/c": 3800, "agent/b": 3200}
        for w, ms in naps.items():
            r = s.invoke(w, "nap", str(ms))
            assert r.status_code == 202 and r.json()["status"] == "suspended", r.text
        _wait_for(lambda: all(s.http.get(f"/workers/{w}").json()["status"] == "idle"
                              for w in naps), timeout=60)
        woke = {}
        for w in naps:
            ends = [e for e in s.http.get(f"/workers/{w}/oplog").json()
                    if e["kind"] == "return"]
            assert len(ends) == 1, ends  # finished once, with nobody calling resume
            woke[w] = ends[0]["results"][0][1]  # nap returns the wall ms it woke at
        assert sorted(woke, key=woke.get) == ["agent/a", "agent/b", "agent/c", "agent/d"]
    finally:
        assert s.stop() == 0


def test_completing_a_promise_resumes_its_worker_at_once(store, guests):
    s = Server(store)
    try:
        s.http.post("/components", params={"name": "agent"},
                    content=guests["agent"].read_bytes())
        r = s.invoke("agent/p", "approval")
        assert r.status_code == 202, r.text
        pid = r.json()["promise"]
        assert [p["id"] for p in s.http.get("/promises").json()] == [pid]
        assert "#" in pid  # ids are WORKER#HEX: a client percent-encodes them
        url = f"/promises/{urllib.parse.quote(pid, safe='')}/complete"
        done = s.http.post(url, json={"data": "yes"})
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "ok" and done.json()["finished"]["ok"] is True
        assert s.http.get("/workers/agent/p").json()["status"] == "idle"
        twice = s.http.post(url, json={"data": "yes"})
        assert twice.status_code == 409 and twice.json()["error"]["code"] == "promise"
    finally:
        assert s.stop() == 0


def _cli(home: str, *args: str, env: dict[str, str] | None = None):
    full = {k: v for k, v in os.environ.items() if k != "GOLEMISH_SERVER"}
    full.update({"GOLEMISH_HOME": home, **(env or {})})
    return subprocess.run([*golemish_cmd(), *args], capture_output=True, text=True,
                          env=full, timeout=120)


def test_the_cli_goes_through_a_running_server_with_identical_output(server):
    """While the server owns the store an in-process CLI could not open it, so these
    answers came through the API; after it stops, the same commands run in-process."""
    through = [_cli(server.home, "invoke", "counter/a", "add", "5"),
               _cli(server.home, "invoke", "counter/a", "add", "5", "-k", "k1"),
               _cli(server.home, "invoke", "counter/a", "add", "5", "-k", "k1"),
               _cli(server.home, "invoke", "counter/a", "nope"),
               _cli(server.home, "invoke", "counter/a", "add"),
               _cli(server.home, "worker", "show", "counter/zz"),
               _cli(server.home, "--json", "invoke", "counter/a", "get")]
    shown = _cli(server.home, "worker", "show", "counter/a")
    listed = _cli(server.home, "worker", "list")
    assert server.stop() == 0
    local = [_cli(server.home, "invoke", "counter/b", "add", "5"),
             _cli(server.home, "invoke", "counter/b", "add", "5", "-k", "k1"),
             _cli(server.home, "invoke", "counter/b", "add", "5", "-k", "k1"),
             _cli(server.home, "invoke", "counter/b", "nope"),
             _cli(server.home, "invoke", "counter/b", "add"),
             _cli(server.home, "worker", "show", "counter/zz"),
             _cli(server.home, "--json", "invoke", "counter/b", "get")]
    for remote, here in zip(through, local):
        assert remote.returncode == here.returncode, (remote, here)
        if remote.args[-1] != "get":  # --json: compared below
            assert remote.stdout.replace("counter/a", "counter/b") == here.stdout
        assert remote.stderr.replace("counter/a", "counter/b") == here.stderr, (remote, here)
    rj, lj = json.loads(through[-1].stdout), json.loads(local[-1].stdout)
    for j in (rj, lj):
        j.pop("seconds")
        j["worker"] = "-"
        # in-process, each command recovers the worker; the server's stays loaded
        assert j.pop("recovery") is None or j is lj
    assert rj == lj
    # Only residency differs: the server keeps the worker loaded, in-process nothing is.
    assert "resident:       yes" in shown.stdout
    assert shown.returncode == 0 and _cli(server.home, "worker", "show", "counter/a").stdout \
        == shown.stdout.replace("yes (loaded by the server)",
                                "no (restored from its snapshot and oplog when next used)")
    assert listed.returncode == 0 and "counter/a" in listed.stdout


def test_the_cli_says_so_when_the_named_server_does_not_answer(store):
    r = _cli(store, "worker", "list", env={"GOLEMISH_SERVER": "http://127.0.0.1:9"})
    assert r.returncode == 1
    assert r.stderr.startswith("error: server http://127.0.0.1:9 does not answer:")
    assert len(r.stderr.strip().splitlines()) == 1


def test_keep_alive_requests_are_not_held_back_by_delayed_acks(server):
    """The listening socket must say TCP (asyncio sets TCP_NODELAY only then): without
    it each response on a kept-alive connection waited ~40 ms for the client's ACK."""
    server.http.get("/health")
    samples = []
    for _ in range(15):
        t0 = time.perf_counter()
        assert server.http.get("/health").status_code == 200
        samples.append(time.perf_counter() - t0)
    samples.sort()
    assert samples[len(samples) // 2] < 0.025, samples


@pytest.mark.chaos
def test_an_invocation_a_crash_cut_off_is_finished_when_the_server_starts(store, guests):
    assert _cli(store, "deploy", str(guests["counter"])).returncode == 0
    assert _cli(store, "invoke", "counter/a", "add", "5").returncode == 0
    # After its first commit (the output, shown live): recorded, and cut off.
    cut = _cli(store, "invoke", "counter/a", "add", "2", "--crash-at", "after-commit:1")
    assert cut.returncode == -signal.SIGKILL
    assert json.loads(_cli(store, "--json", "worker", "show", "counter/a").stdout)[
        "status"] == "interrupted"
    s = Server(store)
    try:
        _wait_for(lambda: s.http.get("/workers/counter/a").json()["status"] == "idle")
        kinds = [e["kind"] for e in s.http.get("/workers/counter/a/oplog").json()]
        assert kinds.count("return") == 2  # finished by the server, nobody asked
        assert s.get("counter/a") == 7
    finally:
        assert s.stop() == 0


def test_a_typed_component_deployed_with_its_wit_takes_wave_values(server, guests):
    import base64
    root = Path(__file__).resolve().parents[2]
    built = server.http.post("/components", params={"name": "cart"}, json={
        "wasm": base64.b64encode(guests["cart"].read_bytes()).decode(),
        "wit": (root / "guest_examples/cart.wit").read_text()})
    assert built.status_code == 201, built.text
    r = server.invoke("cart/a", 'add-item({sku: "apple", qty: 2, price-cents: 150})')
    assert r.status_code == 200, r.text
    assert r.json()["value"] == 1
    total = server.invoke("cart/a", "total")
    assert total.json()["value"] == 300
    bad = server.invoke("cart/a", "add-item", "{sku: 1}")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad-argument", bad.text
    junk = server.http.post("/components", params={"name": "cart"}, json={"wasm": "%%"})
    assert junk.status_code == 400 and junk.json()["error"]["code"] == "bad-json"


def test_non_finite_float_results_are_json_strings_and_the_cli_prints_them_alike(server):
    """JSON has no NaN or infinity: they travel as "nan"/"inf"/"-inf" (never a 500)."""
    for args, want in ((["nan", "1"], "nan"), (["1e308", "10"], "inf"),
                       (["-1e308", "10"], "-inf"), (["1.5", "2"], 3.0)):
        r = server.invoke("counter/f", "f64_scale", *args)
        assert r.status_code == 200, r.text
        assert r.json()["results"] == [{"type": "f64", "value": want}]
    through = _cli(server.home, "invoke", "counter/f", "f64_scale", "--", "-1e308", "10")
    assert through.returncode == 0, through.stderr
    assert through.stdout.strip() == "-inf"
    as_json = _cli(server.home, "--json", "invoke", "counter/f", "f64_scale", "nan", "1")
    assert json.loads(as_json.stdout)["results"] == [{"type": "f64", "value": "nan"}]
