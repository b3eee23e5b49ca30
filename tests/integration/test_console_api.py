"""The console's static pages and JSON routes (runtime/server/console_api.py), over HTTP
against a real server process; the pages themselves are tested in tests/browser/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from console_kit import ROOT, ConsoleServer, populate


@pytest.fixture
def console(tmp_path: Path, guests):
    server = ConsoleServer(str(tmp_path / "store"))
    promise = populate(server, guests)
    yield server, promise
    if server.proc.poll() is None:
        assert server.stop() == 0


def test_the_shell_and_its_assets_are_served_with_a_strict_policy(console):
    server, _ = console
    page = server.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for name in ("app.js", "core.js", "worker.js", "dashboard.js", "invoke.js"):
        r = server.http.get(f"/console/assets/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert server.http.get("/console/assets/style.css").headers["content-type"].startswith(
        "text/css")
    for bad in ("nope.js", "..%2Fconsole_api.py", "console_api.py", "%2e%2e%2fapp.py"):
        r = server.http.get(f"/console/assets/{bad}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "no-route", bad


def test_the_oplog_route_filters_by_kind_and_searches_text(console):
    server, _ = console
    whole = server.http.get("/workers/counter/alice/oplog", params={"limit": 1000}).json()
    page = server.http.get("/console/api/workers/counter/alice/oplog",
                           params={"start": 1, "limit": 1000}).json()
    assert [e["index"] for e in page["entries"]] == [e["index"] for e in whole]
    assert page["last_index"] == len(whole) and page["next"] is None
    assert all(e["summary"] for e in page["entries"])
    logs = server.http.get("/console/api/workers/counter/alice/oplog",
                           params={"kind": "log"}).json()["entries"]
    assert [e["data"] for e in logs] == [e["data"] for e in whole if e["kind"] == "log"]
    assert len(logs) == 5
    found = server.http.get("/console/api/workers/counter/alice/oplog",
                            params={"q": "TOTAL 15"}).json()["entries"]
    assert [e["kind"] for e in found] == ["log"] and "add 3 -> total 15" in found[0]["data"]
    two = server.http.get("/console/api/workers/counter/alice/oplog",
                          params={"kind": "invoke", "limit": 2}).json()
    assert len(two["entries"]) == 2 and two["next"] == two["entries"][-1]["index"] + 1
    rest = server.http.get("/console/api/workers/counter/alice/oplog",
                           params={"kind": "invoke", "start": two["next"]}).json()
    assert len(two["entries"]) + len(rest["entries"]) == 5 and rest["next"] is None
    paged = server.http.get("/console/api/workers/counter/alice/oplog",
                            params={"start": 3, "limit": 4}).json()
    assert [e["index"] for e in paged["entries"]] == [3, 4, 5, 6] and paged["next"] == 7
    assert server.http.get("/console/api/workers/counter/nobody/oplog").status_code == 404
    assert server.http.get("/console/api/workers/counter/alice/oplog",
                           params={"limit": 0}).status_code == 400


def test_the_snapshots_route_lists_the_apis_snapshots_and_reverts(console):
    """The console lists snapshots itself; taking one and reverting are the API's routes."""
    server, _ = console
    snaps = server.http.get("/console/api/workers/counter/alice/snapshots").json()
    assert len(snaps) == 1 and snaps[0]["kept"] and snaps[0]["memory_size"] > 0
    taken = server.http.post("/workers/counter/alice/snapshot", json={"full": True})
    assert taken.status_code == 201, taken.text
    length = server.http.get("/workers/counter/alice").json()["oplog_length"]
    assert taken.json()["index"] == length and taken.json()["kind"] == "snapshot"
    assert [s["index"] for s in server.http.get(
        "/console/api/workers/counter/alice/snapshots").json()] == [snaps[0]["index"], length]
    for body in ({}, {"to_index": 3, "last_invocations": 1}, {"to_index": "3"},
                 {"to_index": -1}, {"last_invocations": True}):
        r = server.http.post("/workers/counter/alice/revert", json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad-argument", body
    r = server.http.post("/workers/counter/alice/revert", json={"last_invocations": 2})
    assert r.status_code == 200, r.text
    assert r.json()["undone"] == 2
    assert server.ok("counter/alice", "get")["results"][0]["value"] == 15
    assert server.http.get("/console/api/workers/counter/ghost/snapshots").status_code == 404


def test_functions_residency_and_summary(console):
    server, promise = console
    core = server.http.get("/console/api/components/counter/functions").json()
    add = next(f for f in core["functions"] if f["name"] == "add")
    assert add == {"name": "add", "signature": "add(i64) -> i64", "typed": False,
                   "params": [{"name": "arg0", "type": "i64"}], "result": "i64"}
    assert not any(f["name"].startswith(("_initialize", "cabi_")) for f in core["functions"])
    typed = server.http.get("/console/api/components/cart/functions").json()["functions"]
    checkout = next(f for f in typed if f["name"] == "checkout")
    assert checkout["params"] == [{"name": "coupon", "type": "option<string>"}]
    assert checkout["result"] == "result<u64, string>" and checkout["typed"]
    assert server.http.get("/console/api/components/nope/functions").status_code == 404
    residency = server.http.get("/console/api/residency").json()
    assert set(residency) == {"counter/alice", "counter/bob", "cart/shop", "agent/approver"}
    summary = server.http.get("/console/api/summary").json()
    assert summary["workers"] == 4 and summary["workers_by_status"] == {
        "idle": 3, "suspended": 1}
    assert summary["promises"] == {"pending": 1} and summary["components"] == 3
    total = sum(server.http.get(f"/workers/{w}").json()["oplog_length"] for w in residency)
    assert summary["oplog_entries"] == total


def test_a_restarted_server_reports_the_recovery_of_a_worker(tmp_path: Path, guests):
    server = ConsoleServer(str(tmp_path / "store"))
    server.deploy("counter", guests["counter"])
    server.ok("counter/a", "add", "4")
    assert server.stop() == 0
    server = ConsoleServer(str(tmp_path / "store"))
    try:
        assert server.http.get("/console/api/residency").json() == {}  # nothing loaded yet
        server.ok("counter/a", "add", "1")
        rec = server.http.get("/console/api/residency").json()["counter/a"]["recovery"]
        assert rec["mode"] == "replay" and rec["entries"] >= 5 and rec["at"] > 0
        assert rec["describe"].startswith("recovered by replay of")
    finally:
        assert server.stop() == 0


def test_the_package_build_ships_the_console(tmp_path: Path):
    """setuptools' build_py (the step a wheel build runs) on a copy of the sources
    copies every console file: the package-data globs in pyproject.toml cover them."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("oplog", "runtime"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                    "build_py", "--build-lib", str(tmp_path / "lib")],
                   cwd=src, check=True, capture_output=True)
    built = {p.name for p in (tmp_path / "lib/golemish/runtime/server/console").iterdir()}
    shipped = {p.name for p in (ROOT / "runtime/server/console").iterdir()}
    assert shipped >= {"index.html", "app.js", "core.js", "worker.js", "dashboard.js",
                       "invoke.js", "style.css"}
    assert built == shipped
