"""Hot invocations of `golemish serve` over HTTP: latency, throughput, fsyncs.

Starts two real servers at once on fresh stores (127.0.0.1, ephemeral ports), one
default and one with --sync, deploys the counter guest on both and measures them
side by side in one run, alternating between them (ABBA) so that the drift of a
shared machine falls on both alike:
- latency of `add 1` on one warm worker, 1 client: p50, p99;
- throughput at 1, 8 and 64 concurrent clients over 100 workers (the workers are
  split among the clients, so no two clients wait on one worker's turn);
- per invocation: commits and fsyncs, read from the servers' commit counters
  (GET /health, from oplog/stats.py), and the mean number of commits per fsync
  (group commit: concurrent commits share one fsync).
Clients are keep-alive HTTP/1.1 connections (http.client, the cheapest client in
the standard library), one thread each, in this process: on a 2-core machine
they compete with the server for the CPU, which the table notes. At 64 connections
the lean client of scripts/loadgen.py (one event loop in its own process, ~40 µs of
CPU per request against several hundred) runs too, so that nearly all the machine
goes to the server.
- start-up: `golemish --help`, `golemish invoke` in-process and through a server,
  and `golemish serve` from spawn to its first served invocation (also alone with
  --startup-only, which writes scripts/results/bench_serve_startup.json).
- sleepers: wake-up lateness of 1,000 workers in a durable sleep (p50, p99);
- workers: 10,000 counter workers created, evicted (idle eviction) and touched
  again: server RSS, restore latency of an evicted worker;
- restart: restart-to-step-K of one 10,000-step stackful invocation after kill -9.
(These three are in scripts/bench_serve_parts.py.) ``--only PART,...`` runs some of
startup, hot, sleepers, workers, restart; the JSON keeps the parts not run.
Prints a table and writes JSON (scripts/results/bench_serve.json).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
import bench_serve_parts as parts  # noqa: E402
from golemish.runtime.server.record import wait_until_serving  # noqa: E402

DEFAULT_OUT = benchlib.ROOT / "scripts" / "results" / "bench_serve.json"
WORKERS = 100
CLIENTS = (1, 8, 64)
#: Connections of the lean load generator (scripts/loadgen.py).
LEAN_CLIENTS = 64
#: Targets from issue 11.
TARGET_P50_MS = 1.0
TARGET_SYNC_64_PER_S = 2000
PARTS = ("startup", "hot", "sleepers", "workers", "restart")


class Server:
    def __init__(self, home: Path, sync: bool, env: dict[str, str]) -> None:
        exe = [sys.executable, "-m", "golemish.runtime.cli"]
        subprocess.run([*exe, "--home", str(home), "store", "init"], check=True,
                       capture_output=True)
        self.sync = sync
        self.proc = subprocess.Popen(
            [*exe, "--home", str(home), *(["--sync"] if sync else []), "serve", "--listen",
             "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, **env})
        url = wait_until_serving(str(home), self.proc)
        if url is None:
            self.proc.kill()
            raise SystemExit(f"server did not start: {self.proc.stderr.read()!r}")
        self.url = url
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    @property
    def name(self) -> str:
        return "--sync" if self.sync else "default"

    def connect(self) -> Client:
        return Client(self.host, self.port)

    def counters(self) -> dict[str, float]:
        c = self.connect()
        try:
            return c.get("/health")["commits"]
        finally:
            c.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=60)


class Client:
    """One keep-alive connection; TCP_NODELAY, or Nagle and delayed ACKs add ~40 ms."""

    def __init__(self, host: str, port: int) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.conn.connect()
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        self.conn.request("POST", path, data, {"Content-Type": "application/json"})
        return self._answer()

    def get(self, path: str) -> dict[str, Any]:
        self.conn.request("GET", path)
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        r = self.conn.getresponse()
        raw = r.read()
        if r.status not in (200, 201):
            raise SystemExit(f"request failed: {r.status} {raw[:200]!r}")
        return json.loads(raw)

    def add(self, worker: str) -> None:
        self.post(f"/workers/{worker}/invoke", {"function": "add", "args": ["1"]})

    def close(self) -> None:
        self.conn.close()


def deploy(server: Server, wasm: bytes) -> None:
    c = server.connect()
    try:
        c.conn.request("POST", "/components?name=counter", wasm,
                       {"Content-Type": "application/wasm"})
        c._answer()
        for i in range(WORKERS):
            c.add(f"counter/w{i}")  # created and warm before anything is measured
        c.add("counter/lat")
    finally:
        c.close()


def latency(server: Server, n: int) -> list[float]:
    c = server.connect()
    try:
        for _ in range(20):
            c.add("counter/lat")
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            c.add("counter/lat")
            samples.append(time.perf_counter() - t0)
        return samples
    finally:
        c.close()


def throughput(server: Server, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads for ``seconds``; client i invokes workers i, i+clients, …"""
    counts = [0] * clients
    stop = threading.Event()
    barrier = threading.Barrier(clients + 1)
    failures: list[BaseException] = []

    def client(i: int) -> None:
        mine = [f"counter/w{j}" for j in range(i, WORKERS, clients)]
        c = server.connect()
        try:
            barrier.wait()
            k = 0
            while not stop.is_set():
                c.add(mine[k % len(mine)])
                k += 1
                counts[i] += 1
        except BaseException as e:
            failures.append(e)
            raise
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    before = server.counters()
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - t0
    after = server.counters()
    if failures:
        raise SystemExit(f"a client failed: {failures[0]!r}")
    n = sum(counts)
    d = {k: after[k] - before[k] for k in after}
    return {"clients": clients, "invocations": n, "seconds": elapsed, "per_s": n / elapsed,
            "commits_per_invocation": d["commits"] / n if n else None,
            "fsyncs_per_invocation": d["fsyncs"] / n if n else None,
            "commits_per_fsync": d["fsync_batches"] / d["fsyncs"] if d["fsyncs"] else None,
            "fsync_ms_mean": d["fsync_seconds"] / d["fsyncs"] * 1e3 if d["fsyncs"] else None}


