#!/usr/bin/env python
"""Core benchmarks for golemish: the cost of durability and of recovery.

Run from the repository root::

    python scripts/bench_core.py            # full run
    python scripts/bench_core.py --quick    # smoke test, well under 30 s

Two figures, measured in one run so that their ratios are comparable (machines
are shared and noisy: every headline is a median over repeats or a ratio taken
within the run, never a lone absolute time):

(a) Durable vs ephemeral. One invocation of the ``journal`` guest's
    ``clocks(1000)`` (1,000 ``clock_time_get`` calls) and ``append(500)``
    (1,000 calls: clock + random per record) on a durable worker and on an
    ephemeral one (``durable=False``: records nothing), same guest, same
    Runtime. Runs alternate in ABBA order (durable/ephemeral, then
    ephemeral/durable) after a warm-up, to cancel drift. The headline is on an
    on-disk (RocksDB) store; a ``memory://`` store is measured too, as a
    diagnostic that separates the journal's own cost from the storage engine's.

(b) Full-replay recovery vs history length. A ``counter`` worker gets N
    invocations of ``add 1`` on an on-disk store (``add`` makes a clock and a
    random call and prints a line, so replay covers HostCall *and* Log
    entries). The store is closed and copied; each recovery opens a fresh
    Runtime on a pristine copy (so every repeat replays the same history) and
    times ``rt.resume``. After each recovery ``get`` must return N.

Results go to a table on stdout and to JSON (``--out``) with machine info, raw
samples and medians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    gc_paused, guest_modules, machine_info, summary, timed,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "scripts" / "results" / "bench_core.json"
BUILD_DIR = ROOT / "guest_examples" / "build"

#: Durable/ephemeral ratio we aim for (Golem's nightly benchmark shows 3.5x).
TARGET_RATIO = 1.2
GOLEM_RATIO = 3.5
#: Recovery cost per invocation at the largest N over the next largest: ~1 means linear.
LINEAR_BAND = (0.75, 1.33)

RECOVERY_WORKER = "counter/bench"


@dataclass(frozen=True)
class Settings:
    quick: bool
    warmup: int          # (a) discarded invocations per worker before measuring
    pairs: int           # (a) measured durable/ephemeral pairs
    history: tuple[int, ...]  # (b) history lengths N
    recoveries: int      # (b) measured recoveries per N

    @classmethod
    def make(cls, quick: bool, pairs: int | None, recoveries: int | None) -> Settings:
        if quick:
            return cls(True, 2, pairs or 11, (100, 1_000), recoveries or 3)
        return cls(False, 5, pairs or 61, (100, 1_000, 10_000), recoveries or 5)


@dataclass(frozen=True)
class Workload:
    function: str
    arg: int
    host_calls: int

    @property
    def label(self) -> str:
        return f"{self.function}({self.arg})"


WORKLOADS = (Workload("clocks", 1000, 1000), Workload("append", 500, 1000))


# -- helpers --------------------------------------------------------------------

# -- (a) durable vs ephemeral -----------------------------------------------------

def _invoker(rt: Any, worker_id: str, w: Workload, durable: bool) -> Callable[[], Any]:
    args = [str(w.arg)]
    return lambda: rt.invoke(worker_id, w.function, args, durable=durable)


def measure_durability(rt: Any, store: str, w: Workload, s: Settings) -> dict[str, Any]:
    """Interleaved durable/ephemeral invocations of one workload on one Runtime."""
    dur_id, eph_id = f"journal/dur-{w.function}", f"journal/eph-{w.function}"
    run = {True: _invoker(rt, dur_id, w, True), False: _invoker(rt, eph_id, w, False)}
    for _ in range(s.warmup):  # also creates both workers
        run[True]()
        run[False]()
    dur_len0 = rt.store.oplog(dur_id).last_index
    samples: dict[bool, list[float]] = {True: [], False: []}
    with gc_paused():
        for i in range(s.pairs):
            order = (True, False) if i % 2 == 0 else (False, True)  # ABBA
            for durable in order:
                seconds, _ = timed(run[durable])
                samples[durable].append(seconds * 1e3)
    # Sanity: the durable worker recorded every call, the ephemeral one nothing,
    # and the ephemeral one really ran (its state is there, in memory).
    per_invocation = w.host_calls + 2  # InvokeStart + host calls + InvokeEnd
    # Snapshot entries (the default adaptive policy takes some) are not per-call records.
    from golemish.oplog import Snapshot
    dur_grew = sum(1 for _, k in rt.store.oplog(dur_id).kinds(dur_len0 + 1)
                   if k != Snapshot.KIND)
    eph_len = rt.store.oplog(eph_id).last_index
    checks = {"durable_entries_per_invocation": dur_grew / s.pairs,
              "expected_entries_per_invocation": per_invocation,
              "ephemeral_oplog_length": eph_len}
    if dur_grew != per_invocation * s.pairs or eph_len != 1:
        raise AssertionError(f"{store} {w.label}: unexpected oplog growth {checks}")
    if w.function == "append":
        count = rt.invoke(eph_id, "count", durable=False).results[0][1]
        expected = (s.warmup + s.pairs) * w.arg
        if count != expected:
            raise AssertionError(f"ephemeral journal count {count}, expected {expected}")
        checks["ephemeral_count"] = count

    d, e = summary(samples[True]), summary(samples[False])
    ratio = d["median"] / e["median"]
    pair_ratios = [a / b for a, b in zip(samples[True], samples[False])]
    return {
        "store": store, "workload": w.label, "function": w.function, "arg": w.arg,
        "host_calls": w.host_calls, "warmup": s.warmup, "pairs": s.pairs,
        "durable_ms": d, "ephemeral_ms": e,
        "durable_us_per_call": d["median"] * 1e3 / w.host_calls,
        "ephemeral_us_per_call": e["median"] * 1e3 / w.host_calls,
        "journal_us_per_call": (d["median"] - e["median"]) * 1e3 / w.host_calls,
        "ratio": ratio,
        "ratio_pairwise": summary(pair_ratios),
        "target": TARGET_RATIO,
        "pass": ratio <= TARGET_RATIO,
        "checks": checks,
    }


def bench_durability(wasm: bytes, s: Settings, tmp: Path) -> list[dict[str, Any]]:
    from golemish.runtime.executor import Runtime, RuntimeConfig

    rows = []
    for store, home in (("rocksdb", str(tmp / "durability-store")), ("memory", "memory://")):
        with Runtime(RuntimeConfig(home=home)) as rt:
            rt.deploy(wasm, "journal")
            for w in WORKLOADS:
                rows.append(measure_durability(rt, store, w, s))
    return rows


# -- (b) recovery ------------------------------------------------------------------

def build_history(wasm: bytes, home: Path, n: int) -> dict[str, Any]:
    """N invocations of counter `add 1` on a fresh on-disk store, then close it."""
    from golemish.runtime.executor import Runtime, RuntimeConfig

    with Runtime(RuntimeConfig(home=str(home))) as rt:
        rt.deploy(wasm, "counter")
        t0 = time.perf_counter()
        last = None
        for _ in range(n):
            last = rt.invoke(RECOVERY_WORKER, "add", ["1"])
        seconds = time.perf_counter() - t0
        if last is None or last.results != [("i64", n)]:
            raise AssertionError(f"history build: last add returned {last and last.results}")
        entries = rt.store.oplog(RECOVERY_WORKER).last_index
    return {"n": n, "build_s": seconds, "build_us_per_invocation": seconds / n * 1e6,
            "oplog_entries": entries}


def recover_once(pristine: Path, scratch: Path, n: int) -> dict[str, float]:
    """Open a fresh Runtime on a copy of the pristine store and replay the worker.

    Full replay from Create, whatever snapshots the history has: this is the baseline
    that bench_snapshot.py compares snapshot + tail recovery with.
    """
    from golemish.runtime.executor import Runtime, RuntimeConfig

    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(pristine, scratch)
    with gc_paused():
        t0 = time.perf_counter()
        rt = Runtime(RuntimeConfig(home=str(scratch), recovery="replay"))
        try:
            t1 = time.perf_counter()
            report = rt.resume(RECOVERY_WORKER)
            t2 = time.perf_counter()
            got = rt.invoke(RECOVERY_WORKER, "get").results
        finally:
            rt.close()
    if report is None or report.replayed_invocations != n or report.finished is not None:
        raise AssertionError(f"N={n}: unexpected recovery {report}")
    if report.replayed_host_calls != 2 * n:
        raise AssertionError(f"N={n}: replayed {report.replayed_host_calls} host calls, "
                             f"expected {2 * n}")
    if got != [("i64", n)]:
        raise AssertionError(f"N={n}: after recovery get returned {got}, expected {n}")
    return {"open_ms": (t1 - t0) * 1e3, "resume_ms": (t2 - t1) * 1e3,
            "replay_ms": report.seconds * 1e3, "total_ms": (t2 - t0) * 1e3,
            "entries": report.entries}


def bench_recovery(wasm: bytes, s: Settings, tmp: Path) -> dict[str, Any]:
    builds = {n: build_history(wasm, tmp / f"history-{n}", n) for n in s.history}
    scratch = tmp / "recovery-scratch"
    samples: dict[int, list[dict[str, float]]] = {n: [] for n in s.history}
    recover_once(tmp / f"history-{s.history[0]}", scratch, s.history[0])  # warm-up
    for _ in range(s.recoveries):
        for n in s.history:  # round-robin over N, so drift hits every N alike
            samples[n].append(recover_once(tmp / f"history-{n}", scratch, n))
    shutil.rmtree(scratch, ignore_errors=True)

    rows = []
    for n in s.history:
        row: dict[str, Any] = {**builds[n], "repeats": s.recoveries, "verified_get": n}
        for key in ("open_ms", "resume_ms", "replay_ms", "total_ms"):
            row[key] = summary([x[key] for x in samples[n]])
        row["replay_us_per_invocation"] = row["replay_ms"]["median"] * 1e3 / n
        row["total_us_per_invocation"] = row["total_ms"]["median"] * 1e3 / n
        rows.append(row)
    big, small = rows[-1], rows[-2]
    ratio = big["replay_us_per_invocation"] / small["replay_us_per_invocation"]
    return {
        "worker": RECOVERY_WORKER, "function": "add 1", "store": "rocksdb",
        "rows": rows,
        "linearity": {
            "big_n": big["n"], "small_n": small["n"],
            "ratio_replay_us_per_invocation": ratio,
            "ratio_total_us_per_invocation":
                big["total_us_per_invocation"] / small["total_us_per_invocation"],
            "band": list(LINEAR_BAND),
            "linear": LINEAR_BAND[0] <= ratio <= LINEAR_BAND[1],
        },
    }


# -- report -------------------------------------------------------------------------

def format_table(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    lines = [f"golemish bench_core ({'quick' if s['quick'] else 'full'}) — {m['date']}, "
             f"{m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, "
             f"wasmtime {m['wasmtime']}, load {m['loadavg_at_start']}", ""]
    rows = result["durable_vs_ephemeral"]
    lines.append(f"(a) durable vs ephemeral, one invocation: median of {s['pairs']} "
                 f"interleaved ABBA pairs after {s['warmup']} warm-up each")
    lines.append(f"  {'store':8} {'workload':13} {'dur ms':>7} {'eph ms':>7} "
                 f"{'dur µs/call':>11} {'eph µs/call':>11} {'+µs/call':>8} "
                 f"{'ratio':>6} {'pair IQR':>11}  verdict (target ≤{TARGET_RATIO}×)")
    for r in rows:
        pr = r["ratio_pairwise"]
        verdict = ("PASS" if r["pass"] else "FAIL") if r["store"] == "rocksdb" else "(diag.)"
        lines.append(
            f"  {r['store']:8} {r['workload']:13} {r['durable_ms']['median']:7.2f} "
            f"{r['ephemeral_ms']['median']:7.2f} {r['durable_us_per_call']:11.2f} "
            f"{r['ephemeral_us_per_call']:11.2f} {r['journal_us_per_call']:8.2f} "
            f"{r['ratio']:5.2f}× {pr['q1']:5.2f}–{pr['q3']:<5.2f}  {verdict}")
    lines.append(f"  (Golem's nightly benchmark: {GOLEM_RATIO}×; +µs/call = journal cost "
                 f"per recorded host call; memory:// rows are diagnostic only)")
    lines.append("")
    rec = result["recovery"]
    lines.append(f"(b) full-replay recovery of counter `add 1` histories (rocksdb): median of "
                 f"{s['recoveries']}, fresh Runtime on a pristine store copy each")
    lines.append(f"  {'N':>6} {'entries':>8} {'open ms':>8} {'resume ms':>10} "
                 f"{'replay ms':>10} {'total ms':>9} {'µs/inv replay':>14} "
                 f"{'µs/inv total':>13} {'build µs/inv':>13}  get")
    for r in rec["rows"]:
        lines.append(
            f"  {r['n']:>6} {r['oplog_entries']:>8} {r['open_ms']['median']:8.2f} "
            f"{r['resume_ms']['median']:10.2f} {r['replay_ms']['median']:10.2f} "
            f"{r['total_ms']['median']:9.2f} {r['replay_us_per_invocation']:14.1f} "
            f"{r['total_us_per_invocation']:13.1f} {r['build_us_per_invocation']:13.1f}  "
            f"={r['verified_get']} ok")
    lin = rec["linearity"]
    lines.append(
        f"  µs/invocation at N={lin['big_n']} over N={lin['small_n']}: "
        f"{lin['ratio_replay_us_per_invocation']:.2f} (replay), "
        f"{lin['ratio_total_us_per_invocation']:.2f} (total incl. open); "
        f"{'linear' if lin['linear'] else 'NOT linear'} "
        f"(band {LINEAR_BAND[0]}–{LINEAR_BAND[1]})")
    lines.append("")
    lines.append(f"elapsed {result['elapsed_s']:.1f} s; JSON: {result['out']}")
    return "\n".join(lines)


def run(s: Settings, out: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    machine = machine_info()
    wasm = guest_modules(("counter", "journal"))
    with tempfile.TemporaryDirectory(prefix="golemish-bench-") as tmp:
        durability = bench_durability(wasm["journal"], s, Path(tmp))
        recovery = bench_recovery(wasm["counter"], s, Path(tmp))
    headline = {
        f"durable_over_ephemeral_{r['function']}": r["ratio"]
        for r in durability if r["store"] == "rocksdb"
    }
    headline["durable_over_ephemeral_pass"] = all(
        r["pass"] for r in durability if r["store"] == "rocksdb")
    headline["recovery_linearity_ratio"] = recovery["linearity"][
        "ratio_replay_us_per_invocation"]
    return {
        "benchmark": "bench_core", "settings": asdict(s), "machine": machine,
        "headline": headline, "durable_vs_ephemeral": durability, "recovery": recovery,
        "target_ratio": TARGET_RATIO, "golem_ratio": GOLEM_RATIO,
        "elapsed_s": time.perf_counter() - t0, "out": str(out),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: N up to 1,000 and fewer repeats (< 30 s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"JSON output path (default: {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--pairs", type=int, default=None,
                   help="(a) measured durable/ephemeral pairs (default 61, quick 11)")
    p.add_argument("--recoveries", type=int, default=None,
                   help="(b) recoveries per history length (default 5, quick 3)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    s = Settings.make(args.quick, args.pairs, args.recoveries)
    out: Path = args.out
    result = run(s, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
