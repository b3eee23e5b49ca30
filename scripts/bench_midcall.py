#!/usr/bin/env python
"""Mid-call snapshot benchmarks for golemish: recovering inside one long invocation.

Run from the repository root::

    python scripts/bench_midcall.py              # full run (a few minutes)
    python scripts/bench_midcall.py --quick      # smoke test, about a minute
    python scripts/bench_midcall.py --only recovery

Snapshots between invocations cannot help a worker whose history is ONE long
invocation: recovery must replay it from its start. Stackful (asyncified)
components can be snapshotted at a host call inside the invocation
(``runtime/snapshot/stackful.py``). Four sections, each measured side by side in one
process so that ratios are taken within the run (the machine is shared and
noisy: every headline is a median over repeats or a ratio of medians):

1. ``recovery`` — ONE invocation of the ``journal`` guest's ``clocks(K)`` (K
   ``clock_time_get`` calls), K = 1,000 / 10,000 / 100,000, killed with SIGKILL
   right after its K-th host call: the worker and its component are created
   first, then a child process runs the invocation with
   ``GOLEMISH_CRASH_AT=after-host-call:K``, so the crash counter counts only
   that invocation's calls. Each crashed store is copied once (pristine); every
   recovery repeat opens a fresh Runtime on a new copy and times
   ``rt.resume(worker)`` (recovery finishes the invocation and appends, so a
   store is never recovered twice). Rows:

   - full replay: normal component, ``RuntimeConfig(recovery="replay")``;
   - boundary snapshots: normal component, default ``adaptive`` policy. No
     snapshot can fall inside the single invocation, so this is a replay of the
     whole invocation too — that is the point of the row;
   - mid-call (adaptive): component deployed with ``stackful=True``, default
     ``adaptive`` policy, which counts time spent inside the invocation;
   - mid-call (calls:1000): the same with a mid-call snapshot every 1,000 host
     calls.

   The two normal rows recover the same crashed store (they differ only in the
   recovery setting); each stackful row has its own.

2. ``size`` — asyncify's code-size overhead: ``journal`` and ``agent`` deployed
   normally and with ``stackful=True``; the stored module sizes (and the
   compiled native code) compared.

3. ``throughput`` — asyncify's throughput overhead: ``clocks(1000)`` on live
   durable workers of the normal and the stackful component, interleaved ABBA
   pairs, with snapshot policy ``off`` (instrumentation alone) and ``adaptive``
   (the stackful worker then also takes mid-call snapshots).

4. ``promise`` — resume-from-promise latency. The agent's ``run(R)`` export does,
   per round, GET next-action (``runtime.testing.EffectSink`` on 127.0.0.1), a
   durable sleep (``AGENT_SLEEP_MS=0``), then awaits a promise. All R rounds are
   ONE invocation, so the history before the R-th await lies inside it. Each
   round's promise is completed in turn (``rt.complete_promise(pid, b"approve")``)
   and the completion of the R-th one is timed: a normal worker replays the
   invocation so far; a stackful one restores the snapshot it took when it
   unwound at the await and replays nothing.

Results go to tables on stdout (each printed as its section completes) and to
JSON (``--out``) with machine info, load, settings, raw samples and medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
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
DEFAULT_OUT = RESULTS / "bench_midcall.json"
BUILD_DIR = ROOT / "guest_examples" / "build"

SECTIONS = ("recovery", "size", "throughput", "promise")

#: (1) mid-call recovery at the largest K over the smallest: at most this ("flat").
TARGET_FLATNESS = 1.2
#: (1) mid-call recovery at K=10,000: under this many ms (1/10 of Restate's figure).
TARGET_MS_AT = 10_000
RESTATE_S = 0.45
TARGET_MS = RESTATE_S * 1e3 / 10

WORKER = "bench"  # worker name under each component
CRASH_POINT = "after-host-call"

#: Method notes, copied into the JSON so that the numbers travel with their caveats.
NOTES = {
    "recovery": (
        "One invocation clocks(K) on a worker created beforehand (count(), no host calls), "
        "killed by GOLEMISH_CRASH_AT=after-host-call:K in a child process: the K-th "
        "clock_time_get ran but was not recorded, so the oplog holds InvokeStart + K-1 "
        "HostCall entries (plus the mid-call Snapshot entries of stackful workers). Recovery "
        "replays the recorded calls (all K-1, or those after the newest mid-call snapshot), "
        "performs call K live and records the invocation's end. 'resume' is rt.resume() "
        "(RecoveryReport.seconds plus what ensure_ready does after it: the adaptive policy "
        "may snapshot a long replayed tail right away, see snaps_in_resume); 'open' is "
        "Runtime() on the crashed store, which replays RocksDB's write-ahead log, so it grows "
        "with the oplog whatever the recovery mode; 'total' = open + resume. Where the last "
        "mid-call snapshot falls before the kill depends on wall time in the crashed run "
        "(adaptive) or on K mod N (calls:N; K is a multiple of 1,000, so calls:1000 always "
        "snapshots right before call K and replays nothing: its best case). The spacing of "
        "mid-call snapshots in the crashed run (calls_between_snapshots) bounds the tail a "
        "kill elsewhere would leave. The two normal rows recover the same crashed store."),
    "size": (
        "'before' is the module as built (and as stored by a normal deploy); 'after' is the "
        "module a stackful=True deploy stores: Binaryen asyncify (imports that may unwind: "
        "golemish.* and the recorded WASI calls) followed by Binaryen -O2, which also "
        "re-optimises the original code. 'native' is wasmtime's compiled code for each "
        "(with golemish's snapshot instrumentation)."),
    "throughput": (
        "Same Runtime (on-disk store), four workers (normal/stackful × policy off/adaptive), "
        "the same calls, interleaved (normal/stackful in ABBA order, the policies "
        "alternating) after a warm-up. With policy off neither worker snapshots: the difference is "
        "the instrumented code plus the Python wrapper every unwindable import goes through. "
        "With adaptive the normal worker snapshots between invocations and the stackful one "
        "also inside them."),
    "promise": (
        "Per repeat, one new worker per variant runs run(R) in one invocation; every "
        "round's promise is completed in turn in the same Runtime (the worker was released "
        "while suspended, so each completion is a recovery). Latency = the "
        "rt.complete_promise() call: recovery plus the rest of the invocation up to the "
        "next await (for the last round: the payment POST and the return). replayed = "
        "RecoveryReport.replayed_host_calls of that recovery."),
}


@dataclass(frozen=True)
class Settings:
    quick: bool
    ks: tuple[int, ...]              # (1) host calls in the one invocation
    repeats: int                     # (1) recoveries per (K, row) ...
    replay_repeats_big: int          # ... for the replaying rows at K >= 100,000
    calls_every: int                 # (1) the calls:N row
    tp_arg: int                      # (3) clocks(N)
    tp_warmup: int
    tp_pairs: int
    rounds: int                      # (4) R
    promise_repeats: int

    @classmethod
    def make(cls, quick: bool, repeats: int | None = None) -> Settings:
        if quick:
            return cls(True, (1_000, 5_000), repeats or 2, repeats or 2, 1_000,
                       1_000, 2, 9, 10, 2)
        return cls(False, (1_000, 10_000, 100_000), repeats or 5, repeats or 3, 1_000,
                   1_000, 5, 41, 50, 5)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    store: str       # which crashed store it recovers: "plain" or "stackful-<policy>"
    recovery: str    # RuntimeConfig.recovery
    midcall: bool


def rows_for(s: Settings) -> tuple[Row, ...]:
    calls = f"calls:{s.calls_every}"
    return (Row("replay", "full replay", "plain", "replay", False),
            Row("boundary", "boundary snapshots (adaptive)", "plain", "auto", False),
            Row("midcall", "mid-call (adaptive)", "stackful-adaptive", "auto", True),
            Row("midcall-calls", f"mid-call ({calls})", f"stackful-{calls}", "auto", True))


# -- helpers --------------------------------------------------------------------

def single(results: Sequence[tuple[str, Any]]) -> int:
    """The single integer in a list of typed results."""
    (_, value), = results
    return int(value)


def result_value(res: Any) -> int:
    """The single integer an invocation returned."""
    return single(res.results)


class Stackful:
    """Asyncified bytes of each guest, made once by a real stackful=True deploy."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[bytes, float]] = {}

    def get(self, name: str, wasm: bytes) -> tuple[bytes, float]:
        """(the module a stackful deploy stores, seconds that deploy took)."""
        if name not in self._cache:
            from golemish.runtime.executor import Runtime, RuntimeConfig

            with Runtime(RuntimeConfig(home="memory://")) as rt:
                t0 = time.perf_counter()
                meta = rt.deploy(wasm, name, stackful=True).meta
                seconds = time.perf_counter() - t0
                if not meta.get("stackful"):
                    raise AssertionError(f"{name}: a stackful=True deploy is not stackful")
                self._cache[name] = (rt.store.get_wasm(meta["hash"]), seconds)
        return self._cache[name]


