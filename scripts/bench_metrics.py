"""What the server's metrics cost a hot invocation, measured side by side.

Two Runtimes on fresh RocksDB stores, one plain and one with the server's
Metrics observer (prometheus_client counters and histograms, the timed backend),
run `add 1` on one warm counter worker in alternating rounds. Prints per-call
medians and their ratio; writes JSON (scripts/results/bench_metrics.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from golemish.runtime.executor import Runtime, RuntimeConfig  # noqa: E402
from golemish.runtime.server.metrics import Metrics  # noqa: E402

DEFAULT_OUT = benchlib.ROOT / "scripts" / "results" / "bench_metrics.json"


def round_us(rt: Runtime, worker: str, n: int) -> float:
    with benchlib.gc_paused():
        t0 = time.perf_counter()
        for _ in range(n):
            rt.invoke(worker, "add", ["1"])
        return (time.perf_counter() - t0) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=300, help="invocations per round")
    p.add_argument("--sync", action="store_true", help="fsync each commit")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    wasm = benchlib.guest_modules(["counter"])["counter"]
    with tempfile.TemporaryDirectory() as tmp:
        rts = {}
        for label, observer in (("plain", None), ("metrics", Metrics())):
            rt = Runtime(RuntimeConfig(home=str(Path(tmp) / label), sync=a.sync,
                                       observer=observer, snapshot_policy=_policy()))
            rt.deploy(wasm, "counter")
            rt.invoke("counter/w", "add", ["1"])
            rts[label] = rt
        samples: dict[str, list[float]] = {k: [] for k in rts}
        for r in range(a.rounds):
            order = list(rts) if r % 2 == 0 else list(rts)[::-1]
            for label in order:  # alternating, both orders: drift hits both alike
                samples[label].append(round_us(rts[label], "counter/w", a.calls))
        for rt in rts.values():
            rt.close()
    med = {k: statistics.median(v) for k, v in samples.items()}
    ratio = med["metrics"] / med["plain"]
    benchlib.say(f"hot `add 1` in-process, {'--sync' if a.sync else 'no sync'}, "
                 f"{a.rounds} rounds x {a.calls} calls")
    benchlib.say(f"{'':<10}{'median us/call':>16}")
    for k in ("plain", "metrics"):
        benchlib.say(f"{k:<10}{med[k]:>16.1f}")
    benchlib.say(f"{'ratio':<10}{ratio:>16.3f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({
        "machine": benchlib.machine_info(), "sync": a.sync, "calls": a.calls,
        "us_per_call": {k: benchlib.summary(v) for k, v in samples.items()},
        "ratio_median": ratio}, indent=2))


def _policy():  # snapshots off: measure the invocation path, not snapshot timing
    from golemish.runtime.snapshot.policy import SnapshotPolicy
    return SnapshotPolicy.parse("off")


if __name__ == "__main__":
    main()
