"""The rest of the HTTP API against a real `golemish serve` process: enqueued and
scheduled invocations (also across SIGKILL), worker create/snapshot/config, the
oplog's filters, metrics, /docs, and 4xx JSON for bad input on each of them."""

from __future__ import annotations

import json
import re
import signal

import pytest
import wasmtime

from test_server import Server, _cli, _wait_for, server, store  # noqa: F401 (fixtures)
from test_wasi import PROBE


def _done(s: Server, inv_id: str) -> dict:
    box: dict = {}

    def finished() -> bool:
        box["rec"] = s.http.get(f"/invocations/{inv_id}").json()
        return box["rec"]["state"] in ("ok", "failed")
    _wait_for(finished, timeout=30)
    return box["rec"]


def _enqueue(s: Server, worker: str, function: str, *args: str, key: str | None = None,
             **extra):
    return s.http.post(f"/workers/{worker}/invocations",
                       json={"function": function, "args": list(args), **extra},
                       headers={"Idempotency-Key": key} if key else {})


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if m and m.group(1) == name and ",".join(sorted((m.group(2) or "").split(","))) \
                .strip(",") == want:
            return float(m.group(3))
    return 0.0


def test_an_enqueued_invocation_runs_by_itself_and_its_state_is_kept(server):
    r = _enqueue(server, "counter/q", "add", "3", key="pay-1")
    assert r.status_code == 202, r.text
    rec = r.json()
    assert rec["id"].startswith("inv-") and rec["state"] in ("queued", "running", "ok")
    assert rec["key"] == "pay-1" and rec["function"] == "add" and rec["args"] == ["3"]
    again = _enqueue(server, "counter/q", "add", "3", key="pay-1")
    assert again.status_code == 200 and again.json()["id"] == rec["id"]  # once per key
    done = _done(server, rec["id"])
    assert done["state"] == "ok" and done["results"] == [{"type": "i64", "value": 3}]
    assert done["started_at"] >= done["due_at"] and done["finished_at"] >= done["started_at"]
    # The key is the invocation's own: a direct invoke with it gets the recorded result.
    direct = server.invoke("counter/q", "add", "3", key="pay-1")
    assert direct.json()["deduplicated"] is True
    assert server.get("counter/q") == 3
    listed = server.http.get("/invocations", params={"worker": "counter/q"}).json()
    assert [i["id"] for i in listed] == [rec["id"]]
    assert server.http.get("/invocations", params={"state": "queued"}).json() == []


def test_invocations_of_one_worker_run_in_arrival_order(server):
    ids = [_enqueue(server, "counter/o", "add", str(n)).json()["id"] for n in (1, 10, 100)]
    recs = [_done(server, i) for i in ids]
    # Each saw the total of those enqueued before it (add returns the new total).
    assert [r["results"][0]["value"] for r in recs] == [1, 11, 111]


def test_a_failing_enqueued_invocation_records_the_error(server):
    rec = _enqueue(server, "counter/f", "add_then_trap", "1").json()
    done = _done(server, rec["id"])
    assert done["state"] == "failed"
    assert done["error"]["code"].startswith("invocation-failed") and done["error"]["message"]
    assert server.get("counter/f") == 0  # the worker kept its state from before


def test_a_schedule_given_with_in_runs_by_itself_through_the_cli(server):
    out = _cli(server.home, "invoke", "counter/s", "add", "4", "--in", "2s")
    assert out.returncode == 0, out.stderr
    m = re.match(r"scheduled invocation (inv-\S+): add on counter/s at ", out.stdout)
    assert m, out.stdout
    rec = server.http.get(f"/invocations/{m.group(1)}").json()
    assert rec["due_at"] - rec["created_at"] == pytest.approx(2.0, abs=0.5)
    done = _done(server, m.group(1))
    assert done["state"] == "ok" and done["started_at"] >= done["due_at"]  # never early
    assert server.get("counter/s") == 4