def throughput_lean(server: Server, clients: int, seconds: float) -> dict[str, Any]:
    """As throughput(), with scripts/loadgen.py as the client: ``clients`` keep-alive
    connections on one event loop in a process of its own, a few tens of µs of CPU per
    request instead of several hundred, so the server gets the machine's CPUs."""
    before = server.counters()
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("loadgen.py")),
                          server.host, str(server.port), str(clients), str(seconds),
                          str(WORKERS)], capture_output=True, text=True, timeout=seconds + 120)
    after = server.counters()
    if out.returncode != 0:
        raise SystemExit(f"loadgen failed: {out.stderr[-500:]}")
    res = json.loads(out.stdout)
    n = res["invocations"]
    if res["errors"] or res["lost"] or not n:
        raise SystemExit(f"loadgen: {res} {out.stderr[-300:]}")
    d = {k: after[k] - before[k] for k in after}
    return {"clients": clients, "invocations": n, "seconds": res["seconds"],
            "per_s": n / res["seconds"], "fsyncs_per_invocation": d["fsyncs"] / n}


def _timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def startup(wasm: bytes, runs: int) -> dict[str, Any]:
    """Start-up, spawn to exit (medians of ``runs``, measured side by side): the bare
    interpreter, `golemish --help`, `golemish invoke` in-process and through a server,
    and `golemish serve` from spawn to its first served invocation."""
    exe = [sys.executable, "-m", "golemish.runtime.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLEMISH_")}
    samples: dict[str, list[float]] = {k: [] for k in (
        "python -c pass", "golemish --help", "invoke in-process", "invoke via server",
        "serve to first invocation")}
    with tempfile.TemporaryDirectory(prefix="golemish-bench-startup-") as tmp:
        local, served = Path(tmp) / "local", Path(tmp) / "served"
        for home in (local, served):
            (Path(tmp) / "c.wasm").write_bytes(wasm)
            subprocess.run([*exe, "--home", str(home), "deploy", str(Path(tmp) / "c.wasm"),
                            "--name", "counter"], check=True, capture_output=True, env=env)
        for _ in range(runs):
            samples["python -c pass"].append(_timed([sys.executable, "-c", "pass"], env))
            samples["golemish --help"].append(_timed([*exe, "--help"], env))
            samples["invoke in-process"].append(_timed(
                [*exe, "--home", str(local), "invoke", "counter/a", "add", "1"], env))
            t0 = time.perf_counter()
            proc = subprocess.Popen([*exe, "--home", str(served), "serve", "--listen",
                                     "127.0.0.1:0"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=env)
            url = wait_until_serving(str(served), proc, timeout=60)
            if url is None:
                proc.kill()
                raise SystemExit("server did not start")
            parts = urlsplit(url)
            c = Client(parts.hostname or "127.0.0.1", parts.port or 80)
            try:
                c.add("counter/first")
            finally:
                c.close()
            samples["serve to first invocation"].append(time.perf_counter() - t0)
            samples["invoke via server"].append(_timed(
                [*exe, "--home", str(served), "invoke", "counter/a", "add", "1"], env))
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    return {k: {"median_s": statistics.median(v), "runs": len(v)} for k, v in samples.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples, shorter runs")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--window-ms", type=float, default=None,
                   help="group commit window of the --sync server (GOLEMISH_COMMIT_WINDOW_MS)")
    p.add_argument("--startup-only", action="store_true",
                   help="only the start-up table (writes bench_serve_startup.json)")
    p.add_argument("--sleep-rounds", type=int, default=1, metavar="N",
                   help="sleepers: runs of each GC mode, alternating (default 1)")
    p.add_argument("--sleep-window", type=float, default=None, metavar="S",
                   help="sleepers: spread the wake deadlines over S seconds (default 20; "
                        "--quick 2)")
    p.add_argument("--only", default=",".join(PARTS),
                   help=f"comma-separated parts to run, of {','.join(PARTS)}")
    a = p.parse_args(argv)
    only = [x.strip() for x in a.only.split(",") if x.strip()]
    bad = sorted(set(only) - set(PARTS))
    if bad:
        p.error(f"--only: unknown part(s) {', '.join(bad)}; parts are {', '.join(PARTS)}")
    if a.startup_only:
        only = ["startup"]
    n, secs, rounds = (200, 1.5, 1) if a.quick else (1000, 3.0, 2)
    env = {} if a.window_ms is None else {"GOLEMISH_COMMIT_WINDOW_MS": str(a.window_ms)}
    wasm = benchlib.guest_modules(["counter"])["counter"]
    try:
        doc: dict[str, Any] = json.loads(a.out.read_text())
    except (OSError, ValueError):
        doc = {}
    doc.update({"machine": benchlib.machine_info(), "quick": a.quick,
                "loadavg": benchlib.loadavg(), "bytecode": benchlib.compile_golemish()})
    if "startup" in only:
        start = startup(wasm, 3 if a.quick else 7)
        benchlib.say(f"{'start-up (spawn to exit)':<28} {'median s':>9}")
        for k, v in start.items():
            benchlib.say(f"{k:<28} {v['median_s']:>9.3f}")
        doc["startup"] = start
        if a.startup_only:
            out = a.out.with_name("bench_serve_startup.json")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"machine": benchlib.machine_info(),
                                       "loadavg": benchlib.loadavg(), "startup": start},
                                      indent=2) + "\n")
            benchlib.say(f"wrote {out}")
            return
    if "hot" in only:
        doc.update(hot(wasm, env, n, secs, rounds, a.window_ms))
    with tempfile.TemporaryDirectory(prefix="golemish-bench-serve-") as tmp:
        if "sleepers" in only:
            agent = benchlib.guest_modules(["agent"])["agent"]
            n_sl, win = 200 if a.quick else 1000, a.sleep_window or (2.0 if a.quick else 20.0)
            # Side by side: Python's own full collections (the old behaviour) against
            # the waker's scheduled ones, alternating, a.sleep_rounds times each.
            runs: dict[str, list[dict[str, Any]]] = {"python": [], "scheduled": []}
            for _ in range(a.sleep_rounds):
                for mode in runs:
                    runs[mode].append(parts.sleepers(Path(tmp), agent, Client, n_sl, win,
                                                     gc_mode=mode))
                    shutil.rmtree(Path(tmp) / f"sleepers-{mode}", ignore_errors=True)
            res = parts.sleepers_summary(runs)
            doc["sleepers"] = res
            for mode in ("python", "scheduled"):
                lat = res["by_gc_mode"][mode]["lateness_ms"]
                benchlib.say(f"durable sleep wake-up, {res['sleepers']} sleepers over "
                             f"{res['window_s']:g} s, full GC {mode}: lateness p50 "
                             f"{lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max "
                             f"{lat['max']:.1f} ms (medians of {a.sleep_rounds} runs)")
            lat = res["lateness_ms"]
            benchlib.say(f"  target p99 <= {parts.TARGET_WAKE_P99_MS:g} ms: "
                         f"{'PASS' if lat['p99'] <= parts.TARGET_WAKE_P99_MS else 'MISS'} "
                         f"(p99 {lat['p99']:.1f} ms, the server's default)")
        if "workers" in only:
            res = parts.workers(Path(tmp), wasm, Client, 1000 if a.quick else 10_000,
                                100 if a.quick else 500)
            doc["workers"] = res
            rss = res["rss_mib"]
            benchlib.say(f"{res['workers']} workers: created at {res['create_per_s']:.0f}/s; "
                         f"server RSS MiB started {rss['started']:.0f}, created "
                         f"{rss['created']:.0f}, evicted {rss['evicted']:.0f}, touched again "
                         f"{rss['touched']:.0f}")
            r50 = res["restore_ms"]["p50"]
            benchlib.say(f"  `add 1` on an evicted worker p50 {r50:.2f} ms p99 "
                         f"{res['restore_ms']['p99']:.2f} ms; the same worker hot p50 "
                         f"{res['hot_ms']['p50']:.2f} ms (target restore p50 <= "
                         f"{parts.TARGET_RESTORE_P50_MS:g} ms: "
                         f"{'PASS' if r50 <= parts.TARGET_RESTORE_P50_MS else 'MISS'})")
        if "restart" in only:
            journal = benchlib.guest_modules(["journal"])["journal"]
            res = parts.restart(Path(tmp), journal, Client, 10_000, 3 if a.quick else 5)
            doc["restart"] = res
            benchlib.say(f"restart-to-step-K (K={res['k']}, stackful, kill -9): spawn to "
                         f"serving {res['spawn_to_serving_s']:.3f} s, spawn to completion "
                         f"{res['spawn_to_done_s']:.3f} s (median of {len(res['runs'])}; "
                         f"target <= {parts.TARGET_RESTART_S:g} s: "
                         f"{'PASS' if res['spawn_to_done_s'] <= parts.TARGET_RESTART_S else 'MISS'})")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=2) + "\n")
    benchlib.say(f"wrote {a.out}")


