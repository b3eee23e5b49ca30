"""A real `golemish serve`: idle and max-memory eviction, live logs, and its lifecycle
(--detach, server status/stop, a stale server.json, a bounded drain that parks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import golemish_cmd
from serverproc import ServerProc


def until(cond, what: str, timeout: float = 30.0):
    """Poll ``cond`` until it gives a true value (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def dead(pid: int) -> bool:
    """Exited (a zombie counts: a detached server's parent is gone, nobody may reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def store(home: str, guests) -> str:
    subprocess.run([*golemish_cmd(), "--home", home, "deploy", str(guests["counter"])],
                   check=True, capture_output=True)
    return home


def cli(home: str, *args: str, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("GOLEMISH_SERVER", "GOLEMISH_SERVER_TOKEN")}
    return subprocess.run([*golemish_cmd(), "--home", home, *args], capture_output=True,
                          text=True, timeout=timeout, env={**full, **(env or {})})


def test_an_idle_worker_is_evicted_and_the_next_invocation_restores_it(store):
    s = ServerProc(store, "--idle-timeout", "0.3")
    try:
        assert s.invoke("counter/a", "add", "5").status_code == 200
        until(lambda: s.http.get("/server").json()["evicted_total"] >= 1, "the eviction")
        st = s.http.get("/server").json()
        assert st["resident"] == [] and st["workers_resident"] == 0
        info = s.http.get("/workers/counter/a").json()
        assert info["resident"] is False and info["snapshots"] >= 1
        shown = cli(store, "worker", "show", "counter/a")
        assert shown.returncode == 0 and "resident:       no" in shown.stdout
        r = s.invoke("counter/a", "add", "2")
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["value"] == 7  # the counter continues
        rec = r.json()["recovery"]
        assert rec["mode"].startswith("snapshot") and rec["entries"] == 0
        assert s.http.get("/workers/counter/a").json()["invocations"] == 2
    finally:
        assert s.stop() == 0


def test_max_memory_evicts_the_least_recently_used_worker(store):
    # Each counter holds 1152 KiB of linear memory: two fit in 2.5 MiB, three do not.
    s = ServerProc(store, "--idle-timeout", "0", "--max-memory", "2.5M")
    try:
        for w, n in (("counter/a", "1"), ("counter/b", "2"), ("counter/c", "3")):
            assert s.invoke(w, "add", n).status_code == 200
        until(lambda: s.http.get("/server").json()["evicted_total"] == 1, "one eviction")
        assert s.http.get("/server").json()["resident"] == ["counter/b", "counter/c"]
        assert s.get("counter/a") == 1  # restored; now b is the least recently used
        until(lambda: s.http.get("/server").json()["evicted_total"] == 2, "a second one")
        assert s.http.get("/server").json()["resident"] == ["counter/a", "counter/c"]
        assert [s.get(w) for w in ("counter/b", "counter/c")] == [2, 3]
    finally:
        assert s.stop() == 0


def _events(resp: httpx.Response, n: int) -> list[dict]:
    out = []
    for line in resp.iter_lines():
        if line.startswith("data:"):
            out.append(json.loads(line[5:]))
            if len(out) == n:
                break
    return out


def test_a_follower_sees_output_in_order_as_it_is_recorded_and_from_resumes(store):
    s = ServerProc(store, "--idle-timeout", "0")
    try:
        assert s.invoke("counter/a", "add", "1").status_code == 200
        follower = subprocess.Popen(  # noqa: SIM115 - closed in finally
            [*golemish_cmd(), "--home", store, "worker", "logs", "counter/a", "--follow"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")))
        reader.start()
        until(lambda: len(lines) >= 1, "the recorded output")
        for n in ("2", "3"):
            assert s.invoke("counter/a", "add", n).status_code == 200
        until(lambda: len(lines) >= 3, "the new output")
        assert lines == ["add 1 -> total 1 (entry 1)\n", "add 2 -> total 3 (entry 2)\n",
                         "add 3 -> total 6 (entry 3)\n"]

        # The stream over HTTP: each event carries its oplog index; --from resumes.
        with s.http.stream("GET", "/workers/counter/a/logs", params={"follow": "1"}) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            evs = _events(resp, 3)
        assert [e["text"] for e in evs] == [ln for ln in lines]
        idx = [e["index"] for e in evs]
        assert idx == sorted(idx)
        after = cli(store, "worker", "logs", "counter/a", "--from", str(idx[1] + 1))
        assert after.returncode == 0 and after.stdout == lines[2]
        with s.http.stream("GET", "/workers/counter/a/logs", params={"follow": "1"},
                           headers={"Last-Event-ID": str(idx[0])}) as resp:
            assert [e["index"] for e in _events(resp, 2)] == idx[1:]
        assert s.http.get("/workers/counter/a/logs", params={"from": "x"}).status_code == 400
        assert s.http.get("/workers/counter/zz/logs").status_code == 404

        # SIGTERM ends the follower's stream, so the drain does not wait for it.
        assert s.stop() == 0
        assert follower.wait(30) == 0
        reader.join(10)
        assert "stream ended: server stopping" in follower.stderr.read()
    finally:
        if s.proc.poll() is None:
            s.stop()
        if follower.poll() is None:
            follower.kill()
        follower.wait(10)
        follower.stdout.close()
        follower.stderr.close()


def test_logs_without_a_server(store):
    assert cli(store, "invoke", "counter/a", "add", "4").returncode == 0
    r = cli(store, "worker", "logs", "counter/a")
    assert r.returncode == 0 and r.stdout == "add 4 -> total 4 (entry 1)\n"
    r = cli(store, "--json", "worker", "logs", "counter/a")
    assert [e["text"] for e in json.loads(r.stdout)] == ["add 4 -> total 4 (entry 1)\n"]
    r = cli(store, "worker", "logs", "counter/a", "--follow")
    assert r.returncode == 1 and "--follow streams from a running server" in r.stderr
    assert cli(store, "worker", "logs", "counter/zz").stderr == "error: no worker counter/zz\n"


def test_detach_status_stop_and_a_token(store):
    env = {"GOLEMISH_SERVER_TOKEN": "t0ken"}
    r = cli(store, "serve", "--detach", "--listen", "127.0.0.1:0", env=env)
    assert r.returncode == 0, r.stderr
    info = json.loads((Path(store) / "server.json").read_text())
    assert f"on {info['url']} (pid {info['pid']}" in r.stdout
    assert (Path(store) / "server.log").exists()
    try:
        again = cli(store, "serve", "--detach", "--listen", "127.0.0.1:0", env=env)
        assert again.returncode == 1 and "a server already serves" in again.stderr
        assert cli(store, "invoke", "counter/a", "add", "3", env=env).stdout == \
            "add 3 -> total 3 (entry 1)\n3\n"
        no_token = cli(store, "worker", "list")
        assert no_token.returncode == 1
        assert no_token.stderr == "error: missing or wrong bearer token (Authorization header)\n"
        st = cli(store, "server", "status", env=env)
        assert st.returncode == 0 and f"pid {info['pid']}" in st.stdout
        assert "1 worker(s) resident" in st.stdout
        js = json.loads(cli(store, "--json", "server", "status", env=env).stdout)
        assert js["resident"] == ["counter/a"] and js["pid"] == info["pid"]
        stop = cli(store, "server", "stop", env=env)
        assert stop.returncode == 0 and f"pid {info['pid']}" in stop.stdout
        assert not (Path(store) / "server.json").exists()
        assert dead(info["pid"])
        gone = cli(store, "server", "status")
        assert gone.returncode == 1 and "no server serves" in gone.stderr
        assert cli(store, "worker", "show", "counter/a").returncode == 0  # in-process again
    finally:
        try:
            os.kill(info["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    public = cli(store, "serve", "--detach", "--listen", "0.0.0.0:0")
    assert public.returncode == 1 and "reachable from other machines" in public.stderr


def test_a_stale_server_json_is_removed_with_a_notice(store):
    r = cli(store, "serve", "--detach", "--listen", "127.0.0.1:0")
    assert r.returncode == 0, r.stderr
    record = Path(store) / "server.json"
    pid = json.loads(record.read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    until(lambda: dead(pid), "the server to die")
    assert record.exists()
    listed = cli(store, "worker", "list")
    assert listed.returncode == 0
    assert listed.stderr == (f"golemish: removed a stale server.json (server pid {pid} is not "
                             "running); working in-process\n")
    assert not record.exists()
    assert cli(store, "worker", "list").stderr == ""


def test_sigterm_parks_an_invocation_still_running_after_the_drain_timeout(store, guests):
    cli(store, "deploy", str(guests["agent"]))
    s = ServerProc(store, "--drain-timeout", "0.2")
    got: list[object] = []

    def nap() -> None:
        try:
            with httpx.Client(base_url=s.url, timeout=30) as http:
                got.append(s.invoke("agent/a", "nap", "1900", client=http))
        except httpx.HTTPError as e:
            got.append(e)

    t = threading.Thread(target=nap)
    t.start()
    until(lambda: s.http.get("/workers/agent/a").status_code == 200, "the nap to start")
    assert s.stop() == 0
    t.join(30)
    assert isinstance(got[0], httpx.HTTPError) or got[0].status_code >= 500  # no answer
    assert "parked" in s.out
    assert not (Path(store) / "server.json").exists()
    s2 = ServerProc(store)  # finishes the parked invocation at start
    try:
        until(lambda: s2.http.get("/workers/agent/a").json()["status"] == "idle",
              "the parked nap to finish")
        info = s2.http.get("/workers/agent/a").json()
        assert info["invocations"] == 1
        kinds = [e["kind"] for e in s2.http.get("/workers/agent/a/oplog").json()]
        assert kinds.count("invoke") == 1 and kinds.count("return") == 1
    finally:
        assert s2.stop() == 0
