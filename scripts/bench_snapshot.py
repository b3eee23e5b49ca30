#!/usr/bin/env python
"""Snapshot benchmarks for golemish: what incremental memory snapshots buy and cost.

Run from the repository root::

    python scripts/bench_snapshot.py                    # full run (4-7 min on 2 cores)
    python scripts/bench_snapshot.py --quick            # smoke test, < 60 s
    python scripts/bench_snapshot.py --only restore     # one section

Four sections, each measured side by side in one process so that the ratios are
taken within the run (machines are shared and noisy: every headline is a median
over repeats, or a ratio of medians measured interleaved, never a lone time):

1. ``recovery`` — recovery time vs history length. A ``counter`` worker gets N
   invocations of ``add 1`` (default adaptive snapshot policy, on-disk store).
   Each history is built once, then recovered many times, each time from a
   pristine copy of the closed store (recovery and the check invocation
   append), in two modes: full replay (``recovery="replay"``) and the default
   (newest snapshot + oplog tail). Time = open Runtime + ``rt.resume``. The tail
   at the kill point depends on where the last snapshot fell, so every N is
   also measured at extra kill points N+k spread over about one snapshot
   interval (the history continued after a clean restart), and the per-N figure
   is the mean over kill points of the median over repeats: the expected
   recovery time at a kill point uniform in the snapshot interval.
2. ``snapshot`` — the cost of one snapshot of 16/64/256 MiB of ``kv`` memory at
   0.1 %/1 %/10 % dirty (``touch(1|10|100)``: per mille of the 4 KiB chunks),
   for the userfaultfd tracker, the hashing tracker and a full capture
   (``rt.snapshot(w, full=True)``), interleaved per repeat.
3. ``restore`` — restore time (``RecoveryReport.restore_seconds``) of 16/64/256 MiB
   against a floor measured in the same run: zstd-decompressing the very pages
   stored for that snapshot plus ``ctypes.memmove`` of them into a fresh buffer.
4. ``throughput`` — invocations/s lost to snapshotting: the same calls on a
   worker with policy ``off`` and one with the default ``adaptive`` policy, in
   interleaved ABBA blocks: counter ``add 1``, and kv ``put`` of random keys with
   4 KiB values after ``fill(64)``, over a short window (a few thousand puts, as
   briefed) and a long one spanning several of the policy's snapshot intervals.

The JSON also records the load average and the CPU other processes used during
each section (``loadavg_by_section``), and method notes (``notes``).

Results go to tables on stdout (each printed as its section completes) and to
JSON (``--out``) with machine info, load averages, settings, raw samples and
medians.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    dir_bytes, fresh_copy, gc_paused, guest_modules, loadavg, machine_info, run_sections, say,
    summary,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "scripts" / "results"
DEFAULT_OUT = RESULTS / "bench_snapshot.json"
BUILD_DIR = ROOT / "guest_examples" / "build"

SECTIONS = ("recovery", "snapshot", "restore", "throughput")

#: (1) snapshot+tail recovery at the largest N over N=1,000: at most this.
TARGET_FLATNESS = 1.2
#: (1) full replay over snapshot+tail at the largest N: at least this.
TARGET_SPEEDUP = 100.0
#: (2) incremental (uffd) over full snapshot, 64 MiB at 1 % dirty: at most this.
TARGET_INCREMENTAL = 0.10
TARGET_INCREMENTAL_AT = (64, 10)  # (MiB, permille)
#: (3) restore over its floor: at most this.
TARGET_RESTORE = 2.0
#: (4) throughput lost to snapshotting under the default policy: at most this.
TARGET_LOSS = 0.10

COUNTER = "counter/bench"
KV = "kv/bench"

#: Method notes, copied into the JSON so that the numbers travel with their caveats.
NOTES = {
    "recovery": (
        "Kill points are clean closes of the store (no open invocation), then recovery of a "
        "pristine copy in a fresh Runtime: the same state a SIGKILL between invocations "
        "leaves. N+0 is the uninterrupted history; N+k (k>0) continue it after one restart "
        "(itself a snapshot+tail recovery), to sample the tail length over about one "
        "snapshot interval instead of trusting where the last snapshot happened to fall. "
        "The per-N snapshot figure is the mean over kill points of the median over repeats; "
        "the k=0 figures are reported too. 'open' is Runtime() (RocksDB open, including its "
        "WAL replay) and is the noisiest part on a shared machine. counter's memory grows "
        "with its history (an entry per add), so restore time rises with N by design."),
    "snapshot": (
        "touch(permille) dirties that share of the 4 KiB chunks, spread evenly, so 1 % of "
        "chunks is ~4 % of the 16 KiB snapshot pages (the 'changed' column). The full "
        "capture hashes, compresses and writes every page; its wall time is dominated by "
        "the RocksDB batch write, so the capture-only ratio (Snapshot.duration_ns) is "
        "reported as well."),
    "restore": (
        "restore_seconds covers instantiation, reading, decompressing, verifying (xxh3) and "
        "copying the pages. The floor decompresses the same stored frames (read from the "
        "store beforehand, untimed) and memmoves them into a fresh anonymous mapping, as the "
        "wasm memory is fresh; floor* uses a pre-faulted buffer (no page faults), which is "
        "stricter than anything a fresh instance can do. get/verify are diagnostics measured "
        "on the same store: RocksDB point reads of every page, xxh3 of every page."),
    "throughput": (
        "Both workers get the same calls; both track dirty pages (uffd), but only the "
        "adaptive one snapshots, so re-armed write protection (a fault on the first write "
        "to a page after each snapshot) counts as snapshot cost. The kv workers are warmed "
        "up until the adaptive one has taken its first, full snapshot (once per worker "
        "life). With 64 MiB the adaptive interval spans tens of thousands of puts, so the "
        "briefed few-thousand-put window usually holds no snapshot; the 'long' window spans "
        "several intervals and is the one the verdict uses (with the counter)."),
}


@dataclass(frozen=True)
class Settings:
    quick: bool
    # (1) recovery
    history: tuple[int, ...]
    kill_offsets: tuple[int, ...]     # extra invocations after N: kill points N+k
    replay_repeats: int               # full-replay recoveries per N ...
    replay_repeats_big: int           # ... and at N >= 100,000
    snapshot_repeats: int             # snapshot+tail recoveries per kill point
    # (2) snapshot cost
    snap_sizes: tuple[int, ...]       # MiB
    dirty_permille: tuple[int, ...]
    snap_repeats: tuple[int, ...]     # per size
    # (3) restore
    restore_sizes: tuple[int, ...]
    restore_repeats: tuple[int, ...]  # per size
    # (4) throughput
    tp_counter_blocks: int            # blocks per policy
    tp_counter_block: int             # invocations per block
    tp_kv_mib: int
    tp_kv_blocks: int                 # "short": a few thousand puts, as briefed
    tp_kv_block: int
    tp_kv_long_blocks: int            # "long": several snapshot intervals
    tp_kv_long_block: int
    tp_kv_value: int                  # bytes per put
    tp_kv_keys: int                   # keys drawn uniformly from [0, tp_kv_keys)

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(True, (100, 1_000, 3_000), (0, 150), 2, 2, 3,
                       (8,), (1, 10, 100), (2,),
                       (8,), (2,),
                       4, 250, 8, 4, 100, 4, 1000, 4096, 4096)
        # Kill offsets: the adaptive policy snapshots a counter worker about every
        # 300-400 invocations on this class of machine (τ is 50 ms of invocation time);
        # ten points 40 apart sample the tail evenly over about one interval. A first
        # run with four points (0/100/200/300) drew mean tails of 114 invocations at
        # N=1,000 and 229 at N=100,000 by phase luck alone.
        return cls(False, (100, 1_000, 10_000, 100_000), tuple(range(0, 400, 40)), 5, 3, 7,
                   (16, 64, 256), (1, 10, 100), (7, 5, 3),
                   (16, 64, 256), (7, 5, 3),
                   20, 500, 64, 10, 300, 20, 10_000, 4096, 16_384)


# -- helpers --------------------------------------------------------------------

def result_value(res: Any) -> int:
    """The single integer an invocation returned."""
    (_, value), = res.results
    return value


# -- (1) recovery vs history length ---------------------------------------------------

def history_info(store: Any, worker_id: str) -> dict[str, Any]:
    """Invocations, snapshots and the tail after the newest snapshot, from the oplog."""
    from golemish.oplog.entries import InvokeStart, Snapshot

    invocations = snapshots = last_snap = 0
    since = 0
    oplog = store.oplog(worker_id)
    for index, kind in oplog.kinds():
        if kind == InvokeStart.KIND:
            invocations += 1
            since += 1
        elif kind == Snapshot.KIND:
            snapshots += 1
            last_snap, since = index, 0
    return {"oplog_entries": oplog.last_index, "invocations": invocations,
            "snapshots_taken": snapshots, "snapshots_kept": len(store.snapshots.indexes(worker_id)),
            "last_snapshot_index": last_snap,
            "tail_entries": oplog.last_index - last_snap if last_snap else oplog.last_index,
            "tail_invocations": since if last_snap else invocations}


def build_history(wasm: bytes, tmp: Path, n: int, offsets: Sequence[int]) -> dict[str, Any]:
    """N invocations of counter `add 1` in one process; pristine copies at N+k.

    The kill point N+0 is the uninterrupted history. For k > 0 the store is reopened
    (a restart: recovery from snapshot + tail) and the history continued to N+k.
    """
    from golemish.runtime.executor import Runtime, RuntimeConfig

    live = tmp / f"history-{n}-live"
    points: list[dict[str, Any]] = []
    with Runtime(RuntimeConfig(home=str(live))) as rt:
        policy = str(rt.config.snapshot_policy)
        rt.deploy(wasm, "counter")
        t0 = time.perf_counter()
        last = None
        for _ in range(n):
            last = rt.invoke(COUNTER, "add", ["1"])
        build_s = time.perf_counter() - t0
        if last is None or result_value(last) != n:
            raise AssertionError(f"history build: last add returned {last and last.results}")
        info = history_info(rt.store, COUNTER)
    done = n
    for k in offsets:
        if n + k > done:
            with Runtime(RuntimeConfig(home=str(live))) as rt:
                for _ in range(n + k - done):
                    last = rt.invoke(COUNTER, "add", ["1"])
                if result_value(last) != n + k:
                    raise AssertionError(f"history N+{k}: add returned {last.results}")
                info = history_info(rt.store, COUNTER)
            done = n + k
        path = tmp / f"history-{n}+{k}"
        fresh_copy(live, path)
        points.append({"k": k, "expected": n + k, "path": str(path),
                       "store_bytes": dir_bytes(path), **info})
    shutil.rmtree(live, ignore_errors=True)
    return {"n": n, "policy": policy, "build_s": build_s,
            "build_us_per_invocation": build_s / n * 1e6, "points": points}


def recover_once(pristine: Path, scratch: Path, point: dict[str, Any], mode: str
                 ) -> dict[str, Any]:
    """Open a fresh Runtime on a copy of the pristine store and recover the worker."""
    from golemish.runtime.executor import Runtime, RuntimeConfig

    fresh_copy(pristine, scratch)
    expected = point["expected"]
    config = RuntimeConfig(home=str(scratch), recovery="replay" if mode == "replay" else "auto")
    with gc_paused():
        t0 = time.perf_counter()
        rt = Runtime(config)
        try:
            t1 = time.perf_counter()
            report = rt.resume(COUNTER)
            t2 = time.perf_counter()
            got = result_value(rt.invoke(COUNTER, "get"))
        finally:
            rt.close()
    where = f"{mode} recovery at N={expected}"
    if report is None or report.finished is not None or report.fallbacks:
        raise AssertionError(f"{where}: unexpected recovery {report}")
    if got != expected:
        raise AssertionError(f"{where}: get returned {got}, expected {expected}")
    if mode == "replay":
        if report.mode != "replay" or report.replayed_invocations != expected:
            raise AssertionError(f"{where}: {report}")
    elif point["snapshots_kept"]:
        if (report.mode != "snapshot" or report.snapshot_index != point["last_snapshot_index"]
                or report.replayed_invocations != point["tail_invocations"]):
            raise AssertionError(f"{where}: {report} (history {point})")
    return {"open_ms": (t1 - t0) * 1e3, "resume_ms": (t2 - t1) * 1e3,
            "total_ms": (t2 - t0) * 1e3, "recovery_ms": report.seconds * 1e3,
            "restore_ms": report.restore_seconds * 1e3, "mode": report.mode,
            "snapshot_index": report.snapshot_index, "entries": report.entries,
            "replayed_invocations": report.replayed_invocations}


def bench_recovery(wasm: bytes, s: Settings, tmp: Path) -> dict[str, Any]:
    builds = {}
    for n in s.history:
        builds[n] = build_history(wasm, tmp, n, s.kill_offsets)
        b = builds[n]
        say(f"  built N={n:,} in {b['build_s']:.1f} s ({b['build_us_per_invocation']:.0f} µs/inv), "
            f"tails at kill points: "
            + ", ".join(f"+{p['k']}: {p['tail_invocations']} inv" for p in b["points"]))
    scratch = tmp / "recovery-scratch"
    first = builds[s.history[0]]["points"][0]
    recover_once(Path(first["path"]), scratch, first, "snapshot")  # warm-up (page cache, code)

    def replay_reps(n: int) -> int:
        return s.replay_repeats_big if n >= 100_000 else s.replay_repeats

    replay: dict[int, list[dict[str, Any]]] = {n: [] for n in s.history}
    snap: dict[tuple[int, int], list[dict[str, Any]]] = {
        (n, p["k"]): [] for n in s.history for p in builds[n]["points"]}
    rounds = max(s.snapshot_repeats, s.replay_repeats, s.replay_repeats_big)
    for r in range(rounds):
        for n in s.history:  # round-robin over N and modes, so drift hits all alike
            jobs: list[Callable[[], None]] = []
            if r < replay_reps(n):
                p0 = builds[n]["points"][0]
                jobs.append(lambda n=n, p0=p0: replay[n].append(
                    recover_once(Path(p0["path"]), scratch, p0, "replay")))
            if r < s.snapshot_repeats:
                for p in builds[n]["points"]:
                    jobs.append(lambda n=n, p=p: snap[(n, p["k"])].append(
                        recover_once(Path(p["path"]), scratch, p, "snapshot")))
            for job in (jobs if r % 2 == 0 else reversed(jobs)):
                job()
    shutil.rmtree(scratch, ignore_errors=True)

    keys = ("open_ms", "resume_ms", "total_ms", "recovery_ms", "restore_ms")
    rows = []
    for n in s.history:
        b = builds[n]
        row: dict[str, Any] = {"n": n, "build_s": b["build_s"],
                               "build_us_per_invocation": b["build_us_per_invocation"],
                               "policy": b["policy"]}
        p0 = b["points"][0]
        row["replay"] = {"kill_point": n, "repeats": len(replay[n]),
                         "entries": replay[n][0]["entries"],
                         "replayed_invocations": replay[n][0]["replayed_invocations"],
                         "store_bytes": p0["store_bytes"],
                         **{k: summary([x[k] for x in replay[n]]) for k in keys[:4]}}
        points = []
        for p in b["points"]:
            xs = snap[(n, p["k"])]
            points.append({
                "k": p["k"], "kill_point": p["expected"], "repeats": len(xs),
                "mode": xs[0]["mode"], "snapshot_index": xs[0]["snapshot_index"],
                "tail_entries": xs[0]["entries"],
                "tail_invocations": xs[0]["replayed_invocations"],
                "history": {k: v for k, v in p.items() if k != "path"},
                **{k: summary([x[k] for x in xs]) for k in keys}})
        row["snapshot_points"] = points
        # Expected recovery at a kill point uniform over the snapshot interval: the mean
        # over kill points of the per-point median.
        row["snapshot"] = {k: statistics.fmean(pt[k]["median"] for pt in points) for k in keys}
        row["snapshot"]["tail_invocations_mean"] = statistics.fmean(
            pt["tail_invocations"] for pt in points)
        row["snapshot_k0"] = {k: points[0][k]["median"] for k in keys}
        for k in ("total_ms", "resume_ms"):
            row[f"speedup_{k}"] = row["replay"][k]["median"] / row["snapshot"][k]
            row[f"speedup_k0_{k}"] = row["replay"][k]["median"] / row["snapshot_k0"][k]
        rows.append(row)

    by_n = {r["n"]: r for r in rows}
    small = 1_000 if 1_000 in by_n else s.history[0]
    big = s.history[-1]
    flat = {k: by_n[big]["snapshot"][k] / by_n[small]["snapshot"][k]
            for k in ("total_ms", "resume_ms", "recovery_ms", "open_ms")}
    flat_k0 = {k: by_n[big]["snapshot_k0"][k] / by_n[small]["snapshot_k0"][k]
               for k in ("total_ms", "resume_ms")}
    # The same at an equal tail: fit ms = fixed + per_invocation * tail over the kill
    # points of each N, and evaluate both fits at the mean tail of all their kill points.
    # This separates what grows with history from the luck of where the kill points fell.
    tails = [p["tail_invocations"] for n in (small, big) for p in by_n[n]["snapshot_points"]]
    equal_tail = statistics.fmean(tails)
    adjusted: dict[str, Any] = {"tail_invocations": equal_tail}
    for k in ("total_ms", "resume_ms"):
        fits = {}
        for n in (small, big):
            pts = by_n[n]["snapshot_points"]
            xs = [p["tail_invocations"] for p in pts]
            if len(set(xs)) < 4:  # too few kill points for a fit to mean anything
                break
            f = statistics.linear_regression(xs, [p[k]["median"] for p in pts])
            fits[n] = {"fixed_ms": f.intercept, "ms_per_tail_invocation": f.slope,
                       "at_equal_tail_ms": f.intercept + f.slope * equal_tail}
        if len(fits) == 2:
            adjusted[k] = {"fits": fits, "flatness": fits[big]["at_equal_tail_ms"]
                           / fits[small]["at_equal_tail_ms"]}
    verdict = {
        "small_n": small, "big_n": big,
        "mean_tail_invocations": {n: by_n[n]["snapshot"]["tail_invocations_mean"]
                                  for n in (small, big)},
        "restore_ms": {n: by_n[n]["snapshot"]["restore_ms"] for n in (small, big)},
        "flatness": flat, "flatness_k0": flat_k0, "flatness_equal_tail": adjusted,
        "speedup_total": by_n[big]["speedup_total_ms"],
        "speedup_resume": by_n[big]["speedup_resume_ms"],
        "target_flatness": TARGET_FLATNESS, "target_speedup": TARGET_SPEEDUP,
        "flatness_pass_total": flat["total_ms"] <= TARGET_FLATNESS,
        "flatness_pass_resume": flat["resume_ms"] <= TARGET_FLATNESS,
        "speedup_pass_total": by_n[big]["speedup_total_ms"] >= TARGET_SPEEDUP,
        "speedup_pass_resume": by_n[big]["speedup_resume_ms"] >= TARGET_SPEEDUP,
    }
    return {"worker": COUNTER, "function": "add 1", "store": "rocksdb",
            "kill_offsets": list(s.kill_offsets), "rows": rows, "verdict": verdict}


def table_recovery(rec: dict[str, Any], s: Settings) -> list[str]:
    v = rec["verdict"]
    lines = [f"(1) recovery of counter `add 1` histories (rocksdb, policy "
             f"{rec['rows'][0]['policy']}): fresh Runtime on a pristine store copy each time",
             f"    full replay: median of {s.replay_repeats} ({s.replay_repeats_big} at "
             f"N≥100k), kill point N; snapshot+tail: median of {s.snapshot_repeats} per kill "
             f"point N+k, k∈{{{', '.join(map(str, s.kill_offsets))}}}, then mean over k",
             f"  {'N':>7} {'mode':9} {'tail inv':>14} {'open ms':>8} {'resume ms':>10} "
             f"{'total ms':>9} {'restore ms':>10} {'replay/snap':>11}"]
    for r in rec["rows"]:
        rp, sp = r["replay"], r["snapshot"]
        lines.append(f"  {r['n']:>7,} {'replay':9} {rp['replayed_invocations']:>14,} "
                     f"{rp['open_ms']['median']:8.1f} {rp['resume_ms']['median']:10.1f} "
                     f"{rp['total_ms']['median']:9.1f} {'':>10} {'':>11}")
        tails = f"mean {sp['tail_invocations_mean']:.0f}"
        lines.append(f"  {'':>7} {'snap+tail':9} {tails:>14} {sp['open_ms']:8.1f} "
                     f"{sp['resume_ms']:10.1f} {sp['total_ms']:9.1f} {sp['restore_ms']:10.2f} "
                     f"{r['speedup_total_ms']:10.1f}×")
        pts = " ".join(f"{p['tail_invocations']}:{p['total_ms']['median']:.0f}"
                       for p in r["snapshot_points"])
        lines.append(f"  {'':>7} per kill point, tail invocations:total ms (median) {pts}")
    f = v["flatness"]
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    lines.append(
        f"  flatness snap(N={v['big_n']:,})/snap(N={v['small_n']:,}): total {f['total_ms']:.2f} "
        f"[{ok(v['flatness_pass_total'])}], resume only {f['resume_ms']:.2f} "
        f"[{ok(v['flatness_pass_resume'])}] (target ≤{TARGET_FLATNESS}); "
        f"open {f['open_ms']:.2f}, replay of tail {f['recovery_ms']:.2f}; "
        f"k=0 only: total {v['flatness_k0']['total_ms']:.2f}, "
        f"resume {v['flatness_k0']['resume_ms']:.2f}")
    adj = v["flatness_equal_tail"]
    if "total_ms" in adj and "resume_ms" in adj:
        fx = {k: adj[k]["fits"] for k in ("total_ms", "resume_ms")}
        lines.append(
            f"  at an equal tail of {adj['tail_invocations']:.0f} invocations (per-N linear fit "
            f"over kill points): flatness total {adj['total_ms']['flatness']:.2f}, resume only "
            f"{adj['resume_ms']['flatness']:.2f}; fixed part {fx['total_ms'][v['small_n']]['fixed_ms']:.0f}"
            f" -> {fx['total_ms'][v['big_n']]['fixed_ms']:.0f} ms total, tail cost "
            f"{fx['total_ms'][v['small_n']]['ms_per_tail_invocation'] * 1e3:.0f} -> "
            f"{fx['total_ms'][v['big_n']]['ms_per_tail_invocation'] * 1e3:.0f} µs/invocation")
    tails, rest = v["mean_tail_invocations"], v["restore_ms"]
    lines.append(
        f"  components N={v['small_n']:,} -> N={v['big_n']:,}: mean tail "
        f"{tails[v['small_n']]:.0f} -> {tails[v['big_n']]:.0f} invocations, restore "
        f"{rest[v['small_n']]:.1f} -> {rest[v['big_n']]:.1f} ms (counter's memory grows "
        f"with its history)")
    lines.append(
        f"  speedup replay/snap at N={v['big_n']:,}: total {v['speedup_total']:.0f}× "
        f"[{ok(v['speedup_pass_total'])}], resume only {v['speedup_resume']:.0f}× "
        f"[{ok(v['speedup_pass_resume'])}] (target ≥{TARGET_SPEEDUP:.0f}×)")
    return lines


# -- (2) snapshot cost -----------------------------------------------------------------

SNAP_MODES = ("uffd", "hash", "full")


def _kv_runtime(home: Path, tracker: str, policy: str = "off") -> Any:
    from golemish.runtime.executor import Runtime, RuntimeConfig
    from golemish.runtime.snapshot.policy import SnapshotPolicy
    from golemish.runtime.snapshot.capture import SnapshotConfig

    return Runtime(RuntimeConfig(home=str(home), memory_limit=512 << 20,
                                 snapshot_policy=SnapshotPolicy.parse(policy),
                                 snapshots=SnapshotConfig(tracker=tracker)))


def bench_snapshot_size(wasm: bytes, mib: int, repeats: int, s: Settings, tmp: Path
                        ) -> list[dict[str, Any]]:
    rts: dict[str, Any] = {}
    setup: dict[str, Any] = {}
    try:
        for mode in SNAP_MODES:
            rt = rts[mode] = _kv_runtime(tmp / f"snap-{mib}-{mode}",
                                         "hash" if mode == "hash" else "uffd")
            rt.deploy(wasm, "kv")
            keys = result_value(rt.invoke(KV, "fill", [str(mib)]))
            pages = result_value(rt.invoke(KV, "mem_pages"))
            t0 = time.perf_counter()
            first = rt.snapshot(KV)  # the base: not measured
            setup[mode] = {"keys": keys, "wasm_pages": pages, "first_snapshot_ms":
                           (time.perf_counter() - t0) * 1e3,
                           "first_changed_pages": first.changed_pages}
            if first.tracker != ("hash" if mode == "hash" else "uffd"):
                raise AssertionError(f"{mode}: snapshot taken with tracker {first.tracker}")
        rows = []
        for pm in s.dirty_permille:
            samples: dict[str, list[float]] = {m: [] for m in SNAP_MODES}
            entries: dict[str, list[Any]] = {m: [] for m in SNAP_MODES}
            for r in range(repeats + 1):  # round 0 is a warm-up
                order = SNAP_MODES[r % 3:] + SNAP_MODES[:r % 3]
                for mode in order:
                    rt = rts[mode]
                    touched = result_value(rt.invoke(KV, "touch", [str(pm)]))
                    with gc_paused():
                        t0 = time.perf_counter()
                        entry = rt.snapshot(KV, full=mode == "full")
                        seconds = time.perf_counter() - t0
                    if entry is None:
                        raise AssertionError(f"{mode}: snapshot impossible")
                    if r:
                        samples[mode].append(seconds * 1e3)
                        entries[mode].append(entry)
            row: dict[str, Any] = {"mib": mib, "permille": pm, "dirty_pct": pm / 10,
                                   "chunks_touched": touched, "repeats": repeats,
                                   "setup": setup}
            for mode in SNAP_MODES:
                e = entries[mode]
                row[mode] = {"ms": summary(samples[mode]),
                             "entry_duration_ms": summary([x.duration_ns / 1e6 for x in e]),
                             "changed_pages": statistics.median(x.changed_pages for x in e),
                             "total_pages": e[0].memory_size // e[0].page_size,
                             "stored_bytes": statistics.median(x.stored_bytes for x in e),
                             "page_size": e[0].page_size, "tracker": e[0].tracker}
            full = row["full"]["ms"]["median"]
            full_entry = row["full"]["entry_duration_ms"]["median"]
            for mode in ("uffd", "hash"):
                row[mode]["ratio_to_full"] = row[mode]["ms"]["median"] / full
                # The same from Snapshot.duration_ns (capture only: hashing, compression;
                # not the store write, which dominates a full snapshot's wall time).
                row[mode]["capture_ratio_to_full"] = (
                    row[mode]["entry_duration_ms"]["median"] / full_entry)
            row["changed_pct"] = 100 * row["uffd"]["changed_pages"] / row["uffd"]["total_pages"]
            rows.append(row)
        return rows
    finally:
        for rt in rts.values():
            rt.close()
        for mode in SNAP_MODES:
            shutil.rmtree(tmp / f"snap-{mib}-{mode}", ignore_errors=True)


def bench_snapshot(wasm: bytes, s: Settings, tmp: Path) -> dict[str, Any]:
    rows = []
    for mib, reps in zip(s.snap_sizes, s.snap_repeats):
        size_rows = bench_snapshot_size(wasm, mib, reps, s, tmp)
        rows += size_rows
        for line in table_snapshot_rows(size_rows):
            say(line)
    tm, tp = TARGET_INCREMENTAL_AT
    target_row = next((r for r in rows if r["mib"] == tm and r["permille"] == tp), None)
    if target_row is None and rows:  # quick mode: the 1 % row of the largest size
        cands = [r for r in rows if r["permille"] == tp] or rows
        target_row = cands[-1]
    verdict = None
    if target_row is not None:
        verdict = {"mib": target_row["mib"], "permille": target_row["permille"],
                   "uffd_ratio": target_row["uffd"]["ratio_to_full"],
                   "hash_ratio": target_row["hash"]["ratio_to_full"],
                   "uffd_capture_ratio": target_row["uffd"]["capture_ratio_to_full"],
                   "hash_capture_ratio": target_row["hash"]["capture_ratio_to_full"],
                   "target": TARGET_INCREMENTAL,
                   "pass": target_row["uffd"]["ratio_to_full"] <= TARGET_INCREMENTAL,
                   "hash_pass": target_row["hash"]["ratio_to_full"] <= TARGET_INCREMENTAL}
    return {"worker": KV, "rows": rows, "verdict": verdict}


def table_snapshot_header(s: Settings) -> list[str]:
    return ["(2) snapshot cost of kv memory, policy off: touch(permille) then time "
            f"rt.snapshot(w); median of {'/'.join(map(str, s.snap_repeats))} repeats "
            f"({'/'.join(map(str, s.snap_sizes))} MiB) after a warm-up, modes interleaved",
            "    dirty = per mille of 4 KiB chunks touched; changed = snapshot pages "
            "(16 KiB) whose hash changed; entry ms = Snapshot.duration_ns (capture only, "
            "what the policy sees)",
            f"  {'MiB':>4} {'dirty':>6} {'changed':>13} {'uffd ms':>8} {'hash ms':>8} "
            f"{'full ms':>8} {'uffd/full':>9} {'hash/full':>9} {'entry ms u/h/f':>20}"]


def table_snapshot_rows(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        u, h, f = r["uffd"], r["hash"], r["full"]
        changed = f"{u['changed_pages']:.0f}/{u['total_pages']} "
        lines.append(
            f"  {r['mib']:>4} {r['dirty_pct']:5.1f}% {changed:>13} "
            f"{u['ms']['median']:8.2f} {h['ms']['median']:8.2f} {f['ms']['median']:8.1f} "
            f"{u['ratio_to_full']:9.3f} {h['ratio_to_full']:9.3f} "
            f"{u['entry_duration_ms']['median']:6.2f}/{h['entry_duration_ms']['median']:.2f}/"
            f"{f['entry_duration_ms']['median']:.1f}")
    return lines


def table_snapshot_verdict(snap: dict[str, Any]) -> list[str]:
    v = snap["verdict"]
    if v is None:
        return []
    return [f"  {v['permille'] / 10:g}%-dirty {v['mib']} MiB incremental/full: uffd "
            f"{v['uffd_ratio']:.3f} [{'PASS' if v['pass'] else 'FAIL'}], hash "
            f"{v['hash_ratio']:.3f} [{'PASS' if v['hash_pass'] else 'FAIL'}] "
            f"(target ≤{TARGET_INCREMENTAL}); capture only (entry ms, no store write): "
            f"uffd {v['uffd_capture_ratio']:.3f}, hash {v['hash_capture_ratio']:.3f}"]


# -- (3) restore vs its floor --------------------------------------------------------

def _floor_once(blobs: list[tuple[int, bytes]], size: int, page_size: int, *,
                prefault: bool) -> float:
    """Seconds to zstd-decompress each stored page and memmove it into place."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        if prefault:
            ctypes.memset(base, 0, size)
        with gc_paused():
            t0 = time.perf_counter()
            decompress, move = dctx.decompress, ctypes.memmove
            for offset, z in blobs:
                data = decompress(z)
                move(base + offset, data, page_size)
            seconds = time.perf_counter() - t0
        return seconds
    finally:
        del base
        buf.close()


