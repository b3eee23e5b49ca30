"""Hot invocations over HTTP, an older commit against this tree, side by side in one run.

Exports ``--against REV`` (git archive) into a temporary directory and starts its
server from there (PYTHONPATH), next to a server of this tree, for each durability
mode; then alternates between old and new (ABBA) at 1, 8 and 64 clients over 100
workers, as scripts/bench_serve.py measures them (keep-alive http.client threads in
this process). Besides invocations per second it reads each server's CPU time from
/proc and reports it per invocation, which a shared machine's load disturbs less.
``--old-plain-stack`` hides httptools and uvloop from the old server, so that it runs
on h11 and asyncio as it did before they were dependencies.
Prints a table and writes JSON (scripts/results/bench_serve_ab.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
import bench_serve as bs  # noqa: E402

CLIENTS = (1, 8, 64)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _export(rev: str, dest: Path, plain_stack: bool) -> str:
    src = dest / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(benchlib.ROOT), "archive", rev],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    pkg = dest / "pkg" / "golemish"
    pkg.mkdir(parents=True)
    for layer in ("runtime", "oplog"):
        (pkg / layer).symlink_to(src / layer)
    path = [str(dest / "pkg")]
    if plain_stack:
        hide = dest / "hide"
        hide.mkdir()
        (hide / "sitecustomize.py").write_text(
            "import sys\nsys.modules['uvloop'] = None\nsys.modules['httptools'] = None\n")
        path.insert(0, str(hide))
    return os.pathsep.join(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", required=True, metavar="REV", help="the older commit")
    p.add_argument("--old-plain-stack", action="store_true",
                   help="hide httptools and uvloop from the old server")
    p.add_argument("--seconds", type=float, default=3.0, help="per throughput run")
    p.add_argument("--rounds", type=int, default=2, help="ABBA rounds per cell")
    p.add_argument("--out", type=Path,
                   default=benchlib.ROOT / "scripts" / "results" / "bench_serve_ab.json")
    a = p.parse_args(argv)
    wasm = benchlib.guest_modules(["counter"])["counter"]
    loads = [os.getloadavg()[0]]
    res: dict[tuple[str, bool], dict[Any, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="golemish-bench-ab-") as tmp:
        old_path = _export(a.against, Path(tmp) / "old", a.old_plain_stack)
        servers = {}
        try:
            for ver, env in (("old", {"PYTHONPATH": old_path}), ("new", {})):
                for sync in (False, True):
                    servers[(ver, sync)] = bs.Server(Path(tmp) / f"{ver}-{sync}", sync, env)
            for key, s in servers.items():
                bs.deploy(s, wasm)
                res[key] = {"p50_ms": statistics.median(bs.latency(s, 400)) * 1e3}
            for clients in CLIENTS:
                for r in range(2 * a.rounds):
                    for ver in (("old", "new"), ("new", "old"))[r % 2]:
                        for sync in (False, True):
                            s = servers[(ver, sync)]
                            c0 = _cpu_s(s.proc.pid)
                            t = bs.throughput(s, clients, a.seconds)
                            t["server_cpu_us"] = 1e6 * (_cpu_s(s.proc.pid) - c0) / t["invocations"]
                            res[(ver, sync)].setdefault(clients, []).append(t)
                    loads.append(os.getloadavg()[0])
        finally:
            for s in servers.values():
                s.stop()
    benchlib.say(f"{a.against} (old) against this tree (new); load average "
                 f"{min(loads):.1f}-{max(loads):.1f}; medians of {2 * a.rounds} runs")
    benchlib.say(f"{'mode':<8} {'clients':>7} {'old/s':>7} {'new/s':>7} {'ratio':>6} "
                 f"{'old CPU us/inv':>14} {'new CPU us/inv':>14} {'new fsyncs/inv':>14}")
    cells = []
    for sync in (False, True):
        mode = "--sync" if sync else "default"
        old, new = res[("old", sync)], res[("new", sync)]
        benchlib.say(f"{mode:<8} 1-client p50 ms: old {old['p50_ms']:.2f}, new {new['p50_ms']:.2f}")
        for clients in CLIENTS:
            def med(runs: list[dict[str, Any]], key: str) -> float:
                return statistics.median(t[key] for t in runs)
            o, n = old[clients], new[clients]
            cell = {"sync": sync, "clients": clients,
                    "old_per_s": med(o, "per_s"), "new_per_s": med(n, "per_s"),
                    "old_cpu_us": med(o, "server_cpu_us"), "new_cpu_us": med(n, "server_cpu_us"),
                    "new_fsyncs_per_invocation": med(n, "fsyncs_per_invocation"),
                    "old_runs": [t["per_s"] for t in o], "new_runs": [t["per_s"] for t in n]}
            cell["ratio"] = cell["new_per_s"] / cell["old_per_s"]
            cells.append(cell)
            benchlib.say(f"{mode:<8} {clients:>7} {cell['old_per_s']:>7.0f} "
                         f"{cell['new_per_s']:>7.0f} {cell['ratio']:>6.2f} "
                         f"{cell['old_cpu_us']:>14.0f} {cell['new_cpu_us']:>14.0f} "
                         f"{cell['new_fsyncs_per_invocation']:>14.3f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({
        "machine": benchlib.machine_info(), "against": a.against,
        "old_plain_stack": a.old_plain_stack, "loadavg": loads, "seconds_per_run": a.seconds,
        "p50_ms": {f"{k[0]}{' --sync' if k[1] else ''}": v["p50_ms"] for k, v in res.items()},
        "cells": cells}, indent=2) + "\n")
    benchlib.say(f"wrote {a.out}")


if __name__ == "__main__":
    os.environ.pop("GOLEMISH_SERVER", None)
    main()
