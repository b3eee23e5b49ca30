#!/usr/bin/env python3
"""Run the benchmarks and the crash campaign, then write docs/benchmarks.md with plots.

    python scripts/bench_report.py            # run everything (about 20-30 minutes)
    python scripts/bench_report.py --reuse    # only rebuild the report from scripts/results/
    python scripts/bench_report.py --quick    # small sizes, to check the pipeline
    python scripts/bench_report.py --only faults [--reuse]   # just the Faults section
    python scripts/bench_report.py --only server [--reuse]   # just the Server section

Every figure comes from one run of one script, measured side by side there, as
medians and ratios; the machine each was measured on is noted. Plots need
matplotlib (`pip install -e '.[bench]'`); without it the report has tables only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "scripts" / "results"
DOCS = ROOT / "docs"
IMG = DOCS / "img"

BENCHES = {  # name -> (script, extra args for a full run, for --quick)
    "bench_core": ("bench_core.py", [], ["--quick"]),
    "bench_snapshot": ("bench_snapshot.py", [], ["--quick"]),
    "bench_midcall": ("bench_midcall.py", [], ["--quick"]),
    "crash_campaign": ("crash_campaign.py", ["--kills", "1000"], ["--quick"]),
    "fault_campaign": ("fault_campaign.py", ["--faults", "500"], ["--quick"]),
    "bench_serve": ("bench_serve.py", [], ["--quick"]),
}


def _sleeper_rows(sl: dict) -> list[list]:
    """One row per GC mode measured (older results: one row, Python's collector)."""
    modes = sl.get("by_gc_mode") or {"python": sl}
    return [[sl["sleepers"], {"python": "Python's, any time",
                              "scheduled": "the waker's, between deadlines"}[m],
             r["lateness_ms"]["p50"], r["lateness_ms"]["p99"], r["lateness_ms"]["max"],
             r["server_rss_mib"]] for m, r in modes.items()]


def run_all(quick: bool, only: list[str] | None = None) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name, (script, full, small) in BENCHES.items():
        if only is not None and name not in only:
            continue
        out = RESULTS / f"{name}.json"
        cmd = [sys.executable, str(ROOT / "scripts" / script), "--out", str(out),
               *(small if quick else full)]
        print(f"$ {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        proc = subprocess.run(cmd)
        print(f"  {name}: exit {proc.returncode} in {time.time() - t0:.0f} s", flush=True)


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def med(x: Any) -> float:
    return float(x["median"]) if isinstance(x, dict) else float(x)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def machine(d: dict[str, Any]) -> str:
    m = d.get("machine", {})
    return (f"{m.get('platform', '?')}, {m.get('cpu_count', '?')} CPUs, Python "
            f"{m.get('python', '?')}, wasmtime {m.get('wasmtime', '?')}, "
            f"{m.get('date', '?')}")


class Plots:
    def __init__(self) -> None:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            self.plt: Any = plt
        except ImportError:
            self.plt = None
        IMG.mkdir(parents=True, exist_ok=True)

    def line(self, name: str, title: str, xlabel: str, ylabel: str,
             series: dict[str, tuple[list[float], list[float]]], *, logx: bool = False,
             logy: bool = False) -> str:
        if self.plt is None:
            return ""
        fig, ax = self.plt.subplots(figsize=(6.4, 4))
        for label, (xs, ys) in series.items():
            ax.plot(xs, ys, marker="o", label=label)
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(IMG / f"{name}.png", dpi=110)
        self.plt.close(fig)
        return f"\n![{title}](img/{name}.png)\n"

    def bars(self, name: str, title: str, ylabel: str, labels: list[str],
             groups: dict[str, list[float]]) -> str:
        if self.plt is None:
            return ""
        fig, ax = self.plt.subplots(figsize=(6.4, 4))
        width = 0.8 / max(1, len(groups))
        for i, (label, values) in enumerate(groups.items()):
            ax.bar([x + i * width for x in range(len(labels))], values, width, label=label)
        ax.set_xticks([x + width * (len(groups) - 1) / 2 for x in range(len(labels))], labels)
        ax.set(title=title, ylabel=ylabel)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(IMG / f"{name}.png", dpi=110)
        self.plt.close(fig)
        return f"\n![{title}](img/{name}.png)\n"


def section_recovery(d: dict[str, Any], p: Plots) -> str:
    rows, xs, rep, snap = [], [], [], []
    for r in d["recovery"]["rows"]:
        n, r_ms, s_ms = r["n"], med(r["replay"]["total_ms"]), med(r["snapshot"]["total_ms"])
        rows.append([f"{n:,}", r_ms, s_ms, f"{r_ms / s_ms:.0f}x",
                     f"{r['snapshot'].get('tail_invocations_mean', 0):.0f}"])
        xs.append(n)
        rep.append(r_ms)
        snap.append(s_ms)
    h = d["headline"]
    text = ("## Recovery time against history length\n\n"
            "One counter worker, N invocations of `add 1`, then a new process recovers it "
            "(time from opening the store to the worker being live). Full replay against "
            "the newest snapshot plus the oplog tail, default (adaptive) policy.\n\n"
            + table(["invocations", "full replay ms", "snapshot+tail ms", "speedup",
                     "tail (invocations)"], rows)
            + f"\n\nSnapshot+tail from 1,000 to 100,000 invocations: "
              f"**{h['recovery_flatness_total']:.2f}x** (target at most 1.2x). At 100,000: "
              f"**{h['recovery_speedup_total']:.0f}x faster** than full replay "
              "(target at least 100x).\n")
    return text + p.line("recovery_vs_history", "Recovery time vs history length",
                         "invocations in the oplog", "recovery (ms)",
                         {"full replay": (xs, rep), "snapshot + tail": (xs, snap)},
                         logx=True, logy=True)


def section_restore(d: dict[str, Any], p: Plots) -> str:
    rows, xs, rest, floor = [], [], [], []
    for r in d["restore"]["rows"]:
        rows.append([r["mib"], med(r["restore_ms"]), med(r["floor_ms"]), f"{r['ratio']:.2f}x"])
        xs.append(r["mib"])
        rest.append(med(r["restore_ms"]))
        floor.append(med(r["floor_ms"]))
    text = ("## Recovery time against memory size\n\n"
            "Restore of a kv worker's snapshot into a fresh instance, against the floor "
            "measured in the same run: zstd decompression of the same stored pages plus a "
            "copy into fresh memory. Target: within 2x of the floor.\n\n"
            + table(["memory MiB", "restore ms", "floor ms", "restore / floor"], rows) + "\n")
    return text + p.line("restore_vs_memory", "Restore time vs memory size", "memory (MiB)",
                         "ms", {"restore": (xs, rest), "floor": (xs, floor)})


def section_snapshot_cost(d: dict[str, Any], p: Plots) -> str:
    rows, groups, labels = [], {"userfaultfd": [], "hashing": [], "full": []}, []
    for r in d["snapshot"]["rows"]:
        u, hsh, f = (r[k]["ms"] for k in ("uffd", "hash", "full"))
        u, hsh, f = med(u), med(hsh), med(f)
        rows.append([r["mib"], r["dirty_pct"], u, hsh, f, f"{u / f:.1%}"])
        if r["mib"] == 64:
            labels.append(f"{r['dirty_pct']}%")
            groups["userfaultfd"].append(u)
            groups["hashing"].append(hsh)
            groups["full"].append(f)
    h = d["headline"]
    text = ("## Snapshot cost against dirty fraction\n\n"
            "kv workers of 16, 64 and 256 MiB; a fraction of the memory is rewritten, then "
            "a snapshot is taken with each dirty tracker, and as a full capture.\n\n"
            + table(["MiB", "dirty %", "uffd ms", "hash ms", "full ms", "uffd / full"], rows)
            + f"\n\n1%-dirty 64 MiB snapshot: **{h['incremental_over_full_uffd']:.1%}** of a "
              f"full one with userfaultfd, {h['incremental_over_full_hash']:.1%} with hashing "
              "(target at most 10%).\n")
    return text + p.bars("snapshot_cost", "Snapshot cost, 64 MiB", "ms", labels, groups)


def section_core(d: dict[str, Any], p: Plots) -> str:
    rows = [[r["store"], r["workload"], med(r["durable_ms"]), med(r["ephemeral_ms"]),
             f"{r['ratio']:.2f}x"] for r in d["durable_vs_ephemeral"]]
    text = ("## Durable against ephemeral\n\n"
            "One invocation making 1,000 host calls, recorded (durable) and not (ephemeral), "
            "same guest, same process, interleaved. Target at most 1.2x (Golem's nightly "
            "benchmark shows 3.5x).\n\n"
            + table(["store", "workload", "durable ms", "ephemeral ms", "ratio"], rows) + "\n")
    rock = [r for r in d["durable_vs_ephemeral"] if r["store"] == "rocksdb"]
    return text + p.bars("durable_vs_ephemeral", "Durable vs ephemeral invocation", "ms",
                         [r["workload"] for r in rock],
                         {"durable": [med(r["durable_ms"]) for r in rock],
                          "ephemeral": [med(r["ephemeral_ms"]) for r in rock]})


def section_throughput(d: dict[str, Any]) -> str:
    rows = [[r["workload"], f"{r['loss']:.1%}", "yes" if r.get("pass") else "no"]
            for r in d["throughput"]["rows"] if r.get("phase", "measured") == "measured"]
    return ("## Throughput lost to snapshotting\n\nThe same workload with snapshots off and "
            "under the default adaptive policy, interleaved in blocks. Target at most 10%.\n\n"
            + table(["workload", "loss", "within target"], rows) + "\n")


def section_midcall(d: dict[str, Any], p: Plots) -> str:
    rows, series = [], {}
    for r in d["recovery"]["rows"]:
        rows.append([f"{r['k']:,}", r["label"], r["mode"], r["replayed_host_calls"],
                     med(r["resume_ms"]), med(r["total_ms"])])
        xs, ys = series.setdefault(r["label"], ([], []))
        xs.append(r["k"])
        ys.append(med(r["resume_ms"]))
    h = d["headline"]
    text = ("## Mid-call snapshots (stackful components)\n\n"
            "One invocation of K host calls (journal `clocks(K)`) killed right after call K "
            "and recovered: full replay, boundary snapshots only (no help inside one "
            "invocation), and mid-call snapshots of an asyncified component. *resume* is the "
            "recovery itself; *total* adds opening the store in a new process.\n\n"
            + table(["K", "configuration", "mode", "replayed calls", "resume ms", "total ms"],
                    rows)
            + f"\n\nMid-call (adaptive) from K=1,000 to 100,000: resume "
              f"{h['midcall_flatness_resume']:.2f}x, total {h['midcall_flatness_total']:.2f}x "
              f"(target at most 1.2x). At K=10,000: resume "
              f"{h['midcall_ms_at_10000_resume']:.0f} ms, total "
              f"{h['midcall_ms_at_10000_total']:.0f} ms (target under 45 ms, a tenth of "
              "Restate's 0.45 s). Asyncify cost: "
              f"{h['asyncify_size_ratio_journal']:.2f}x code size on journal, "
              f"{h['asyncify_size_ratio_agent']:.2f}x on agent; run time "
              f"{h['asyncify_throughput_ratio_adaptive']:.2f}x. Resume from a promise after "
              f"50 rounds in one invocation: {h['promise_last_ms_normal']:.0f} ms by replay, "
              f"{h['promise_last_ms_stackful']:.0f} ms from a mid-call snapshot with nothing "
              "replayed.\n")
    return text + p.line("midcall_recovery", "Recovering one long invocation", "K (host calls)",
                         "resume (ms)", series, logx=True, logy=True)


def section_campaign(d: dict[str, Any], p: Plots) -> str:
    inv = d["invariants"]
    rows = [[k.replace("_", " "), v] for k, v in inv.items()]
    lat = d.get("recovery_latency") or d["recovery"]
    lat_rows = [[mode, v["recoveries"], v["p50_ms"], v["p99_ms"], v["max_ms"]]
                for mode, v in lat.items()]
    kills = ", ".join(f"{k} {v}" for k, v in sorted(d["kills_by_point"].items()))
    text = ("## Crash campaign\n\n"
            f"**{d['kills']} kills**, {d['ops_acknowledged']:,} invocations acknowledged, "
            f"{d.get('elapsed_s', d.get('summary', {}).get('seconds', 0)) / 60:.0f} minutes, result: **{'OK' if d['ok'] else 'FAILED'}**. "
            "Nine workers (counter, journal, kv and the agent against a local HTTP sink, under "
            "three snapshot policies) run a deterministic stream of invocations, each with an "
            "idempotency key; the driver is killed with SIGKILL at every crash point in turn "
            "and from outside at random moments, and after every kill the campaign checks "
            "that acknowledged invocations are recorded and ran once, results match a "
            "crash-free reference, each payment reached the sink once, and the store check "
            f"is clean. Kills: {kills}.\n\n"
            + table(["invariant broken", "count"], rows) + "\n\nRecovery latency per mode "
            "(every worker recovered after every kill):\n\n"
            + table(["mode", "recoveries", "p50 ms", "p99 ms", "max ms"], lat_rows) + "\n")
    return text + p.bars("campaign_latency", "Recovery latency in the campaign", "ms",
                         ["p50", "p99"], {m: [v["p50_ms"], v["p99_ms"]]
                                          for m, v in lat.items()})


FAULT_OUTCOMES = ("correct", "clean-error", "silent-wrong", "traceback", "crash", "timeout")
#: The same campaign on the code before issue 10's store fixes, kept beside the final run.
FAULT_BASELINE = ROOT / "scripts" / "fault_campaign_baseline.json"


def arrows(label: str, before: dict[str, int], after: dict[str, int],
           outcomes: list[str]) -> list[str]:
    """One table row of "before → after" counts, and the totals."""
    return [label, *(f"{before.get(o, 0)} → {after.get(o, 0)}" for o in outcomes),
            f"{sum(before.values())} → {sum(after.values())}"]


def faults_before_after(d: dict[str, Any], outcomes: list[str]) -> str:
    """Outcome counts before the store fixes (the baseline file) and in this run."""
    if not FAULT_BASELINE.exists():
        return ""
    b = json.loads(FAULT_BASELINE.read_text())
    rows = [arrows("**all**", b["outcomes"], d["outcomes"], outcomes)]
    rows += [arrows(kind, b["table"].get(kind, {}), row, outcomes)
             for kind, row in d["table"].items() if sum(row.values())]
    return (f"**Before → after** (file kind: outcome counts before → after). Before: "
            f"{b['what']}; measured {b['measured'][:10]}, seed {b['seed']}, {b['faults']} "
            f"faults ({b['seconds_per_fault']:.2f} s per fault). After: this run, seed "
            f"{d['seed']}, {d['faults']} faults, measured "
            f"{d.get('machine', {}).get('date', '?')[:10]} on the final code. The plan of "
            "faults takes the kinds of file in turn, so both runs damage each kind about "
            "equally often.\n\n"
            + table(["file kind", *outcomes, "faults"], rows) + "\n\n")


def section_faults(d: dict[str, Any]) -> str:
    """The fault campaign: outcomes by file kind, and every badly handled fault."""
    outcomes = [o for o in FAULT_OUTCOMES if o in d["outcomes"]]
    rows = [[kind, *(row.get(o, 0) for o in outcomes), sum(row.values())]
            for kind, row in d["table"].items() if sum(row.values())]
    rows.append(["**all**", *(d["outcomes"][o] for o in outcomes), d["faults"]])
    by_type: dict[str, dict[str, int]] = {}
    for r in d["results"]:
        t = by_type.setdefault(r["fault"], dict.fromkeys(outcomes, 0))
        t[r["outcome"]] += 1
    base = json.loads(FAULT_BASELINE.read_text()) if FAULT_BASELINE.exists() else None
    type_rows = [[t, *(c[o] for o in outcomes), sum(c.values())] for t, c in by_type.items()]
    if base:
        type_rows = [arrows(t, base["by_fault_type"].get(t, {}), c, outcomes)
                     for t, c in by_type.items()]
    bad = [r for r in d["results"] if r["outcome"] not in ("correct", "clean-error")]
    text = ("## Faults\n\n"
            f"**{d['faults']} faults**, seed {d['seed']}, {d['seconds'] / 60:.1f} minutes "
            f"({d['seconds_per_fault']:.2f} s per fault, {d['jobs']} at a time), result: "
            f"**{'OK' if d['ok'] else 'FAILED'}**"
            f"{'' if d['original_unchanged'] else ' (the original store was modified!)'}. "
            "`scripts/fault_campaign.py` builds a store with workers of every guest (counter, "
            "kv, journal, the typed cart and echo, the agent, stackful counter and journal; "
            "snapshots every 1 to 4 invocations or never; the last writes only in the "
            "write-ahead log), then damages one file of a copy per fault: random bytes "
            "flipped, truncated or deleted, in table files (SST; *pages*: those of the "
            "snapshot pages), the WAL, MANIFEST, CURRENT, OPTIONS, the compiled-code cache "
            "and identity files. Every worker's reading function and `store check --deep` "
            "then run through the CLI, each in its own process. *correct*: every answer is "
            "the crash-free truth; *clean-error*: one-line errors, the other answers true, "
            "and the check does not say ok; *silent-wrong*: a wrong answer, or the check "
            "says ok while a command failed.\n\n"
            f"_Measured on: {machine(d)}._\n\n"
            + (faults_before_after(d, outcomes)
               or table(["file kind", *outcomes, "faults"], rows) + "\n\n")
            + "By fault type" + (" (before → after)" if base else "") + ":\n\n"
            + table(["fault", *outcomes, "faults"], type_rows) + "\n")
    if bad:
        text += (f"\nBadly handled ({len(bad)}; reproduce one with `{d.get('reproduce', '')}`"
                 "):\n\n" + table(["#", "outcome", "file kind", "fault", "what happened"], [
                     [r["index"], r["outcome"], r["kind"], r["what"],
                      r["detail"][:160].replace("|", "\\|").replace("\n", " ")]
                     for r in bad[:25]]) + "\n")
        if len(bad) > 25:
            text += f"\n… and {len(bad) - 25} more in the JSON.\n"
    return text


def section_server(d: dict[str, Any], p: Plots) -> str:
    """`golemish serve` over HTTP: scripts/bench_serve.py (each part when present)."""
    text = ("## Server\n\n_`scripts/bench_serve.py`: real `golemish serve` processes on "
            f"127.0.0.1, clients in the benchmark's process; {machine(d)}._\n")
    if (bc := d.get("bytecode")) and bc.get("compiled"):
        text += ("\ngolemish's modules are byte-compiled before the run, as installing a "
                 "wheel does" + (" (this machine sets PYTHONDONTWRITEBYTECODE=1, with which "
                                 "an editable install compiles them from source at every "
                                 "start: ~0.1 s more per process)"
                                 if bc.get("dont_write_bytecode_env") else "") + ".\n")
    if hot := d.get("results"):
        rows, series = [], {}
        for r in hot:
            mode = "--sync" if r["sync"] else "default"
            for t in r["throughput"]:
                rows.append([mode, r["latency"]["p50_ms"], r["latency"]["p99_ms"],
                             t["clients"], t["per_s"], t["fsyncs_per_invocation"] or 0.0])
            if lean := r.get("throughput_lean"):
                rows.append([mode, r["latency"]["p50_ms"], r["latency"]["p99_ms"],
                             f"{lean['clients']} (lean client)", lean["per_s"],
                             lean["fsyncs_per_invocation"] or 0.0])
            series[mode] = ([t["clients"] for t in r["throughput"]],
                            [t["per_s"] for t in r["throughput"]])
        text += ("\n### Hot invocations\n\nCounter `add 1` on a warm worker, 1 client "
                 "(target p50 <= 1 ms without --sync); throughput over "
                 f"{d.get('hot_workers', 100)} workers (target >= 2,000/s with --sync at 64 "
                 "clients). Clients are http.client threads in the benchmark's process; "
                 "the *lean client* rows are scripts/loadgen.py, one event loop in its own "
                 "process, which leaves the server nearly all of the 2 CPUs.\n\n"
                 + table(["mode", "p50 ms", "p99 ms", "clients", "inv/s", "fsyncs/inv"], rows)
                 + "\n")
        text += p.line("serve_throughput", "Invocations/s over HTTP", "concurrent clients",
                       "invocations/s", series, logx=True)
    if sl := d.get("sleepers"):
        text += (f"\n### Durable sleep wake-up\n\n{sl['sleepers']:,} agent workers each in "
                 f"one durable `nap`, deadlines spread over {sl['window_s']:g} s; lateness "
                 "is the wall time `nap` returns at minus the wake time recorded in the "
                 "oplog (1 ms resolution). Target p99 <= "
                 f"{sl['target_p99_ms']:g} ms.\n\n"
                 + table(["sleepers", "full GC", "p50 ms", "p99 ms", "max ms",
                          "server RSS MiB"], _sleeper_rows(sl)) + "\n")
    if wk := d.get("workers"):
        rss = wk["rss_mib"]
        text += (f"\n### {wk['workers']:,} workers: eviction and restore\n\nCounter "
                 f"workers created (one `add 1` each, 8 clients, {wk['create_per_s']:.0f}/s), "
                 f"evicted by idle eviction ({wk['idle_timeout_s']:g} s), then touched "
                 f"again one at a time ({wk['restore_ms']['n']} of them): `add 1` on the "
                 "evicted worker (restore + invocation over HTTP), then on the same worker "
                 "hot. Target restore p50 <= "
                 f"{wk['target_restore_p50_ms']:g} ms.\n\n"
                 + table(["server RSS MiB: started", "created", "evicted", "touched",
                          "restore p50 ms", "restore p99 ms", "hot p50 ms"],
                         [[rss["started"], rss["created"], rss["evicted"], rss["touched"],
                           wk["restore_ms"]["p50"], wk["restore_ms"]["p99"],
                           wk["hot_ms"]["p50"]]]) + "\n")
        text += p.bars("serve_restore", "add 1 over HTTP: evicted vs hot worker", "ms",
                       ["p50", "p99"], {"evicted (restore)": [wk["restore_ms"]["p50"],
                                                              wk["restore_ms"]["p99"]],
                                        "hot": [wk["hot_ms"]["p50"], wk["hot_ms"]["p99"]]})
    if rs := d.get("restart"):
        text += (f"\n### Restart to step K\n\nOne `clocks({rs['k']:,})` invocation of a "
                 "stackful worker; the server is SIGKILLed after its last host call; time "
                 "from spawn of the new server to the invocation's completion, as the "
                 "client sees it that sends the same request again with its idempotency "
                 "key (median of "
                 f"{len(rs['runs'])}; Restate measured 0.82 s here; target <= "
                 f"{rs['target_s']:g} s).\n\n"
                 + table(["spawn to serving s", "spawn to completion s"],
                         [[rs["spawn_to_serving_s"], rs["spawn_to_done_s"]]]) + "\n")
    if st := d.get("startup"):
        text += ("\n### Start-up\n\nSpawn to exit, medians.\n\n"
                 + table(["command", "median s"], [[k, v["median_s"]] for k, v in st.items()])
                 + "\n")
        text += p.bars("serve_startup", "Start-up (spawn to exit)", "s", list(st),
                       {"median": [v["median_s"] for v in st.values()]})
    return text


def splice_section(title: str, text: str) -> Path:
    """Replace one `## title` section of docs/benchmarks.md (or append it)."""
    out = DOCS / "benchmarks.md"
    doc = out.read_text() if out.exists() else "# golemish benchmarks\n"
    start = doc.find(f"\n## {title}\n")
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + 1)
        doc = doc[:start + 1] + text + ("" if end < 0 else "\n" + doc[end + 1:])
    DOCS.mkdir(exist_ok=True)
    out.write_text(doc)
    return out


def write_report() -> Path:
    p = Plots()
    parts = ["# golemish benchmarks\n",
             "Generated by `python scripts/bench_report.py`. Machines here are shared and "
             "noisy: figures are medians, and every ratio compares numbers measured side by "
             "side in the same run. Raw samples are in `scripts/results/*.json` after a "
             "run.\n"]
    core, snap = load("bench_core"), load("bench_snapshot")
    mid, camp = load("bench_midcall"), load("crash_campaign")
    if snap:
        parts.append(f"_Snapshot figures: {machine(snap)}._\n")
        parts.append(section_recovery(snap, p))
        parts.append(section_restore(snap, p))
        parts.append(section_snapshot_cost(snap, p))
        parts.append(section_throughput(snap))
    if core:
        parts.append(f"_Core figures: {machine(core)}._\n")
        parts.append(section_core(core, p))
    if mid:
        parts.append(f"_Mid-call figures: {machine(mid)}._\n")
        parts.append(section_midcall(mid, p))
    if camp:
        parts.append(f"_Campaign: {machine(camp)}._\n")
        parts.append(section_campaign(camp, p))
    if faults := load("fault_campaign"):
        parts.append(section_faults(faults))
    if serve := load("bench_serve"):
        parts.append(section_server(serve, p))
    DOCS.mkdir(exist_ok=True)
    out = DOCS / "benchmarks.md"
    out.write_text("\n".join(parts))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reuse", action="store_true", help="use existing scripts/results/*.json")
    ap.add_argument("--quick", action="store_true", help="small runs, to check the pipeline")
    ap.add_argument("--only", choices=["faults", "server"],
                    help="run (unless --reuse) and rewrite only this section of the report")
    args = ap.parse_args()
    if args.only:
        # --only NAME: (the script whose results it shows, its heading, how to render it)
        script, heading, render = {
            "faults": ("fault_campaign", "Faults", section_faults),
            "server": ("bench_serve", "Server", lambda d: section_server(d, Plots())),
        }[args.only]
        if not args.reuse:
            run_all(args.quick, [script])
        data = load(script)
        if data is None:
            raise SystemExit(f"no {RESULTS / (script + '.json')}: run without --reuse")
        print(f"wrote {splice_section(heading, render(data))}")
        return 0
    if not args.reuse:
        run_all(args.quick)
    print(f"wrote {write_report()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