def bench_restore_size(wasm: bytes, mib: int, repeats: int, tmp: Path) -> dict[str, Any]:
    from golemish.runtime.executor import Runtime, RuntimeConfig
    from golemish.oplog.manifest import ZERO_HASH, page_hash

    pristine, scratch = tmp / f"restore-{mib}", tmp / f"restore-{mib}-scratch"
    with _kv_runtime(pristine, "auto") as rt:
        rt.deploy(wasm, "kv")
        rt.invoke(KV, "fill", [str(mib)])
        checksum = result_value(rt.invoke(KV, "checksum"))
        entry = rt.snapshot(KV)  # right after the last invocation: the tail is empty
        snap_index = rt.store.oplog(KV).last_index
        # The floor's input: the compressed pages stored for this snapshot, in place.
        manifest = rt.store.snapshots.manifest(KV, snap_index)
        stored = dict(rt.store.snapshots.pages_for(KV, manifest).frames(
            sorted(manifest.nonzero())))
        ps = manifest.page_size
        blobs = [(p * ps, stored[manifest.page(p)])
                 for p in range(manifest.page_count) if manifest.page(p) != ZERO_HASH]
    del stored
    compressed = sum(len(z) for _, z in blobs)
    info = {"mib": mib, "memory_bytes": manifest.memory_size, "page_size": ps,
            "pages": manifest.page_count, "nonzero_pages": len(blobs),
            "compressed_bytes": compressed, "snapshot_changed_pages": entry.changed_pages,
            "store_bytes": dir_bytes(pristine), "repeats": repeats}

    keys = ("restore_ms", "recovery_ms", "open_ms", "resume_ms", "floor_ms",
            "floor_prefaulted_ms", "store_get_ms", "verify_ms")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(repeats + 1):  # round 0 is a warm-up
        fresh_copy(pristine, scratch)
        row: dict[str, float] = {}
        floors = [("floor_ms", False), ("floor_prefaulted_ms", True)]
        if r % 2:
            row.update({k: _floor_once(blobs, manifest.memory_size, ps, prefault=p) * 1e3
                        for k, p in floors})
        with gc_paused():
            t0 = time.perf_counter()
            rt = Runtime(RuntimeConfig(home=str(scratch)))
            t1 = time.perf_counter()
            report = rt.resume(KV)
            t2 = time.perf_counter()
        try:
            if (report is None or report.mode != "snapshot" or report.entries != 0
                    or report.snapshot_index != snap_index or report.fallbacks):
                raise AssertionError(f"restore {mib} MiB: unexpected recovery {report}")
            # Diagnostics, same process and store: what restore does beyond the floor.
            hashes = [manifest.page(p) for p in range(manifest.page_count)]
            hashes = [h for h in hashes if h != ZERO_HASH]
            reader = rt.store.snapshots.pages_for(KV, manifest)
            with gc_paused():
                t3 = time.perf_counter()
                got = list(reader.frames(hashes))
                t4 = time.perf_counter()
            del got
            import zstandard
            datas = [zstandard.ZstdDecompressor().decompress(z) for _, z in blobs[:256]]
            with gc_paused():
                t5 = time.perf_counter()
                for d in datas:
                    page_hash(d)
                t6 = time.perf_counter()
            after = result_value(rt.invoke(KV, "checksum"))
        finally:
            rt.close()
        if after != checksum:
            raise AssertionError(f"restore {mib} MiB: checksum {after} != {checksum}")
        if not r % 2:
            row.update({k: _floor_once(blobs, manifest.memory_size, ps, prefault=p) * 1e3
                        for k, p in floors})
        row.update(restore_ms=report.restore_seconds * 1e3, recovery_ms=report.seconds * 1e3,
                   open_ms=(t1 - t0) * 1e3, resume_ms=(t2 - t1) * 1e3,
                   store_get_ms=(t4 - t3) * 1e3,
                   verify_ms=(t6 - t5) * 1e3 * len(blobs) / max(1, len(datas)))
        if r:
            for k in keys:
                samples[k].append(row[k])
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(pristine, ignore_errors=True)
    out: dict[str, Any] = {**info, **{k: summary(v) for k, v in samples.items()}}
    out["ratio"] = out["restore_ms"]["median"] / out["floor_ms"]["median"]
    out["ratio_prefaulted"] = out["restore_ms"]["median"] / out["floor_prefaulted_ms"]["median"]
    out["ratio_pairwise"] = summary([a / b for a, b in zip(samples["restore_ms"],
                                                             samples["floor_ms"])])
    out["pass"] = out["ratio"] <= TARGET_RESTORE
    out["pass_prefaulted"] = out["ratio_prefaulted"] <= TARGET_RESTORE
    out["verified_checksum"] = checksum
    return out