def test_a_schedule_stored_without_a_server_runs_once_one_starts(store, guests):
    assert _cli(store, "deploy", str(guests["counter"])).returncode == 0
    out = _cli(store, "--json", "invoke", "counter/l", "add", "6", "--in", "0s")
    assert out.returncode == 0, out.stderr
    inv_id = json.loads(out.stdout)["id"]
    text = _cli(store, "invoke", "counter/l", "add", "1", "--at", "2000-01-01T00:00")
    assert "runs when `golemish serve` is running" in text.stdout, text.stderr
    s = Server(store)
    try:
        assert _done(s, inv_id)["state"] == "ok"
        _wait_for(lambda: s.http.get("/invocations", params={"state": "ok"}).json()
                  .__len__() == 2)
        assert s.get("counter/l") == 7
    finally:
        assert s.stop() == 0


def test_a_schedule_survives_sigkill_between_run_and_mark_done_and_runs_once(store, guests):
    assert _cli(store, "deploy", str(guests["counter"])).returncode == 0
    assert _cli(store, "invoke", "counter/x", "add", "5").returncode == 0
    out = _cli(store, "--json", "invoke", "counter/x", "add", "2", "--in", "1s")
    inv_id = json.loads(out.stdout)["id"]
    # The server dies after the invocation's result is recorded and before the queue
    # says it ran: a naive restart would run it a second time.
    s = Server(store, env={"GOLEMISH_CRASH_AT": "after-invocation:1"})
    s.http.close()
    s.proc.communicate(timeout=60)
    assert s.proc.returncode == -signal.SIGKILL
    s = Server(store)
    try:
        rec = _done(s, inv_id)
        assert rec["state"] == "ok" and rec["deduplicated"] is True  # the recorded result
        assert rec["results"] == [{"type": "i64", "value": 7}]
        assert s.get("counter/x") == 7  # 5 + 2, once
        starts = [e for e in s.http.get("/workers/counter/x/oplog").json()
                  if e["kind"] == "invoke" and e["function"] == "add"]
        assert len(starts) == 2
    finally:
        assert s.stop() == 0


def test_a_pending_schedule_survives_sigkill_of_the_server(store, guests):
    assert _cli(store, "deploy", str(guests["counter"])).returncode == 0
    s = Server(store)
    rec = _enqueue(s, "counter/k", "add", "9", delay_s=3600).json()
    assert rec["state"] == "queued"
    s.stop(signal.SIGKILL)
    s = Server(store)
    try:
        back = s.http.get(f"/invocations/{rec['id']}").json()
        assert back["state"] == "queued" and back["due_at"] == rec["due_at"]
        assert _metric(s.http.get("/metrics").text, "golemish_scheduled_invocations") == 1
    finally:
        assert s.stop() == 0


def test_the_oplog_filters_by_kind_and_searches_text(server):
    for n in (1, 2, 3):
        server.invoke("counter/o", "add", str(n))
    ops = server.http.get("/workers/counter/o/oplog", params={"kind": "invoke"}).json()
    assert [e["function"] for e in ops] == ["add", "add", "add"]
    both = server.http.get("/workers/counter/o/oplog", params={"kind": "invoke,return"}).json()
    assert {e["kind"] for e in both} == {"invoke", "return"} and len(both) == 6
    found = server.http.get("/workers/counter/o/oplog", params={"q": "TOTAL 3"}).json()
    assert len(found) == 1 and found[0]["kind"] == "log" and "total 3" in json.dumps(found)
    page = server.http.get("/workers/counter/o/oplog", params={"kind": "invoke", "limit": 1})
    assert len(page.json()) == 1
    nxt = int(page.headers["X-Next-Start"])
    rest = server.http.get("/workers/counter/o/oplog",
                           params={"kind": "invoke", "start": nxt}).json()
    assert len(rest) == 2 and rest[0]["index"] > page.json()[0]["index"]
    bad = server.http.get("/workers/counter/o/oplog", params={"kind": "nope"})
    assert bad.status_code == 400 and "host-call" in bad.json()["error"]["message"]


