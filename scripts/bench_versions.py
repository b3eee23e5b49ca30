#!/usr/bin/env python3
"""Versions and time travel: what fork, revert and auto update cost.

    python scripts/bench_versions.py [--quick] [--out FILE]

- fork: time and stored bytes of `worker fork` of a kv worker holding 1, 64 and
  256 MiB (filled with fill(), snapshotted). A fork copies the oplog prefix and
  one manifest and joins its parent's page space, so neither should grow with
  memory beyond the manifest (16 bytes per page before compression). Also the time
  of the fork's first invocation, which restores the shared snapshot.
- revert: time of `worker revert --last-invocations D` on a bank worker with a
  long history, against D (restore the newest usable snapshot at or before the
  target, replay to it, then snapshot).
- auto update: time of `worker update --to v1` (bank v1 -> the bug fix v2)
  against the history length H: the whole oplog is replayed on the new version.

Each figure is a median over fresh copies of one prepared store, all in one run.
Results go to scripts/results/bench_versions.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, guest_modules, machine_info, say, summary  # noqa: E402

from golemish.oplog import Create  # noqa: E402
from golemish.runtime import versions  # noqa: E402
from golemish.runtime.executor import Runtime, RuntimeConfig  # noqa: E402

DEFAULT_OUT = ROOT / "scripts" / "results" / "bench_versions.json"
MEMORY_LIMIT = 512 << 20


def runtime(home: Path, **kw: Any) -> Runtime:
    return Runtime(RuntimeConfig(home=str(home), memory_limit=MEMORY_LIMIT, time_limit=600,
                                 **kw))


def worker_bytes(rt: Runtime, worker_id: str) -> dict[str, int]:
    """Bytes stored under one worker's own keys, per table."""
    b = rt.store.backend
    p, end = worker_id.encode() + b"\0", worker_id.encode() + b"\1"
    out = {t: sum(len(k) + len(v) for k, v in b.scan(t, p, end))
           for t in ("oplog", "snapshots", "idempotency", "pages")}
    raw = b.get("workers", worker_id.encode()) or b""
    out["workers"] = len(raw)
    out["pagespaces"] = sum(len(k) + len(v) for k, v in b.scan("pagespaces", b"")
                            if worker_id.encode() in k)
    return out


def bench_fork(tmp: Path, kv: bytes, sizes: Sequence[int], reps: int) -> list[dict[str, Any]]:
    rows = []
    for mib in sizes:
        home = tmp / f"fork-{mib}"
        with runtime(home) as rt:
            rt.deploy(kv, "kv")
            rt.invoke("kv/p", "fill", [str(mib)])
            rt.snapshot("kv/p", full=True)
        # A fresh process, as when forking a worker filled long ago: the fill's write
        # burst (flushes, compactions) is not the fork's cost.
        with runtime(home) as rt:
            parent = rt.worker_info("kv/p")
            times, first, sizes_ = [], [], []
            for i in range(reps):
                t0 = time.perf_counter()
                versions.fork(rt, "kv/p", f"kv/f{i}")
                times.append(time.perf_counter() - t0)
                sizes_.append(sum(worker_bytes(rt, f"kv/f{i}").values()))
            for i in range(reps):
                t0 = time.perf_counter()
                rt.invoke(f"kv/f{i}", "count")
                first.append(time.perf_counter() - t0)
            pages_after = rt.store.snapshots.page_sizes("kv/p")
        rows.append({"memory_mib": mib, "parent_memory_bytes": parent.get("memory_bytes"),
                     "parent_page_bytes": parent.get("snapshot_stored_bytes"),
                     "page_bytes_after_forks": pages_after[1],
                     "fork_s": summary(times), "fork_stored_bytes": summary(sizes_),
                     "first_invocation_s": summary(first)})
        shutil.rmtree(home, ignore_errors=True)
    return rows