# -- (1) recovery of one invocation killed at host call K ----------------------------

#: The crashed run. Clock entries normally wait in memory for the next commit (up to
#: MAX_PENDING_ENTRIES of them, or a mid-call snapshot), so a kill loses the last ones
#: and recovery runs them again live: correct, since nobody saw them, but then K calls
#: would not be K recorded calls. The child commits every entry, as a workload whose
#: every step is seen by someone (output, an effect) does, so that the K-1 calls
#: before the kill are on disk and recovery has all of them to replay or skip.
CHILD = """\
import sys
import golemish.oplog.worker_oplog
golemish.oplog.worker_oplog.MAX_PENDING_ENTRIES = 1
from golemish.runtime.executor import Runtime, RuntimeConfig
home, worker, k = sys.argv[1:4]
rt = Runtime(RuntimeConfig(home=home))
rt.invoke(worker, "clocks", [k])
print("clocks returned: no crash", flush=True)
"""

_U64 = struct.Struct("<Q")


def crashed_info(home: Path, worker_id: str) -> dict[str, Any]:
    """What the crashed run left: entries, mid-call snapshots, the tail, the clock sum."""
    from golemish.oplog import HostCall, InvokeStart, Snapshot, open_store

    with open_store(str(home)) as store:
        oplog = store.oplog(worker_id)
        start = None
        calls = snaps = last_snap = tail = 0
        total = max_clock = 0
        snap_at: list[int] = []  # host calls recorded before each mid-call snapshot
        for index, entry in oplog.read():
            if isinstance(entry, InvokeStart):
                start = index if entry.function == "clocks" else start
            elif start is None:
                continue
            elif isinstance(entry, HostCall):
                calls += 1
                tail += 1
                value = _U64.unpack(entry.response)[0]
                total += value
                max_clock = max(max_clock, value)
            elif isinstance(entry, Snapshot):
                snaps += 1
                last_snap, tail = index, 0
                snap_at.append(calls)
        gaps = [b - a for a, b in zip([0, *snap_at], snap_at)]
        return {"oplog_entries": oplog.last_index, "invoke_start": start,
                "recorded_host_calls": calls, "midcall_snapshots": snaps,
                "last_snapshot_index": last_snap, "tail_host_calls": tail,
                "calls_between_snapshots": summary(gaps) if gaps else None,
                "snapshots_kept": len(store.snapshots.indexes(worker_id)),
                "clock_sum": total, "max_clock": max_clock}