def hot(wasm: bytes, env: dict[str, str], n: int, secs: float, rounds: int,
        window_ms: float | None) -> dict[str, Any]:
    """Hot latency and throughput, default and --sync servers side by side."""
    with tempfile.TemporaryDirectory(prefix="golemish-bench-serve-") as tmp:
        servers = [Server(Path(tmp) / "plain", False, env), Server(Path(tmp) / "sync", True, env)]
        try:
            for s in servers:
                deploy(s, wasm)
            lat: dict[str, list[float]] = {s.name: [] for s in servers}
            for block in range(4):  # ABBA
                for s in (servers if block in (0, 3) else servers[::-1]):
                    lat[s.name] += latency(s, n // 4)
            runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
            for clients in CLIENTS:
                for r in range(2 * rounds):  # ABBA per client count
                    for s in (servers if r % 2 == 0 else servers[::-1]):
                        runs[s.name].append(throughput(s, clients, secs))
            lean: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
            for r in range(2 * rounds):
                for s in (servers if r % 2 == 0 else servers[::-1]):
                    lean[s.name].append(throughput_lean(s, LEAN_CLIENTS, secs))
        finally:
            for s in servers:
                s.stop()
    rows = []
    for s in servers:
        samples = lat[s.name]
        qs = statistics.quantiles(samples, n=100)
        row: dict[str, Any] = {"sync": s.sync, "latency": {
            "p50_ms": statistics.median(samples) * 1e3, "p99_ms": qs[98] * 1e3,
            "n": len(samples)}, "throughput": []}
        for clients in CLIENTS:
            mine = [t for t in runs[s.name] if t["clients"] == clients]
            per_s = [t["per_s"] for t in mine]

            def med(key: str) -> float | None:
                vals = [t[key] for t in mine if t[key] is not None]
                return statistics.median(vals) if vals else None
            row["throughput"].append({
                "clients": clients, "per_s": statistics.median(per_s), "per_s_runs": per_s,
                "commits_per_invocation": med("commits_per_invocation"),
                "fsyncs_per_invocation": med("fsyncs_per_invocation"),
                "commits_per_fsync": med("commits_per_fsync"),
                "fsync_ms_mean": med("fsync_ms_mean"), "runs": mine})
        row["throughput_lean"] = {
            "clients": LEAN_CLIENTS, "per_s": statistics.median(t["per_s"] for t in lean[s.name]),
            "fsyncs_per_invocation": statistics.median(
                t["fsyncs_per_invocation"] for t in lean[s.name]), "runs": lean[s.name]}
        rows.append(row)
    report(rows)
    return {"hot_workers": WORKERS, "seconds_per_run": secs, "runs_per_cell": 2 * rounds,
            "commit_window_ms": window_ms, "targets": {
                "p50_ms_default": TARGET_P50_MS, "sync_64_clients_per_s": TARGET_SYNC_64_PER_S},
            "results": rows}


def report(rows: list[dict[str, Any]]) -> None:
    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)
    benchlib.say(f"hot `add 1` over HTTP, 1 client; throughput over {WORKERS} workers "
                 f"(median of the runs; clients share the machine's CPUs with the server)")
    benchlib.say(f"{'mode':<9} {'p50 ms':>7} {'p99 ms':>7} | {'clients':>7} {'inv/s':>7} "
                 f"{'commits/inv':>11} {'fsyncs/inv':>10} {'inv/fsync':>9} {'fsync ms':>8}")
    for r in rows:
        lat = r["latency"]
        for i, t in enumerate(r["throughput"]):
            head = (f"{'--sync' if r['sync'] else 'default':<9} {lat['p50_ms']:>7.2f} "
                    f"{lat['p99_ms']:>7.2f}") if i == 0 else " " * 25
            benchlib.say(f"{head} | {t['clients']:>7} {t['per_s']:>7.0f} "
                         f"{f(t['commits_per_invocation'], '.2f'):>11} "
                         f"{f(t['fsyncs_per_invocation'], '.3f'):>10} "
                         f"{f(t['commits_per_fsync'], '.1f'):>9} "
                         f"{f(t['fsync_ms_mean'], '.2f'):>8}")
    for r in rows:
        t = r.get("throughput_lean")
        if t:
            benchlib.say(f"{'--sync' if r['sync'] else 'default':<9} lean client "
                         f"(scripts/loadgen.py), {t['clients']} connections: "
                         f"{t['per_s']:.0f}/s, {t['fsyncs_per_invocation']:.3f} fsyncs/inv")
    plain = next(r for r in rows if not r["sync"])
    synced = next(r for r in rows if r["sync"])
    s64 = next(t for t in synced["throughput"] if t["clients"] == 64)["per_s"]
    lean = (synced.get("throughput_lean") or {}).get("per_s")
    benchlib.say(f"targets: default p50 {plain['latency']['p50_ms']:.2f} ms "
                 f"(target <= {TARGET_P50_MS} ms: "
                 f"{'PASS' if plain['latency']['p50_ms'] <= TARGET_P50_MS else 'MISS'}); "
                 f"--sync at 64 clients {s64:.0f}/s with thread clients"
                 + (f", {lean:.0f}/s with the lean client" if lean else "")
                 + f" (target >= {TARGET_SYNC_64_PER_S}/s: "
                 f"{'PASS' if max(s64, lean or 0) >= TARGET_SYNC_64_PER_S else 'MISS'})")


if __name__ == "__main__":
    os.environ.pop("GOLEMISH_SERVER", None)
    main()
