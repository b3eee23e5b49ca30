"""Python workers, first figures: deploy, cold creation, trivial calls, snapshots, recovery.

    python scripts/bench_python.py [--out bench_python.json] [--counts 100,1000]

Prints a table and writes JSON. The interpreter must be compiled already
(``golemish python install``); its one-time compile is not timed here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from golemish.runtime.executor import Runtime, RuntimeConfig

AGENT = '''
count = 0

def add(n: int) -> int:
    global count
    count += n
    return count

def noop() -> int:
    return 0
'''


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_python.json")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--counts", default="100,1000")
    a = ap.parse_args()
    counts = [int(c) for c in a.counts.split(",")]
    res: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "agent.py"
        src.write_text(AGENT)
        home = str(Path(tmp) / "store")
        rt = Runtime(RuntimeConfig(home=home, snapshot_policy=_never()))
        t = time.perf_counter()
        rt.deploy_python(src)
        res["deploy_s"] = time.perf_counter() - t
        t = time.perf_counter()
        rt.invoke("agent/cold", "noop", [])
        res["cold_create_and_first_call_s"] = time.perf_counter() - t
        for durable in (True, False):
            wid = f"agent/{'d' if durable else 'e'}"
            rt.invoke(wid, "noop", [], durable=durable)
            samples = []
            for _ in range(a.calls):
                t = time.perf_counter()
                rt.invoke(wid, "noop", [])
                samples.append(time.perf_counter() - t)
            res[f"trivial_call_us_{'durable' if durable else 'ephemeral'}"] = median_us(samples)
        res["durable_over_ephemeral"] = (res["trivial_call_us_durable"]  # type: ignore[operator]
                                         / res["trivial_call_us_ephemeral"])
        for n in counts:
            wid = f"agent/r{n}"
            for i in range(n):
                rt.invoke(wid, "add", ["1"])
            t = time.perf_counter()
            rt.snapshot(wid)
            res[f"snapshot_s_{n}"] = time.perf_counter() - t
            info = rt.worker_info(wid)
            res[f"snapshot_stored_bytes_{n}"] = info.get("snapshot_stored_bytes")
            res[f"memory_bytes_{n}"] = info.get("memory_bytes")
        rt.close()
        for mode in ("snapshot", "replay"):
            for n in counts:
                r = Runtime(RuntimeConfig(home=home, recovery=mode, snapshot_policy=_never()))
                got = r.invoke(f"agent/r{n}", "add", ["0"])
                rep = got.recovery
                assert rep is not None and rep.mode == mode, rep
                res[f"recovery_s_{mode}_{n}"] = rep.seconds
                r.close()
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    width = max(map(len, res))
    for k, v in res.items():
        print(f"{k:<{width}}  {v:,.4f}" if isinstance(v, float) else f"{k:<{width}}  {v:,}")
    return 0


def _never():
    from golemish.runtime.snapshot.policy import SnapshotPolicy
    return SnapshotPolicy.parse("off")


if __name__ == "__main__":
    sys.exit(main())
