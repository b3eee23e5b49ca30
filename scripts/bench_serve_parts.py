"""The long-running parts of scripts/bench_serve.py, one function each.

- ``sleepers``: durable sleep wake-up lateness with many sleeping workers;
- ``workers``: many workers created, evicted by idle eviction, touched again;
- ``restart``: restart-to-step-K of one long stackful invocation after kill -9.
Each starts its own server(s) on a fresh store and returns a JSON-able dict.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from golemish.runtime.server.record import wait_until_serving

EXE = [sys.executable, "-m", "golemish.runtime.cli"]
TARGET_WAKE_P99_MS = 20.0
TARGET_RESTORE_P50_MS = 5.0
TARGET_RESTART_S = 0.25


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GOLEMISH_")}


def spawn(home: Path, *extra: str, env: dict[str, str] | None = None,
          init: bool = True) -> tuple[subprocess.Popen, str]:
    if init:
        subprocess.run([*EXE, "--home", str(home), "store", "init"], check=True,
                       capture_output=True, env=_env())
    proc = subprocess.Popen([*EXE, "--home", str(home), "serve", "--listen", "127.0.0.1:0",
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**_env(), **(env or {})})
    url = wait_until_serving(str(home), proc, timeout=60)
    if url is None:
        proc.kill()
        raise SystemExit(f"server did not start: {proc.communicate()[1][-500:]!r}")
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)


def _client(url: str, client_cls: Any) -> Any:
    parts = urlsplit(url)
    return client_cls(parts.hostname or "127.0.0.1", parts.port or 80)


def _deploy(c: Any, name: str, wasm: bytes, stackful: bool = False) -> None:
    q = f"/components?name={name}" + ("&stackful=true" if stackful else "")
    c.conn.request("POST", q, wasm, {"Content-Type": "application/wasm"})
    c._answer()


def _raw(c: Any, method: str, path: str, body: dict[str, Any] | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    c.conn.request(method, path, data, {**({"Content-Type": "application/json"} if data
                                          else {}), **(headers or {})})
    r = c.conn.getresponse()
    raw = r.read()
    return r.status, json.loads(raw) if raw else None


def _parallel(n: int, clients: int, url: str, client_cls: Any, fn: Any) -> None:
    """fn(client, i) for i in range(n), split among ``clients`` threads."""
    failures: list[BaseException] = []

    def run(k: int) -> None:
        c = _client(url, client_cls)
        try:
            for i in range(k, n, clients):
                fn(c, i)
        except BaseException as e:
            failures.append(e)
        finally:
            c.close()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"a client failed: {failures[0]!r}")


def _pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] if len(samples) > 1 else samples[0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sleepers(tmp: Path, agent: bytes, client_cls: Any, n: int, window_s: float,
             gc_mode: str = "scheduled") -> dict[str, Any]:
    """n agent workers each in one durable `nap`, deadlines spread evenly over
    ``window_s``; lateness = the wall ms nap returns minus its recorded wake time.
    ``gc_mode``: the server's GOLEMISH_WAKE_GC (``python``: Python's own full
    garbage collections, at any moment; ``scheduled``: the waker's, between deadlines)."""
    from golemish.oplog import HostCall, InvokeEnd
    from golemish.runtime.executor import Runtime, RuntimeConfig
    home = tmp / f"sleepers-{gc_mode}"
    proc, url = spawn(home, env={"GOLEMISH_WAKE_GC": gc_mode})
    try:
        c = _client(url, client_cls)
        _deploy(c, "agent", agent)
        c.close()

        def create(c: Any, i: int) -> None:
            st, body = _raw(c, "POST", f"/workers/agent/s{i}/invoke",
                            {"function": "nap", "args": ["0"]})
            if st != 200:
                raise SystemExit(f"create failed: {st} {body}")
        t0 = time.perf_counter()
        _parallel(n, 8, url, client_cls, create)
        create_s = time.perf_counter() - t0
        # Deadlines: 3 s (past suspend_after_s) after the naps start, spaced evenly.
        first = time.time() + 3.0 + n * 0.004  # the naps take ~4 ms each to issue
        spacing = window_s / n

        def nap(c: Any, i: int) -> None:
            ms = int((first + i * spacing - time.time()) * 1000)
            st, body = _raw(c, "POST", f"/workers/agent/s{i}/invoke",
                            {"function": "nap", "args": [str(max(ms, 2500))]})
            if st != 202:
                raise SystemExit(f"nap did not suspend: {st} {body}")
        t0 = time.perf_counter()
        _parallel(n, 8, url, client_cls, nap)
        naps_s = time.perf_counter() - t0
        c = _client(url, client_cls)
        try:
            deadline = time.monotonic() + window_s + 120
            # Waiting must not load the server it measures: the worker list describes
            # every worker (oplog, snapshots), ~0.5 s of CPU with 1,000 of them. So
            # the last sleeper is watched first, then the list confirms all woke.
            last = f"/workers/agent/s{n - 1}"
            while _raw(c, "GET", last)[1].get("status") == "suspended":
                if time.monotonic() > deadline:
                    raise SystemExit("the last sleeper never woke")
                time.sleep(0.2)
            while True:
                st, left = _raw(c, "GET", "/workers?status=suspended")
                if not left:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{len(left)} sleepers never woke")
                time.sleep(0.2)
            rss = rss_kib(proc.pid)
        finally:
            c.close()
    finally:
        stop(proc)
    late = []
    with Runtime(RuntimeConfig(home=str(home), readonly=True)) as rt:
        for i in range(n):
            entries = [e for _, e in rt.oplog(f"agent/s{i}")]
            wake = [e for e in entries if isinstance(e, HostCall) and e.name == "sleep"][-1]
            wake_ns = int.from_bytes(wake.response, "little")
            returned_ms = [e for e in entries if isinstance(e, InvokeEnd)][-1].results[0][1]
            late.append(returned_ms - wake_ns / 1e6)
    return {"sleepers": n, "window_s": window_s, "gc_mode": gc_mode,
            "create_s": create_s, "naps_s": naps_s,
            "first_deadline_after_s": 3.0 + n * 0.004,
            "lateness_ms": {"p50": statistics.median(late), "p99": _pct(late, 99),
                            "max": max(late), "min": min(late)},
            "server_rss_mib": rss / 1024, "target_p99_ms": TARGET_WAKE_P99_MS,
            "note": "nap returns whole wall ms: lateness has 1 ms resolution"}


