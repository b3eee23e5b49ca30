"""Hot invocations of `golemish serve` over HTTP: latency and throughput.

Starts a real server on a fresh store (127.0.0.1, an ephemeral port), deploys the
counter guest and measures, through keep-alive connections:
- latency of `add 1` on one warm worker, 1 client: p50, p99;
- throughput at 1 and 8 concurrent clients, each client on its own worker
  (different workers run in parallel in the server), with and without --sync;
- start-up: `golemish --help`, `golemish invoke` in-process and through a server,
  and `golemish serve` from spawn to its first served invocation.
Prints a table and writes JSON (scripts/results/bench_serve.json).
"""

from __future__ import annotations

import argparse
import json
import os
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

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from golemish.runtime.server.process import wait_until_serving  # noqa: E402

DEFAULT_OUT = benchlib.ROOT / "scripts" / "results" / "bench_serve.json"


class Server:
    def __init__(self, home: Path, sync: bool) -> None:
        exe = [sys.executable, "-m", "golemish.runtime.cli"]
        subprocess.run([*exe, "--home", str(home), "store", "init"], check=True,
                       capture_output=True)
        self.proc = subprocess.Popen(
            [*exe, "--home", str(home), *(["--sync"] if sync else []), "serve", "--listen",
             "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = wait_until_serving(str(home), self.proc)
        if url is None:
            self.proc.kill()
            raise SystemExit(f"server did not start: {self.proc.stderr.read()!r}")
        self.url = url

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=60)


def _client(url: str) -> httpx.Client:
    # httpx writes headers and body separately: without TCP_NODELAY, Nagle plus the
    # server's delayed ACK add ~40 ms to every request.
    nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(base_url=url, timeout=60, transport=nodelay)


def _add(http: httpx.Client, worker: str) -> None:
    r = http.post(f"/workers/{worker}/invoke", json={"function": "add", "args": ["1"]})
    if r.status_code != 200:
        raise SystemExit(f"invoke failed: {r.status_code} {r.text}")


def latency(url: str, n: int) -> dict[str, Any]:
    with _client(url) as http:
        for _ in range(50):
            _add(http, "counter/lat")
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            _add(http, "counter/lat")
            samples.append(time.perf_counter() - t0)
    qs = statistics.quantiles(samples, n=100)
    return {"p50_ms": statistics.median(samples) * 1e3, "p99_ms": qs[98] * 1e3, "n": n}


def throughput(url: str, clients: int, seconds: float) -> dict[str, Any]:
    counts = [0] * clients
    stop = threading.Event()

    def client(i: int) -> None:
        with _client(url) as http:
            _add(http, f"counter/tp{clients}-{i}")  # create and warm the worker
            barrier.wait()
            while not stop.is_set():
                _add(http, f"counter/tp{clients}-{i}")
                counts[i] += 1

    barrier = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - t0
    return {"clients": clients, "invocations": sum(counts), "seconds": elapsed,
            "per_s": sum(counts) / elapsed}


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
            with httpx.Client(base_url=url, timeout=60) as http:
                _add(http, "counter/first")
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
    p.add_argument("--startup-only", action="store_true",
                   help="only the start-up table (writes bench_serve_startup.json)")
    a = p.parse_args(argv)
    n, secs = (300, 1.5) if a.quick else (2000, 4.0)
    wasm = benchlib.guest_modules(["counter"])["counter"]
    start = startup(wasm, 3 if a.quick else 7)
    benchlib.say(f"{'start-up (spawn to exit)':<28} {'median s':>9}")
    for k, v in start.items():
        benchlib.say(f"{k:<28} {v['median_s']:>9.3f}")
    if a.startup_only:
        out = a.out.with_name("bench_serve_startup.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": benchlib.machine_info(),
                                   "loadavg": benchlib.loadavg(), "startup": start},
                                  indent=2) + "\n")
        benchlib.say(f"wrote {out}")
        return
    rows: list[dict[str, Any]] = []
    for sync in (False, True):
        with tempfile.TemporaryDirectory(prefix="golemish-bench-serve-") as tmp:
            server = Server(Path(tmp) / "store", sync)
            try:
                with httpx.Client(base_url=server.url) as http:
                    r = http.post("/components", params={"name": "counter"}, content=wasm)
                    r.raise_for_status()
                row: dict[str, Any] = {"sync": sync, "latency": latency(server.url, n)}
                row["throughput"] = [throughput(server.url, c, secs) for c in (1, 8)]
                rows.append(row)
            finally:
                server.stop()
    benchlib.say(f"{'mode':<10} {'p50 ms':>8} {'p99 ms':>8} {'1 client/s':>11} "
                 f"{'8 clients/s':>12}")
    for r in rows:
        tp = {t["clients"]: t["per_s"] for t in r["throughput"]}
        benchlib.say(f"{'--sync' if r['sync'] else 'default':<10} {r['latency']['p50_ms']:>8.2f} "
                     f"{r['latency']['p99_ms']:>8.2f} {tp[1]:>11.0f} {tp[8]:>12.0f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"machine": benchlib.machine_info(), "quick": a.quick,
                                 "loadavg": benchlib.loadavg(), "runs": rows,
                                 "startup": start}, indent=2) + "\n")
    benchlib.say(f"wrote {a.out}")


if __name__ == "__main__":
    os.environ.pop("GOLEMISH_SERVER", None)
    main()