def build_crashed(wasm: bytes, comp: str, stackful: bool, policy: str, k: int,
                  tmp: Path) -> dict[str, Any]:
    """Create the worker, then kill a child process at the K-th host call of clocks(K)."""
    from golemish.runtime.executor import Runtime, RuntimeConfig
    from golemish.runtime.snapshot.policy import SnapshotPolicy

    live = tmp / f"crash-{comp}-{policy.replace(':', '')}-{k}-live"
    shutil.rmtree(live, ignore_errors=True)
    worker_id = f"{comp}/{WORKER}"
    with Runtime(RuntimeConfig(home=str(live))) as rt:
        meta = rt.deploy(wasm, comp, stackful=stackful).meta
        if bool(meta.get("stackful")) != stackful:
            raise AssertionError(f"{comp}: stackful is {meta.get('stackful')}")
        if result_value(rt.invoke(worker_id, "count")) != 0:  # creates it; no host calls
            raise AssertionError(f"{worker_id}: count != 0")
        rt.configure(worker_id, snapshot_policy=SnapshotPolicy.parse(policy))
    env = {**os.environ, "GOLEMISH_CRASH_AT": f"{CRASH_POINT}:{k}"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(live), worker_id, str(k)],
                          env=env, capture_output=True, text=True, timeout=1800,
                          check=False)
    child_s = time.perf_counter() - t0
    if proc.returncode != -9:
        raise AssertionError(f"{worker_id} clocks({k}) with {CRASH_POINT}:{k}: exit "
                             f"{proc.returncode}, expected SIGKILL; stdout {proc.stdout!r} "
                             f"stderr {proc.stderr[-2000:]!r}")
    pristine = tmp / f"crash-{comp}-{policy.replace(':', '')}-{k}"
    fresh_copy(live, pristine)
    info = crashed_info(live, worker_id)  # opens (and so changes) the live copy only
    shutil.rmtree(live, ignore_errors=True)
    if info["recorded_host_calls"] != k - 1:
        raise AssertionError(f"{worker_id}: {info['recorded_host_calls']} host calls recorded "
                             f"before the kill at {k}, expected {k - 1}")
    return {"k": k, "component": comp, "stackful": stackful, "policy": policy,
            "worker": worker_id, "path": str(pristine), "store_bytes": dir_bytes(pristine),
            "child_s": child_s, **info}


def recover_once(point: dict[str, Any], row: Row, scratch: Path) -> dict[str, Any]:
    """Open a fresh Runtime on a copy of the crashed store and time rt.resume()."""
    from golemish.oplog import Snapshot
    from golemish.runtime.executor import Runtime, RuntimeConfig

    fresh_copy(Path(point["path"]), scratch)
    worker_id, k = point["worker"], point["k"]
    with gc_paused():
        t0 = time.perf_counter()
        rt = Runtime(RuntimeConfig(home=str(scratch), recovery=row.recovery))
        try:
            t1 = time.perf_counter()
            report = rt.resume(worker_id)
            t2 = time.perf_counter()
            after = list(rt.store.oplog(worker_id).kinds(point["oplog_entries"] + 1))
            count = result_value(rt.invoke(worker_id, "count"))
        finally:
            rt.close()
    where = f"{row.label} at K={k:,}"
    if report is None or report.finished is None or not report.finished["ok"] \
            or report.finished["function"] != "clocks" or report.fallbacks:
        raise AssertionError(f"{where}: unexpected recovery {report}")
    # The result is the sum of every clock value: the K-1 recorded (from restored memory
    # and/or replay) plus call K, performed live by the recovery, so no earlier than any.
    live_clock = (single(report.finished["results"]) - point["clock_sum"]) % (1 << 64)
    if not 0 <= live_clock - point["max_clock"] < 86_400 * 10**9:
        raise AssertionError(f"{where}: result inconsistent with the recorded clocks "
                             f"(call K would have read {live_clock})")
    if count != 0:
        raise AssertionError(f"{where}: count after recovery {count}")
    snaps_in_resume = sum(1 for _, kind in after if kind == Snapshot.KIND)
    return {"open_ms": (t1 - t0) * 1e3, "resume_ms": (t2 - t1) * 1e3,
            "total_ms": (t2 - t0) * 1e3, "report_ms": report.seconds * 1e3,
            "restore_ms": report.restore_seconds * 1e3, "mode": report.mode,
            "snapshot_index": report.snapshot_index, "entries": report.entries,
            "replayed_host_calls": report.replayed_host_calls,
            "replayed_invocations": report.replayed_invocations,
            "snaps_in_resume": snaps_in_resume, "appended": len(after)}