def bench_restore(wasm: bytes, s: Settings, tmp: Path) -> dict[str, Any]:
    rows = []
    for mib, reps in zip(s.restore_sizes, s.restore_repeats):
        rows.append(bench_restore_size(wasm, mib, reps, tmp))
        for line in table_restore_rows(rows[-1:]):
            say(line)
    return {"worker": KV, "rows": rows, "target": TARGET_RESTORE,
            "pass": all(r["pass"] for r in rows)}


def table_restore_header(s: Settings) -> list[str]:
    return ["(3) restore of kv memory (snapshot right after the last invocation, empty tail) "
            "vs floor = zstd-decompress of the stored pages + memmove into a fresh mmap;",
            f"    median of {'/'.join(map(str, s.restore_repeats))} after a warm-up, "
            "restore and floor alternating; floor* = into a pre-faulted buffer; "
            "get = RocksDB get of every page, verify = xxh3 of every page (diagnostics)",
            f"  {'MiB':>4} {'pages':>6} {'stored MB':>9} {'restore ms':>10} {'floor ms':>9} "
            f"{'ratio':>6} {'floor* ms':>9} {'ratio*':>6} {'get ms':>7} {'verify ms':>9} "
            f"{'open ms':>8}  verdict (target ≤{TARGET_RESTORE}×)"]