def test_a_worker_is_created_with_args_env_and_limits(server):
    wasm = bytes(wasmtime.wat2wasm(PROBE))
    assert server.http.post("/components", params={"name": "probe"},
                            content=wasm).status_code == 201
    body = {"component": "probe", "name": "p", "args": ["one", "two"],
            "env": {"KEY": "v", "OTHER": "w"}, "memory_limit": 8 << 20, "time_limit": 5}
    r = server.http.post("/workers", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "probe/p" and r.json()["memory_limit"] == 8 << 20
    assert r.json()["time_limit"] == 5
    value = lambda f: server.invoke("probe/p", f).json()["results"][0]["value"]  # noqa: E731
    assert value("env_count") == 2 and value("env_first_byte") == ord("K")
    assert value("arg_count") >= 2  # the arguments reached the guest
    create = server.http.get("/workers/probe/p/oplog", params={"kind": "create"}).json()[0]
    assert "one" in json.dumps(create) and "KEY" in json.dumps(create)
    twice = server.http.post("/workers", json=body)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "exists"
    missing = server.http.post("/workers", json={"component": "nope", "name": "a"})
    assert missing.status_code == 404


def test_snapshot_and_config_endpoints(server):
    server.invoke("counter/c", "add", "2")
    snap = server.http.post("/workers/counter/c/snapshot", json={"full": True})
    assert snap.status_code == 201, snap.text
    assert snap.json()["kind"] == "snapshot" and snap.json()["index"] > 1
    assert server.http.get("/workers/counter/c").json()["snapshots"] >= 1
    cfg = server.http.get("/workers/counter/c/config").json()
    assert cfg["worker"] == "counter/c" and cfg["http_allow"] == []
    put = server.http.put("/workers/counter/c/config",
                          json={"snapshot_policy": "every:3", "http_allow": ["example.com"]})
    assert put.status_code == 200, put.text
    assert put.json()["snapshot_policy"] == "every:3"
    assert put.json()["http_allow"] == ["example.com"]
    shrink = server.http.put("/workers/counter/c/config", json={"http_allow": []})
    assert shrink.json()["http_allow"] == [] and shrink.json()["snapshot_policy"] == "every:3"
    assert server.get("counter/c") == 2  # the worker still works after its reload


def test_metrics_move_with_invocations(server):
    before = server.http.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    ok0 = _metric(before.text, "golemish_invocations_total", component="counter", outcome="ok")
    for n in range(3):
        server.invoke("counter/m", "add", str(n))
    server.invoke("counter/m", "add_then_trap", "1")
    server.http.post("/workers/counter/m/snapshot")
    after = server.http.get("/metrics").text
    assert _metric(after, "golemish_invocations_total", component="counter",
                   outcome="ok") == ok0 + 3
    assert _metric(after, "golemish_invocations_total", component="counter",
                   outcome="error") >= 1
    assert _metric(after, "golemish_invocation_seconds_count", component="counter") >= 4
    assert _metric(after, "golemish_recoveries_total", mode="fresh") >= 1
    assert _metric(after, "golemish_snapshots_total") >= 1
    assert _metric(after, "golemish_snapshot_bytes_total") > 0
    assert _metric(after, "golemish_oplog_append_seconds_count") > 0
    assert _metric(after, "golemish_commit_batch_entries_count") > 0
    assert _metric(after, "golemish_workers", state="resident") >= 1
    for name in ("golemish_workers", "golemish_pending_timers", "golemish_pending_promises",
                 "golemish_scheduled_invocations", "golemish_fsync_seconds",
                 "golemish_recovery_seconds", "golemish_snapshot_seconds"):
        assert f"# TYPE {name} " in after


def test_docs_is_a_self_contained_page_naming_every_route(server):
    r = server.http.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<script" not in r.text and "http://" not in r.text and "https://" not in r.text
    for path in server.http.get("/openapi.json").json()["paths"]:
        assert f"<code>{path}</code>" in r.text


W = "/workers/counter/a"
BAD_INPUT = [
    ("POST", f"{W}/invocations", {"args": ["1"]}, 400, "bad-argument"),
    ("POST", f"{W}/invocations", {"function": "add", "args": ["x"]}, 400, "bad-argument"),
    ("POST", f"{W}/invocations", {"function": "nope"}, 404, "not-found"),
    ("POST", f"{W}/invocations", {"function": "add", "args": ["1"], "at": "tomorrow"}, 400,
     "bad-argument"),
    ("POST", f"{W}/invocations", {"function": "add", "args": ["1"], "delay_s": -1}, 400,
     "bad-argument"),
    ("POST", f"{W}/invocations", {"function": "add", "args": ["1"], "at": 1, "delay_s": 1},
     400, "bad-argument"),
    ("POST", "/workers/counter/a!/invocations", {"function": "add"}, 400, "bad-argument"),
    ("GET", "/invocations/inv-0-none", None, 404, "not-found"),
    ("GET", "/invocations?state=done", None, 400, "bad-argument"),
    ("POST", "/workers", {"component": "counter"}, 400, "bad-argument"),
    ("POST", "/workers", {"component": "counter", "name": "b", "memory_limit": -1}, 400,
     "bad-argument"),
    ("POST", "/workers", {"component": "counter", "name": "b", "env": {"A": 1}}, 400,
     "bad-argument"),
    ("POST", "/workers", {"component": "counter", "name": "b", "args": "x"}, 400,
     "bad-argument"),
    ("POST", "/workers", [1, 2], 400, "bad-json"),
    ("POST", "/workers", {"component": "counter", "name": "a b"}, 400, "bad-argument"),
    ("POST", f"{W}/snapshot", {"full": "yes"}, 400, "bad-argument"),
    ("POST", "/workers/counter/none/snapshot", None, 404, "not-found"),
    ("GET", "/workers/counter/none/config", None, 404, "not-found"),
    ("PUT", f"{W}/config", {"snapshot_policy": "sometimes"}, 400, "bad-argument"),
    ("PUT", f"{W}/config", {"colour": "red"}, 400, "bad-argument"),
    ("PUT", f"{W}/config", {"http_allow": "example.com"}, 400, "bad-argument"),
    ("GET", f"{W}/oplog?kind=", None, 400, "bad-argument"),
    ("GET", "/components/counter?version=x", None, 400, "bad-argument"),
    ("GET", "/components/counter?version=7", None, 404, "not-found"),
]


def test_bad_input_on_the_new_routes_gets_4xx_json(server):
    server.invoke("counter/a", "add", "1")
    for method, path, body, status, code in BAD_INPUT:
        r = server.http.request(method, path, json=body)
        assert r.status_code == status, (method, path, body, r.text)
        err = r.json()["error"]
        assert err["code"] == code and err["message"] and "\n" not in err["message"], \
            (method, path, err)


def test_an_enqueued_invocation_that_sleeps_finishes_when_it_wakes(store, guests):
    s = Server(store)
    try:
        s.http.post("/components", params={"name": "agent"},
                    content=guests["agent"].read_bytes())
        first = _enqueue(s, "agent/n", "nap", "3000").json()  # longer than suspend_after_s
        second = _enqueue(s, "agent/n", "nap", "1").json()
        _wait_for(lambda: s.http.get(f"/invocations/{first['id']}").json()["state"]
                  == "suspended")
        assert s.http.get(f"/invocations/{second['id']}").json()["state"] == "queued"
        done = _done(s, first["id"])
        assert done["state"] == "ok" and done["deduplicated"] is True  # its own result
        assert _done(s, second["id"])["state"] == "ok"
        assert done["finished_at"] <= s.http.get(
            f"/invocations/{second['id']}").json()["started_at"]  # in arrival order
        ends = [e for e in s.http.get("/workers/agent/n/oplog").json() if e["kind"] == "return"]
        assert len(ends) == 2
    finally:
        assert s.stop() == 0