def bench_recovery(wasm: bytes, stackful: Stackful, s: Settings, tmp: Path) -> dict[str, Any]:
    rows = rows_for(s)
    swasm, _ = stackful.get("journal", wasm)
    builds: dict[tuple[int, str], dict[str, Any]] = {}
    for k in s.ks:
        for store in dict.fromkeys(r.store for r in rows):
            if store == "plain":
                b = build_crashed(wasm, "journal", False, "adaptive", k, tmp)
            else:
                b = build_crashed(swasm, "journal-stackful", True,
                                  store.removeprefix("stackful-"), k, tmp)
            builds[(k, store)] = b
            gaps = b["calls_between_snapshots"]
            say(f"  crashed K={k:,} {store}: child {b['child_s']:.1f} s, "
                f"{b['midcall_snapshots']} mid-call snapshots"
                + (f" (every ~{gaps['median']:.0f} calls)" if gaps else "")
                + f", tail {b['tail_host_calls']:,} calls, store "
                f"{b['store_bytes'] / 2**20:.1f} MiB")
    scratch = tmp / "recovery-scratch"
    first = builds[(s.ks[0], "plain")]
    recover_once(first, rows[1], scratch)  # warm-up (page cache, code)

    def reps(row: Row, k: int) -> int:
        return s.replay_repeats_big if (not row.midcall and k >= 100_000) else s.repeats

    samples: dict[tuple[int, str], list[dict[str, Any]]] = {
        (k, r.key): [] for k in s.ks for r in rows}
    for rnd in range(max(s.repeats, s.replay_repeats_big)):
        jobs: list[Callable[[], None]] = []
        for k in s.ks:  # round-robin over K and rows, so drift hits all alike
            for r in rows:
                if rnd < reps(r, k):
                    jobs.append(lambda k=k, r=r: samples[(k, r.key)].append(
                        recover_once(builds[(k, r.store)], r, scratch)))
        for job in (jobs if rnd % 2 == 0 else reversed(jobs)):
            job()
    shutil.rmtree(scratch, ignore_errors=True)

    keys = ("open_ms", "resume_ms", "total_ms", "report_ms", "restore_ms")
    out_rows = []
    anomalies: list[str] = []
    for k in s.ks:
        for r in rows:
            xs = samples[(k, r.key)]
            b = builds[(k, r.store)]
            modes = sorted({x["mode"] for x in xs})
            replayed = sorted({x["replayed_host_calls"] for x in xs})
            expected_tail = b["tail_host_calls"] if r.midcall else k - 1
            expected_mode = ("snapshot (mid-call)" if r.midcall and b["midcall_snapshots"]
                             else "replay")
            if replayed != [expected_tail]:
                anomalies.append(f"{r.label} K={k:,}: replayed_host_calls {replayed}, expected "
                                 f"{expected_tail}")
            if modes != [expected_mode]:
                anomalies.append(f"{r.label} K={k:,}: mode {modes}, expected {expected_mode}")
            out_rows.append({
                "k": k, "row": r.key, "label": r.label, "recovery": r.recovery,
                "store": r.store, "repeats": len(xs), "mode": modes[0] if len(modes) == 1
                else modes, "replayed_host_calls": replayed[0] if len(replayed) == 1
                else replayed, "entries": xs[0]["entries"],
                "snaps_in_resume": summary([x["snaps_in_resume"] for x in xs]),
                "crashed": {key: v for key, v in b.items() if key != "path"},
                **{key: summary([x[key] for x in xs]) for key in keys}})
    by = {(x["k"], x["row"]): x for x in out_rows}
    small, big = s.ks[0], s.ks[-1]
    at = TARGET_MS_AT if TARGET_MS_AT in s.ks else s.ks[-1]
    verdict: dict[str, Any] = {"small_k": small, "big_k": big, "target_at_k": at,
                               "target_flatness": TARGET_FLATNESS, "target_ms": TARGET_MS}
    for key in ("midcall", "midcall-calls"):
        v: dict[str, Any] = {}
        for metric in ("resume_ms", "total_ms", "report_ms"):
            flat = by[(big, key)][metric]["median"] / by[(small, key)][metric]["median"]
            ms = by[(at, key)][metric]["median"]
            v[metric] = {"flatness": flat, "flat_pass": flat <= TARGET_FLATNESS,
                         "ms_at_target_k": ms, "ms_pass": ms < TARGET_MS}
        verdict[key] = v
    for k in s.ks:
        base = by[(k, "replay")]
        verdict.setdefault("speedup_over_replay", {})[k] = {
            key: {m: base[m]["median"] / by[(k, key)][m]["median"]
                  for m in ("resume_ms", "total_ms")}
            for key in ("boundary", "midcall", "midcall-calls")}
    return {"worker_function": "clocks(K)", "crash_point": CRASH_POINT, "store": "rocksdb",
            "rows": out_rows, "verdict": verdict, "anomalies": anomalies}