def table_restore_rows(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        lines.append(
            f"  {r['mib']:>4} {r['nonzero_pages']:>6} {r['compressed_bytes'] / 1e6:9.1f} "
            f"{r['restore_ms']['median']:10.1f} {r['floor_ms']['median']:9.1f} "
            f"{r['ratio']:5.2f}× {r['floor_prefaulted_ms']['median']:9.1f} "
            f"{r['ratio_prefaulted']:5.2f}× {r['store_get_ms']['median']:7.1f} "
            f"{r['verify_ms']['median']:9.1f} {r['open_ms']['median']:8.1f}  "
            f"{'PASS' if r['pass'] else 'FAIL'} (pre-faulted: "
            f"{'PASS' if r['pass_prefaulted'] else 'FAIL'})")
    return lines


# -- (4) throughput lost to snapshotting --------------------------------------------

class SnapshotTimer:
    """Wraps one worker object's ``snapshot`` to time the snapshots its policy takes."""

    def __init__(self, worker: Any) -> None:
        self.phase = "setup"
        self.log: list[dict[str, Any]] = []
        self.worker = worker
        inner = worker.snapshot

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            entry = inner(*args, **kwargs)
            if entry is not None:
                self.log.append({"phase": self.phase, "wall_s": time.perf_counter() - t0,
                                 "entry_s": entry.duration_ns / 1e9,
                                 "changed_pages": entry.changed_pages,
                                 "pages": entry.memory_size // entry.page_size})
            return entry

        worker.snapshot = timed  # instance attribute: maybe_snapshot() finds it

    def taken(self, phase: str) -> list[dict[str, Any]]:
        return [x for x in self.log if x["phase"] == phase]


def _throughput(name: str, rts: dict[str, Any], timers: dict[str, SnapshotTimer],
                worker_id: str, calls: Callable[[int], list[tuple[str, list[str]]]],
                blocks: int, block: int, phase: str) -> dict[str, Any]:
    """ABBA blocks of the same call sequence on the off and adaptive workers."""
    for t in timers.values():
        t.phase = phase
    samples: dict[str, list[float]] = {p: [] for p in rts}
    for b in range(blocks):
        seq = calls(b)
        order = ("off", "adaptive") if b % 2 == 0 else ("adaptive", "off")
        for policy in order:
            invoke = rts[policy].invoke
            with gc_paused():
                t0 = time.perf_counter()
                for fn, args in seq:
                    invoke(worker_id, fn, args)
                samples[policy].append(time.perf_counter() - t0)
    for t in timers.values():
        t.phase = "between"
    n = blocks * block
    out: dict[str, Any] = {"workload": name, "phase": phase, "blocks": blocks, "block": block,
                           "invocations": n}
    for policy in rts:
        total = sum(samples[policy])
        snaps = timers[policy].taken(phase)
        wall = sum(x["wall_s"] for x in snaps)
        entry = sum(x["entry_s"] for x in snaps)
        out[policy] = {"inv_per_s": n / total, "seconds": total,
                       "block_inv_per_s": summary([block / x for x in samples[policy]]),
                       "snapshots": len(snaps), "snapshot_s": wall, "snapshot_entry_s": entry,
                       "snapshot_share": wall / total, "snapshot_entry_share": entry / total,
                       "snapshot_ms_mean": wall / len(snaps) * 1e3 if snaps else None,
                       "snapshot_changed_pct_mean": statistics.fmean(
                           100 * x["changed_pages"] / x["pages"] for x in snaps) if snaps else None,
                       "invocations_per_snapshot": n / len(snaps) if snaps else None}
    a, o = out["adaptive"], out["off"]
    policy = timers["adaptive"].worker.policy_state
    out["adaptive"]["policy_interval_s_at_end"] = policy.interval_s()
    out["adaptive"]["policy_cost_estimate_ms_at_end"] = (
        policy.cost_s * 1e3 if policy.cost_s is not None else None)
    out["loss"] = 1 - a["inv_per_s"] / o["inv_per_s"]
    out["loss_block_median"] = 1 - (a["block_inv_per_s"]["median"]
                                    / o["block_inv_per_s"]["median"])
    out["loss_pairwise"] = summary([1 - o_ / a_ for o_, a_ in zip(samples["off"],
                                                                  samples["adaptive"])])
    out["target"] = TARGET_LOSS
    # A window in which the policy took no snapshot measures nothing about snapshotting.
    out["exercised"] = a["snapshots"] > 0
    out["pass"] = out["loss"] <= TARGET_LOSS if out["exercised"] else None
    return out


def bench_throughput(wasms: dict[str, bytes], s: Settings, tmp: Path) -> dict[str, Any]:
    from golemish.runtime.executor import Runtime, RuntimeConfig
    from golemish.runtime.snapshot.policy import SnapshotPolicy

    rows = []
    # counter add 1
    rts = {p: Runtime(RuntimeConfig(home=str(tmp / f"tp-counter-{p}"),
                                    snapshot_policy=SnapshotPolicy.parse(p)))
           for p in ("off", "adaptive")}
    try:
        timers = {}
        for p, rt in rts.items():
            rt.deploy(wasms["counter"], "counter")
            rt.invoke(COUNTER, "get")  # creates the worker
            timers[p] = SnapshotTimer(rt.worker(COUNTER))
            for _ in range(500):  # warm-up; the adaptive worker takes its first snapshots
                rt.invoke(COUNTER, "add", ["1"])
        row = _throughput("counter add 1", rts, timers, COUNTER,
                          lambda b: [("add", ["1"])] * s.tp_counter_block,
                          s.tp_counter_blocks, s.tp_counter_block, "measured")
        expect = 500 + s.tp_counter_blocks * s.tp_counter_block
        for p, rt in rts.items():
            if result_value(rt.invoke(COUNTER, "get")) != expect:
                raise AssertionError(f"throughput counter {p}: get != {expect}")
        row["policies"] = {p: str(rt.config.snapshot_policy) for p, rt in rts.items()}
        row["warmup_snapshots"] = timers["adaptive"].taken("setup")
        rows.append(row)
        say(table_throughput_rows(rows[-1:])[0])
    finally:
        for rt in rts.values():
            rt.close()

    # kv put of random keys, 4 KiB values, into a store filled with 64 MiB first
    def puts(seed: int, count: int) -> list[tuple[str, list[str]]]:
        rng = random.Random(seed)
        return [("put", [str(rng.randrange(s.tp_kv_keys)), str(s.tp_kv_value)])
                for _ in range(count)]

    rts = {p: _kv_runtime(tmp / f"tp-kv-{p}", "auto", p) for p in ("off", "adaptive")}
    try:
        timers = {}
        for p, rt in rts.items():
            rt.deploy(wasms["kv"], "kv")
            rt.invoke(KV, "count")  # creates the worker
            timers[p] = SnapshotTimer(rt.worker(KV))
            rt.invoke(KV, "fill", [str(s.tp_kv_mib)])
        # Warm-up until the adaptive worker has its first (full) snapshot, which happens
        # once per worker life; both workers get the same calls.
        warm = 0
        while not timers["adaptive"].taken("setup") and warm < 50_000:
            for fn, args in puts(-1 - warm, 100):
                for rt in rts.values():
                    rt.invoke(KV, fn, args)
            warm += 100
        base = 10_000
        short = _throughput(f"kv put 4K ({s.tp_kv_mib} MiB) short", rts, timers, KV,
                            lambda b: puts(base + b, s.tp_kv_block),
                            s.tp_kv_blocks, s.tp_kv_block, "short")
        short["note"] = ("as briefed: a few thousand puts; the adaptive interval of this "
                         "worker spans far more puts, so a window this short rarely "
                         "contains a snapshot")
        rows.append(short)
        say(table_throughput_rows(rows[-1:])[0])
        long = _throughput(f"kv put 4K ({s.tp_kv_mib} MiB) long", rts, timers, KV,
                           lambda b: puts(2 * base + b, s.tp_kv_long_block),
                           s.tp_kv_long_blocks, s.tp_kv_long_block, "long")
        long["note"] = "steady state: a window spanning several snapshot intervals"
        sums = {p: result_value(rt.invoke(KV, "checksum")) for p, rt in rts.items()}
        if sums["off"] != sums["adaptive"]:
            raise AssertionError(f"throughput kv: checksums differ {sums}")
        for row in (short, long):
            row["warmup_puts"] = warm
            row["first_snapshot"] = timers["adaptive"].taken("setup")
            row["mem_pages_at_end"] = result_value(rts["off"].invoke(KV, "mem_pages"))
            row["policies"] = {p: str(rt.config.snapshot_policy) for p, rt in rts.items()}
        rows.append(long)
        say(table_throughput_rows(rows[-1:])[0])
    finally:
        for rt in rts.values():
            rt.close()
    judged = [r for r in rows if r["exercised"]]
    return {"rows": rows, "target": TARGET_LOSS,
            "pass": bool(judged) and all(r["pass"] for r in judged)}


def table_throughput_header(s: Settings) -> list[str]:
    return ["(4) throughput lost to snapshotting: policy off vs default adaptive, same "
            "process, same calls, interleaved ABBA blocks",
            "    loss = 1 - (adaptive inv/s) / (off inv/s), inv/s = all invocations / all "
            "block time; med = from median block rates; snaps = snapshots the policy took "
            "in the window;",
            "    snap share = their wall time / block time; entry share = the same from "
            "Snapshot.duration_ns (capture only: the policy's cost estimate)",
            f"  {'workload':27} {'invocations':>11} {'off inv/s':>9} {'adapt inv/s':>11} "
            f"{'loss':>6} {'med':>6} {'snaps':>5} {'ms/snap':>8} {'dirty':>6} "
            f"{'snap share':>10} {'entry share':>11}  verdict (target ≤{TARGET_LOSS:.0%})"]


def table_throughput_rows(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        a, o = r["adaptive"], r["off"]
        per = f"{a['snapshot_ms_mean']:.2f}" if a["snapshot_ms_mean"] is not None else "-"
        dirty = (f"{a['snapshot_changed_pct_mean']:.0f}%"
                 if a["snapshot_changed_pct_mean"] is not None else "-")
        verdict = ("PASS" if r["pass"] else "FAIL") if r["exercised"] else \
            "n/a (no snapshot in the window)"
        lines.append(
            f"  {r['workload']:27} {r['invocations']:>11,} {o['inv_per_s']:9.0f} "
            f"{a['inv_per_s']:11.0f} {r['loss']:6.1%} {r['loss_block_median']:6.1%} "
            f"{a['snapshots']:>5} {per:>8} {dirty:>6} {a['snapshot_share']:10.1%} "
            f"{a['snapshot_entry_share']:11.1%}  {verdict}")
    return lines


# -- driver ---------------------------------------------------------------------------

def headline(result: dict[str, Any]) -> dict[str, Any]:
    h: dict[str, Any] = {}
    if "recovery" in result:
        v = result["recovery"]["verdict"]
        adj = v["flatness_equal_tail"]
        if "total_ms" in adj and "resume_ms" in adj:
            h.update(recovery_flatness_equal_tail_total=adj["total_ms"]["flatness"],
                     recovery_flatness_equal_tail_resume=adj["resume_ms"]["flatness"])
        h.update(recovery_flatness_total=v["flatness"]["total_ms"],
                 recovery_flatness_resume=v["flatness"]["resume_ms"],
                 recovery_speedup_total=v["speedup_total"],
                 recovery_flatness_pass=v["flatness_pass_total"],
                 recovery_flatness_resume_pass=v["flatness_pass_resume"],
                 recovery_speedup_pass=v["speedup_pass_total"])
    if "snapshot" in result and result["snapshot"]["verdict"]:
        v = result["snapshot"]["verdict"]
        h.update(incremental_over_full_uffd=v["uffd_ratio"],
                 incremental_over_full_hash=v["hash_ratio"], incremental_pass=v["pass"])
    if "restore" in result:
        h.update({f"restore_over_floor_{r['mib']}mib": r["ratio"]
                  for r in result["restore"]["rows"]})
        h["restore_pass"] = result["restore"]["pass"]
    if "throughput" in result:
        for r in result["throughput"]["rows"]:
            key = r["workload"].split()[0] + ("" if r["phase"] == "measured" else "_" + r["phase"])
            h[f"throughput_loss_{key}"] = r["loss"]
            h[f"throughput_snapshots_{key}"] = r["adaptive"]["snapshots"]
        h["throughput_pass"] = result["throughput"]["pass"]
    return h


def run(s: Settings, only: Sequence[str], out: Path) -> dict[str, Any]:
    t_start = time.perf_counter()
    machine = machine_info()
    wasm = guest_modules(("counter", "kv"))
    result: dict[str, Any] = {"benchmark": "bench_snapshot", "settings": asdict(s),
                              "sections_run": list(only), "machine": machine,
                              "notes": {k: v for k, v in NOTES.items() if k in only}}
    say(f"golemish bench_snapshot ({'quick' if s.quick else 'full'}) — {machine['date']}, "
        f"{machine['platform']}, {machine['cpu_count']} CPUs, Python {machine['python']}, "
        f"wasmtime {machine['wasmtime']}, uffd {'yes' if machine['uffd_available'] else 'no'}, "
        f"load {machine['loadavg_at_start']}")
    with tempfile.TemporaryDirectory(prefix="golemish-bench-snap-") as tmp_s:
        tmp = Path(tmp_s)

        def run_one(section: str) -> list[str]:
            if section == "recovery":
                say("(1) recovery: building histories ...")
                result["recovery"] = bench_recovery(wasm["counter"], s, tmp)
                lines = table_recovery(result["recovery"], s)
            elif section == "snapshot":
                for line in table_snapshot_header(s):
                    say(line)
                result["snapshot"] = bench_snapshot(wasm["kv"], s, tmp)
                lines = table_snapshot_verdict(result["snapshot"])
            elif section == "restore":
                for line in table_restore_header(s):
                    say(line)
                result["restore"] = bench_restore(wasm["kv"], s, tmp)
                lines = []
            else:
                for line in table_throughput_header(s):
                    say(line)
                result["throughput"] = bench_throughput(wasm, s, tmp)
                lines = []
            return lines

        loads, timings = run_sections(SECTIONS, only, run_one)
    machine["loadavg_at_end"] = loadavg()
    result.update(headline=headline(result), loadavg_by_section=loads,
                  section_seconds=timings, elapsed_s=time.perf_counter() - t_start,
                  out=str(out))
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    h = result["headline"]
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    lines = ["", "summary" + (" (quick: sizes too small for the targets to mean much)"
                              if result["settings"]["quick"] else "")]
    if "recovery_flatness_total" in h:
        lines.append(f"  recovery flatness (≤{TARGET_FLATNESS}): total "
                     f"{h['recovery_flatness_total']:.2f} {ok(h['recovery_flatness_pass'])}, "
                     f"resume-only {h['recovery_flatness_resume']:.2f} "
                     f"{ok(h['recovery_flatness_resume_pass'])}; speedup (≥{TARGET_SPEEDUP:.0f}×) "
                     f"{h['recovery_speedup_total']:.0f}× {ok(h['recovery_speedup_pass'])}")
    if "incremental_over_full_uffd" in h:
        lines.append(f"  incremental/full (≤{TARGET_INCREMENTAL}): uffd "
                     f"{h['incremental_over_full_uffd']:.3f} {ok(h['incremental_pass'])}, hash "
                     f"{h['incremental_over_full_hash']:.3f}")
    if "restore_pass" in h:
        ratios = ", ".join(f"{k.split('_')[-1]}: {v:.2f}×" for k, v in h.items()
                           if k.startswith("restore_over_floor"))
        lines.append(f"  restore/floor (≤{TARGET_RESTORE}×): {ratios} {ok(h['restore_pass'])}")
    if "throughput_pass" in h:
        losses = ", ".join(
            f"{k.removeprefix('throughput_loss_')}: {v:.1%} "
            f"({h['throughput_snapshots_' + k.removeprefix('throughput_loss_')]} snaps)"
            for k, v in h.items() if k.startswith("throughput_loss"))
        lines.append(f"  throughput loss (≤{TARGET_LOSS:.0%}): {losses} "
                     f"{ok(h['throughput_pass'])}")
    lines.append(f"elapsed {result['elapsed_s']:.1f} s; load at end "
                 f"{result['machine']['loadavg_at_end']}; JSON: {result['out']}")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: tiny sizes and few repeats (< 60 s)")
    p.add_argument("--only", choices=SECTIONS, action="append",
                   help="run only this section (repeatable)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"JSON output path (default: {DEFAULT_OUT.relative_to(ROOT)}; "
                        "bench_snapshot_quick.json with --quick, "
                        "bench_snapshot_SECTION.json with --only)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    s = Settings.make(args.quick)
    only = tuple(sec for sec in SECTIONS if not args.only or sec in args.only)
    out: Path = args.out or RESULTS / (
        "bench_snapshot" + ("_quick" if args.quick else "")
        + ("_" + "_".join(only) if args.only else "") + ".json")
    result = run(s, only, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for line in summary_lines(result):
        say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