def sleepers_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per GC mode, the median over runs of each lateness figure; the top-level
    ``lateness_ms`` is the server default's (scheduled)."""
    by_mode = {}
    for mode, rs in runs.items():
        by_mode[mode] = {
            "runs": rs,
            "lateness_ms": {k: statistics.median(r["lateness_ms"][k] for r in rs)
                            for k in ("p50", "p99", "max", "min")},
            "server_rss_mib": statistics.median(r["server_rss_mib"] for r in rs)}
    first = runs["scheduled"][0]
    return {"sleepers": first["sleepers"], "window_s": first["window_s"],
            "lateness_ms": by_mode["scheduled"]["lateness_ms"],
            "python_gc_lateness_ms": by_mode["python"]["lateness_ms"],
            "server_rss_mib": by_mode["scheduled"]["server_rss_mib"],
            "by_gc_mode": by_mode, "target_p99_ms": TARGET_WAKE_P99_MS,
            "note": first["note"]}


def _resident(c: Any) -> int:
    c.conn.request("GET", "/metrics")
    r = c.conn.getresponse()
    text = r.read().decode()
    for line in text.splitlines():
        if line.startswith('golemish_workers{state="resident"}'):
            return int(float(line.split()[-1]))
    raise SystemExit("no golemish_workers metric")