def table_recovery(rec: dict[str, Any], s: Settings) -> list[str]:
    lines = [f"(1) recovery of ONE invocation clocks(K), killed right after host call K "
             f"(child process, {CRASH_POINT}:K); fresh Runtime on a pristine copy each time,",
             f"    median of {s.repeats} ({s.replay_repeats_big} for the replaying rows at "
             f"K≥100k); resume = rt.resume(), total = Runtime open + resume, report = "
             f"RecoveryReport.seconds",
             f"  {'K':>7} {'row':30} {'mode':19} {'replayed':>8} {'snaps':>5} {'+snap':>5} "
             f"{'open ms':>8} {'resume ms':>10} {'total ms':>9} {'report ms':>9} "
             f"{'restore ms':>10} {'×replay':>8}"]
    by = {(x["k"], x["row"]): x for x in rec["rows"]}
    for x in rec["rows"]:
        crashed = x["crashed"]
        snaps = crashed["midcall_snapshots"] if x["row"].startswith("midcall") else "-"
        speed = by[(x["k"], "replay")]["resume_ms"]["median"] / x["resume_ms"]["median"]
        mode = x["mode"] if isinstance(x["mode"], str) else "/".join(x["mode"])
        lines.append(
            f"  {x['k']:>7,} {x['label']:30} {mode:19} {x['replayed_host_calls']!s:>8} "
            f"{snaps!s:>5} {x['snaps_in_resume']['median']:>5g} {x['open_ms']['median']:8.1f} "
            f"{x['resume_ms']['median']:10.1f} {x['total_ms']['median']:9.1f} "
            f"{x['report_ms']['median']:9.1f} {x['restore_ms']['median']:10.2f} {speed:7.1f}×")
    lines.append("    snaps = mid-call snapshots the crashed run took; +snap = snapshots taken "
                 "inside rt.resume() after recovery (adaptive policy, long replayed tail); "
                 "×replay = full-replay resume time over this row's")
    v = rec["verdict"]
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    for key, label in (("midcall", "mid-call (adaptive)"),
                       ("midcall-calls", f"mid-call (calls:{s.calls_every})")):
        parts = []
        for metric, name in (("resume_ms", "resume"), ("total_ms", "total incl. open"),
                             ("report_ms", "report")):
            m = v[key][metric]
            parts.append(f"{name}: {m['flatness']:.2f} {ok(m['flat_pass'])}, "
                         f"{m['ms_at_target_k']:.1f} ms {ok(m['ms_pass'])}")
        lines.append(f"  {label}: K={v['big_k']:,}/K={v['small_k']:,} (≤{TARGET_FLATNESS}) "
                     f"and at K={v['target_at_k']:,} (<{TARGET_MS:.0f} ms) — "
                     + "; ".join(parts))
    for a in rec["anomalies"]:
        lines.append(f"  ANOMALY: {a}")
    return lines


# -- (2) code size ---------------------------------------------------------------------

def bench_size(wasms: dict[str, bytes], stackful: Stackful) -> dict[str, Any]:
    from golemish.runtime import components
    from golemish.runtime.executor import Runtime, RuntimeConfig

    rows = []
    with Runtime(RuntimeConfig(home="memory://")) as rt:
        for name, wasm in wasms.items():
            swasm, asyncify_s = stackful.get(name, wasm)
            plain = rt.deploy(wasm, name).meta
            stack = rt.deploy(swasm, f"{name}-stackful", stackful=True).meta

            def native(meta: dict[str, Any]) -> int:
                code = rt.store.get_compiled(components._compiled_key(rt.engine, meta["hash"]))
                return len(code) if code is not None else -1

            rows.append({"guest": name, "before_bytes": plain["size"],
                         "after_bytes": stack["size"],
                         "ratio": stack["size"] / plain["size"],
                         "native_before_bytes": native(plain),
                         "native_after_bytes": native(stack),
                         "native_ratio": native(stack) / native(plain),
                         "stackful_deploy_s": asyncify_s})
    return {"rows": rows}


def table_size(size: dict[str, Any]) -> list[str]:
    lines = ["(2) asyncify code size: stored module of a normal deploy vs a stackful=True one "
             "(asyncify + Binaryen -O2); native = wasmtime compiled code",
             f"  {'guest':8} {'wasm before':>11} {'wasm after':>11} {'ratio':>6} "
             f"{'native before':>13} {'native after':>12} {'ratio':>6} {'deploy s':>8}"]
    for r in size["rows"]:
        lines.append(f"  {r['guest']:8} {r['before_bytes']:>11,} {r['after_bytes']:>11,} "
                     f"{r['ratio']:5.2f}× {r['native_before_bytes']:>13,} "
                     f"{r['native_after_bytes']:>12,} {r['native_ratio']:5.2f}× "
                     f"{r['stackful_deploy_s']:8.1f}")
    return lines


# -- (3) throughput ------------------------------------------------------------------------

def _snapshot_count(rt: Any, worker_id: str) -> int:
    from golemish.oplog import Snapshot
    return sum(1 for _, kind in rt.store.oplog(worker_id).kinds() if kind == Snapshot.KIND)