def bank_worker(rt: Runtime, history: int) -> None:
    """bank/a on v0 with ``history`` deposits (the default adaptive snapshot policy)."""
    meta = rt.component("bank", 0)
    rt.store.create_worker(
        {"id": "bank/a", "component": "bank", "version": 0, "created_at": time.time(),
         "status": "idle", "memory_limit": MEMORY_LIMIT, "time_limit": 600, "durable": True},
        Create("bank", 0, meta["hash"], (), (), time.time_ns()))
    w = rt.worker("bank/a")
    for i in range(history):
        w.invoke("deposit", [("i64", 1 + i % 7)])


def prepared(tmp: Path, name: str, bank: dict[str, bytes], history: int) -> Path:
    home = tmp / name
    with runtime(home) as rt:
        rt.deploy(bank["bank_v1"], "bank")
        rt.deploy(bank["bank_v2"], "bank")
        bank_worker(rt, history)
    return home


def on_copy(src: Path, dst: Path, fn: Any) -> float:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    with runtime(dst) as rt:
        t0 = time.perf_counter()
        fn(rt)
        took = time.perf_counter() - t0
    shutil.rmtree(dst, ignore_errors=True)
    return took


def bench_revert(tmp: Path, bank: dict[str, bytes], history: int, distances: Sequence[int],
                 reps: int) -> list[dict[str, Any]]:
    src = prepared(tmp, "revert-src", bank, history)
    rows = []
    for d in distances:
        samples = [on_copy(src, tmp / "revert", lambda rt, d=d: versions.revert(
            rt, "bank/a", last_invocations=d)) for _ in range(reps)]
        rows.append({"distance_invocations": d, "history": history, "revert_s": summary(samples)})
    return rows


def bench_update(tmp: Path, bank: dict[str, bytes], histories: Sequence[int],
                 reps: int) -> list[dict[str, Any]]:
    rows = []
    for h in histories:
        src = prepared(tmp, f"update-src-{h}", bank, h)
        samples = [on_copy(src, tmp / "update", lambda rt: versions.update(rt, "bank/a", 1))
                   for _ in range(reps)]
        rows.append({"history": h, "update_s": summary(samples)})
        shutil.rmtree(src, ignore_errors=True)
    return rows


def ms(s: dict[str, Any]) -> str:
    return f"{s['median'] * 1e3:9.1f}"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="Smaller histories, fewer repeats.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    reps = 3 if args.quick else 5
    sizes = (1, 64, 256)
    history = 500 if args.quick else 2000
    distances = (1, 10, 100, 400) if args.quick else (1, 10, 100, 1000)
    histories = (100, 500, 1000) if args.quick else (100, 1000, 4000)
    mods = guest_modules(["kv", "bank_v1", "bank_v2"])
    result: dict[str, Any] = {"machine": machine_info(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bench-versions-") as d:
        tmp = Path(d)
        result["fork"] = bench_fork(tmp, mods["kv"], sizes, reps)
        result["revert"] = bench_revert(tmp, mods, history, distances, reps)
        result["update"] = bench_update(tmp, mods, histories, reps)

    say("fork (medians)")
    say(f"{'memory':>8} {'fork ms':>9} {'fork bytes':>11} {'1st call ms':>11} "
        f"{'parent page bytes':>18}")
    for r in result["fork"]:
        say(f"{r['memory_mib']:>5} MiB {ms(r['fork_s'])} "
            f"{int(r['fork_stored_bytes']['median']):>11,} {ms(r['first_invocation_s']):>11} "
            f"{r['parent_page_bytes'] or 0:>18,}")
    say(f"\nrevert of a {history}-invocation history (medians)")
    say(f"{'distance':>9} {'revert ms':>10}")
    for r in result["revert"]:
        say(f"{r['distance_invocations']:>9} {ms(r['revert_s']):>10}")
    say("\nauto update v0 -> v1 (medians)")
    say(f"{'history':>9} {'update ms':>10}")
    for r in result["update"]:
        say(f"{r['history']:>9} {ms(r['update_s']):>10}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