def workers(tmp: Path, counter: bytes, client_cls: Any, n: int, samples: int) -> dict[str, Any]:
    """n counter workers created (add 1 each), evicted by idle eviction (1 s), then
    ``samples`` of them touched again one at a time: restore + invoke over HTTP."""
    home = tmp / "workers"
    proc, url = spawn(home, "--idle-timeout", "1")
    rss: dict[str, float] = {"started": rss_kib(proc.pid) / 1024}
    try:
        c = _client(url, client_cls)
        _deploy(c, "counter", counter)
        c.close()
        t0 = time.perf_counter()
        _parallel(n, 8, url, client_cls, lambda c, i: c.add(f"counter/w{i}"))
        create_s = time.perf_counter() - t0
        rss["created"] = rss_kib(proc.pid) / 1024
        c = _client(url, client_cls)
        try:
            deadline = time.monotonic() + 600
            while _resident(c) > 0:
                if time.monotonic() > deadline:
                    raise SystemExit("workers were not evicted")
                time.sleep(0.5)
            rss["evicted"] = rss_kib(proc.pid) / 1024
            step = max(1, n // samples)
            restore, hot = [], []
            for i in range(0, n, step)[:samples]:
                w = f"counter/w{i}"
                t = time.perf_counter()
                c.add(w)
                restore.append(time.perf_counter() - t)
                t = time.perf_counter()
                c.add(w)  # now resident: the hot cost of the same call, side by side
                hot.append(time.perf_counter() - t)
            rss["touched"] = rss_kib(proc.pid) / 1024
        finally:
            c.close()
    finally:
        stop(proc)
    return {"workers": n, "create_s": create_s, "create_per_s": n / create_s,
            "idle_timeout_s": 1.0, "rss_mib": rss,
            "restore_ms": {"p50": statistics.median(restore) * 1e3,
                           "p99": _pct(restore, 99) * 1e3, "n": len(restore)},
            "hot_ms": {"p50": statistics.median(hot) * 1e3, "p99": _pct(hot, 99) * 1e3},
            "target_restore_p50_ms": TARGET_RESTORE_P50_MS}


def restart(tmp: Path, journal: bytes, client_cls: Any, k: int, runs: int) -> dict[str, Any]:
    """One `clocks(k)` invocation of a stackful worker; the server is killed (SIGKILL,
    GOLEMISH_CRASH_AT=after-host-call:k) right after its k-th host call; a new server
    is spawned and the time to the invocation's completion is measured, ``runs`` times
    on fresh stores. Completion is what a client retrying the same request sees: the
    invocation carries an idempotency key, and the same request sent to the new server
    at once answers with the recorded result when the cut-off invocation has finished
    (it waits for the worker's turn; polling the worker's status instead would read its
    whole oplog again and again while the recovery runs)."""
    out = []
    for r in range(runs):
        home = tmp / f"restart{r}"
        proc, url = spawn(home)
        c = _client(url, client_cls)
        _deploy(c, "journal", journal, stackful=True)
        _raw(c, "POST", "/workers/journal/j/invoke", {"function": "count", "args": []})
        c.close()
        stop(proc)
        clocks, key = {"function": "clocks", "args": [str(k)]}, {"Idempotency-Key": f"r{r}"}
        proc, url = spawn(home, env={"GOLEMISH_CRASH_AT": f"after-host-call:{k}"}, init=False)
        c = _client(url, client_cls)
        try:
            _raw(c, "POST", "/workers/journal/j/invoke", clocks, key)
        except (ConnectionError, OSError, http_errors()):
            pass
        c.close()
        proc.wait(60)
        if proc.returncode != -signal.SIGKILL:
            raise SystemExit(f"the server was not killed mid-invocation: {proc.returncode}")
        t0 = time.perf_counter()
        proc, url = spawn(home, init=False)
        serving = time.perf_counter() - t0
        c = _client(url, client_cls)
        try:
            st, res = _raw(c, "POST", "/workers/journal/j/invoke", clocks, key)
            done = time.perf_counter() - t0
            if st != 200 or not res.get("deduplicated"):
                raise SystemExit(f"the retried request did not get the recorded result: "
                                 f"{st} {res}")
            st, info = _raw(c, "GET", "/workers/journal/j")
            if info["invocations"] != 2 or "finished the interrupted" not in info.get(
                    "last_recovery", ""):
                raise SystemExit(f"the cut-off invocation was not finished once: {info}")
        finally:
            c.close()
            stop(proc)
        out.append({"spawn_to_serving_s": serving, "spawn_to_done_s": done,
                    "last_recovery": info.get("last_recovery")})
    return {"k": k, "runs": out, "spawn_to_done_s": statistics.median(
        x["spawn_to_done_s"] for x in out), "spawn_to_serving_s": statistics.median(
        x["spawn_to_serving_s"] for x in out), "target_s": TARGET_RESTART_S}


def http_errors() -> type[BaseException]:
    import http.client
    return http.client.HTTPException