def bench_throughput(wasm: bytes, stackful: Stackful, s: Settings, tmp: Path) -> dict[str, Any]:
    """clocks(N) on four live workers (normal/stackful × off/adaptive), interleaved."""
    from golemish.runtime.executor import Runtime, RuntimeConfig
    from golemish.runtime.snapshot.policy import SnapshotPolicy

    swasm, _ = stackful.get("journal", wasm)
    policies = ("off", "adaptive")
    ids = {(sf, p): f"{'journal-stackful' if sf else 'journal'}/{p}"
           for p in policies for sf in (False, True)}
    home = tmp / "throughput"
    shutil.rmtree(home, ignore_errors=True)
    arg = [str(s.tp_arg)]
    with Runtime(RuntimeConfig(home=str(home))) as rt:
        rt.deploy(wasm, "journal")
        rt.deploy(swasm, "journal-stackful", stackful=True)
        for (_, p), w in ids.items():
            rt.invoke(w, "count")
            rt.configure(w, snapshot_policy=SnapshotPolicy.parse(p))
        for _ in range(s.tp_warmup):
            for w in ids.values():
                rt.invoke(w, "clocks", arg)
        len0 = {k: rt.store.oplog(w).last_index for k, w in ids.items()}
        snaps0 = {k: _snapshot_count(rt, w) for k, w in ids.items()}
        samples: dict[tuple[bool, str], list[float]] = {k: [] for k in ids}
        with gc_paused():
            for i in range(s.tp_pairs):
                for p in (policies if i % 2 == 0 else policies[::-1]):
                    for sf in ((False, True) if (i // 2) % 2 == 0 else (True, False)):  # ABBA
                        t0 = time.perf_counter()
                        rt.invoke(ids[(sf, p)], "clocks", arg)
                        samples[(sf, p)].append((time.perf_counter() - t0) * 1e3)
        snaps = {k: _snapshot_count(rt, w) - snaps0[k] for k, w in ids.items()}
        for k, w in ids.items():
            grew = rt.store.oplog(w).last_index - len0[k]
            if grew != (s.tp_arg + 2) * s.tp_pairs + snaps[k]:
                raise AssertionError(f"throughput {w}: oplog grew by {grew}")
    rows = []
    for p in policies:
        n, a = summary(samples[(False, p)]), summary(samples[(True, p)])
        pair = summary([b / c for b, c in zip(samples[(True, p)], samples[(False, p)])])
        rows.append({"policy": p, "workload": f"clocks({s.tp_arg})", "pairs": s.tp_pairs,
                     "warmup": s.tp_warmup, "plain_ms": n, "stackful_ms": a,
                     "ratio": a["median"] / n["median"], "ratio_pairwise": pair,
                     "plain_us_per_call": n["median"] * 1e3 / s.tp_arg,
                     "stackful_us_per_call": a["median"] * 1e3 / s.tp_arg,
                     "snapshots": {"plain": snaps[(False, p)], "stackful": snaps[(True, p)]}})
    return {"rows": rows}


def table_throughput(tp: dict[str, Any]) -> list[str]:
    lines = ["(3) asyncify throughput: one invocation on live durable workers (rocksdb), "
             "normal vs stackful component, interleaved ABBA pairs",
             f"  {'policy':9} {'workload':13} {'normal ms':>9} {'stackful ms':>11} "
             f"{'µs/call':>7} {'µs/call':>7} {'ratio':>6} {'pair IQR':>11} "
             f"{'snaps (normal/stackful)':>24}"]
    for r in tp["rows"]:
        pr = r["ratio_pairwise"]
        lines.append(f"  {r['policy']:9} {r['workload']:13} {r['plain_ms']['median']:9.2f} "
                     f"{r['stackful_ms']['median']:11.2f} {r['plain_us_per_call']:7.1f} "
                     f"{r['stackful_us_per_call']:7.1f} {r['ratio']:5.2f}× "
                     f"{pr['q1']:5.2f}–{pr['q3']:<5.2f} "
                     f"{r['snapshots']['plain']:>11}/{r['snapshots']['stackful']:<12}")
    return lines


# -- (4) resume from a promise -------------------------------------------------------------

def run_agent(rt: Any, worker_id: str, url: str, rounds: int) -> dict[str, Any]:
    """run(R) in one invocation; complete each round's promise in turn."""
    from golemish.runtime.errors import Suspended

    env = [("AGENT_URL", url), ("AGENT_SLEEP_MS", "0")]
    try:
        rt.invoke(worker_id, "run", [str(rounds)], env=env)
        raise AssertionError(f"{worker_id}: run({rounds}) returned without awaiting")
    except Suspended as e:
        susp = e
    latencies: list[float] = []
    last: Any = None
    with gc_paused():
        for r in range(1, rounds + 1):
            if susp is None or susp.promise is None:
                raise AssertionError(f"{worker_id}: round {r} is not awaiting a promise")
            t0 = time.perf_counter()
            _, outcome = rt.complete_promise(susp.promise, b"approve")
            latencies.append((time.perf_counter() - t0) * 1e3)
            if isinstance(outcome, Suspended):
                susp = outcome
            else:
                susp, last = None, outcome
    if last is None or susp is not None:
        raise AssertionError(f"{worker_id}: still suspended after {rounds} rounds")
    expected = 100 * rounds * (rounds + 1) // 2
    if not last.finished or not last.finished["ok"] or \
            last.finished["results"] != [("i64", expected)]:
        raise AssertionError(f"{worker_id}: run({rounds}) finished with {last.finished}, "
                             f"expected {expected}")
    return {"latencies_ms": latencies, "last_ms": latencies[-1],
            "report_ms": last.seconds * 1e3, "restore_ms": last.restore_seconds * 1e3,
            "mode": last.mode, "replayed_host_calls": last.replayed_host_calls,
            "entries": last.entries}


def bench_promise(wasm: bytes, stackful: Stackful, s: Settings, tmp: Path) -> dict[str, Any]:
    from golemish.runtime.executor import Runtime, RuntimeConfig
    from golemish.runtime.testing import EffectSink

    swasm, _ = stackful.get("agent", wasm)
    comps = {False: "agent", True: "agent-stackful"}
    samples: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    home = tmp / "promise"
    shutil.rmtree(home, ignore_errors=True)
    with EffectSink() as sink, Runtime(RuntimeConfig(home=str(home))) as rt:
        rt.deploy(wasm, comps[False], http_allow=[sink.address])  # nothing else is reachable
        rt.deploy(swasm, comps[True], stackful=True, http_allow=[sink.address])
        run_agent(rt, f"{comps[True]}/warmup", sink.url, 2)  # code, page cache
        run_agent(rt, f"{comps[False]}/warmup", sink.url, 2)
        for rep in range(s.promise_repeats):
            for sf in ((False, True) if rep % 2 == 0 else (True, False)):
                samples[sf].append(run_agent(rt, f"{comps[sf]}/p{rep}", sink.url, s.rounds))
        stats = sink.stats()
    pays = sum(stats["deliveries"].values())
    expected_pays = (2 * s.promise_repeats * s.rounds) + 2 * 2
    if pays != expected_pays or any(n != 1 for n in stats["deliveries"].values()):
        raise AssertionError(f"promise: {pays} payments delivered, expected {expected_pays} "
                             f"each once")
    rows = []
    for sf in (False, True):
        xs = samples[sf]
        mid = [statistics.median(x["latencies_ms"][:-1]) for x in xs] if s.rounds > 1 else [0.0]
        rows.append({
            "variant": "stackful" if sf else "normal", "component": comps[sf],
            "rounds": s.rounds, "repeats": len(xs),
            "mode": sorted({x["mode"] for x in xs}),
            "replayed_host_calls": sorted({x["replayed_host_calls"] for x in xs}),
            "entries": sorted({x["entries"] for x in xs}),
            "last_ms": summary([x["last_ms"] for x in xs]),
            "report_ms": summary([x["report_ms"] for x in xs]),
            "restore_ms": summary([x["restore_ms"] for x in xs]),
            "first_ms": summary([x["latencies_ms"][0] for x in xs]),
            "earlier_rounds_median_ms": summary(mid),
            "latencies_ms": [x["latencies_ms"] for x in xs]})
    normal, stack = rows
    return {"rows": rows, "payments": pays,
            "speedup_last": normal["last_ms"]["median"] / stack["last_ms"]["median"],
            "stackful_replays_nothing": stack["replayed_host_calls"] == [0]}


def table_promise(pr: dict[str, Any]) -> list[str]:
    r0 = pr["rows"][0]
    lines = [f"(4) resume from a promise: agent run({r0['rounds']}) in ONE invocation, each "
             f"round's promise completed in turn; latency of rt.complete_promise() of round "
             f"R, median of {r0['repeats']}",
             f"  {'variant':9} {'mode':19} {'replayed':>8} {'round R ms':>10} "
             f"{'report ms':>9} {'restore ms':>10} {'round 1 ms':>10} {'rounds<R ms':>11}"]
    for r in pr["rows"]:
        lines.append(f"  {r['variant']:9} {'/'.join(r['mode']):19} "
                     f"{'/'.join(map(str, r['replayed_host_calls'])):>8} "
                     f"{r['last_ms']['median']:10.2f} {r['report_ms']['median']:9.2f} "
                     f"{r['restore_ms']['median']:10.2f} {r['first_ms']['median']:10.2f} "
                     f"{r['earlier_rounds_median_ms']['median']:11.2f}")
    lines.append(f"  round R: normal/stackful {pr['speedup_last']:.1f}×; stackful replayed "
                 f"nothing: {'yes' if pr['stackful_replays_nothing'] else 'NO'}; "
                 f"{pr['payments']} payments, each delivered once")
    return lines


# -- driver ---------------------------------------------------------------------------

def headline(result: dict[str, Any]) -> dict[str, Any]:
    h: dict[str, Any] = {}
    if "recovery" in result:
        v = result["recovery"]["verdict"]
        for key in ("midcall", "midcall-calls"):
            name = key.replace("-", "_")
            for metric in ("resume_ms", "total_ms"):
                m = v[key][metric]
                tag = metric.removesuffix("_ms")
                h[f"{name}_flatness_{tag}"] = m["flatness"]
                h[f"{name}_flatness_{tag}_pass"] = m["flat_pass"]
                h[f"{name}_ms_at_{v['target_at_k']}_{tag}"] = m["ms_at_target_k"]
                h[f"{name}_ms_at_{v['target_at_k']}_{tag}_pass"] = m["ms_pass"]
        h["recovery_anomalies"] = len(result["recovery"]["anomalies"])
    if "size" in result:
        for r in result["size"]["rows"]:
            h[f"asyncify_size_ratio_{r['guest']}"] = r["ratio"]
    if "throughput" in result:
        for r in result["throughput"]["rows"]:
            h[f"asyncify_throughput_ratio_{r['policy']}"] = r["ratio"]
    if "promise" in result:
        pr = result["promise"]
        h["promise_last_ms_normal"] = pr["rows"][0]["last_ms"]["median"]
        h["promise_last_ms_stackful"] = pr["rows"][1]["last_ms"]["median"]
        h["promise_speedup"] = pr["speedup_last"]
        h["promise_stackful_replays_nothing"] = pr["stackful_replays_nothing"]
    return h


def run(s: Settings, only: Sequence[str], out: Path) -> dict[str, Any]:
    t_start = time.perf_counter()
    machine = machine_info()
    wasm = guest_modules(("journal", "agent"))
    stackful = Stackful()
    result: dict[str, Any] = {"benchmark": "bench_midcall", "settings": asdict(s),
                              "sections_run": list(only), "machine": machine,
                              "targets": {"flatness": TARGET_FLATNESS, "ms": TARGET_MS,
                                          "ms_at_k": TARGET_MS_AT, "restate_s": RESTATE_S},
                              "notes": {k: v for k, v in NOTES.items() if k in only}}
    say(f"golemish bench_midcall ({'quick' if s.quick else 'full'}) — {machine['date']}, "
        f"{machine['platform']}, {machine['cpu_count']} CPUs, Python {machine['python']}, "
        f"wasmtime {machine['wasmtime']}, asyncify via {machine['asyncify_tool']}, "
        f"load {machine['loadavg_at_start']}")
    with tempfile.TemporaryDirectory(prefix="golemish-bench-midcall-") as tmp_s:
        tmp = Path(tmp_s)

        def run_one(section: str) -> list[str]:
            if section == "recovery":
                say("(1) recovery: crashing one invocation per K and store ...")
                result["recovery"] = bench_recovery(wasm["journal"], stackful, s, tmp)
                lines = table_recovery(result["recovery"], s)
            elif section == "size":
                result["size"] = bench_size(wasm, stackful)
                lines = table_size(result["size"])
            elif section == "throughput":
                result["throughput"] = bench_throughput(wasm["journal"], stackful, s, tmp)
                lines = table_throughput(result["throughput"])
            else:
                result["promise"] = bench_promise(wasm["agent"], stackful, s, tmp)
                lines = table_promise(result["promise"])
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
    lines = ["", "summary" + (" (quick: K too small for the targets to mean much)"
                              if result["settings"]["quick"] else "")]
    if "recovery" in result:
        v = result["recovery"]["verdict"]
        at = v["target_at_k"]
        for key, label in (("midcall", "mid-call (adaptive)"),
                           ("midcall-calls", "mid-call (calls:N)")):
            n = key.replace("-", "_")
            lines.append(
                f"  {label:20} flat K={v['big_k']:,}/K={v['small_k']:,} (≤{TARGET_FLATNESS}): "
                f"resume {h[f'{n}_flatness_resume']:.2f} "
                f"{ok(h[f'{n}_flatness_resume_pass'])}, total "
                f"{h[f'{n}_flatness_total']:.2f} {ok(h[f'{n}_flatness_total_pass'])}; "
                f"K={at:,} <{TARGET_MS:.0f} ms: resume {h[f'{n}_ms_at_{at}_resume']:.1f} "
                f"{ok(h[f'{n}_ms_at_{at}_resume_pass'])}, total "
                f"{h[f'{n}_ms_at_{at}_total']:.1f} {ok(h[f'{n}_ms_at_{at}_total_pass'])}")
        if h["recovery_anomalies"]:
            lines.append(f"  {h['recovery_anomalies']} recovery anomalies (see above)")
    if "size" in result:
        lines.append("  asyncify size: " + ", ".join(
            f"{r['guest']} {r['ratio']:.2f}×" for r in result["size"]["rows"]))
    if "throughput" in result:
        lines.append("  asyncify throughput (stackful/normal time): " + ", ".join(
            f"policy {r['policy']} {r['ratio']:.2f}×" for r in result["throughput"]["rows"]))
    if "promise" in result:
        lines.append(f"  resume from promise at round R: normal "
                     f"{h['promise_last_ms_normal']:.1f} ms, stackful "
                     f"{h['promise_last_ms_stackful']:.1f} ms "
                     f"({h['promise_speedup']:.1f}×), stackful replayed nothing: "
                     f"{'yes' if h['promise_stackful_replays_nothing'] else 'NO'}")
    lines.append(f"elapsed {result['elapsed_s']:.1f} s; load at end "
                 f"{result['machine']['loadavg_at_end']}; JSON: {result['out']}")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: K up to 5,000, R=10, few repeats (about a minute)")
    p.add_argument("--only", choices=SECTIONS, action="append",
                   help="run only this section (repeatable)")
    p.add_argument("--repeats", type=int, default=None,
                   help="(1) recoveries per K and row (default 5, 3 for replaying rows at "
                        "K=100k; quick 2)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"JSON output path (default: {DEFAULT_OUT.relative_to(ROOT)}; "
                        "bench_midcall_quick.json with --quick, "
                        "bench_midcall_SECTION.json with --only)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.environ.pop("GOLEMISH_CRASH_AT", None) is not None:
        print("note: GOLEMISH_CRASH_AT ignored (only the crash children get one)",
              file=sys.stderr)
    s = Settings.make(args.quick, args.repeats)
    only = tuple(sec for sec in SECTIONS if not args.only or sec in args.only)
    out: Path = args.out or RESULTS / (
        "bench_midcall" + ("_quick" if args.quick else "")
        + ("_" + "_".join(only) if args.only else "") + ".json")
    result = run(s, only, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for line in summary_lines(result):
        say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
