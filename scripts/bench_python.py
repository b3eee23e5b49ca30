"""Python workers: calls, cold creation, recovery against history, restore against memory,
and stored bytes per snapshot for many workers of one component.

    python scripts/bench_python.py [--out scripts/results/bench_python.json]
                                   [--counts 100,1000,10000] [--workers 100] [--quick]
                                   [--only calls,recovery,restore,stored]

Prints a table and writes JSON; every comparison is measured side by side in
one run. The interpreter must be compiled already (``golemish python install``);
its one-time compile is not timed here. ``--only`` runs some sections and keeps
the others from the existing --out file (the run's machine notes go under
"partial_runs").

- recovery: N invocations of add(1), a snapshot 10 invocations before the end
  (a tail of 10), then a new Runtime recovers by snapshot + tail, and another by
  full replay (at the largest N, replay runs once: it takes seconds).
- restore: a worker of 40 MiB of linear memory (the interpreter after a few calls)
  and one of 200 MiB (small Python objects added until memory reaches it, within
  2%), restored into a fresh instance (``restore()`` alone, median of 7, and the
  whole restore step of a recovery, median of 3), against the floor: the cheapest
  of three ways to copy the worker's real memory image (its bytes, already in this
  process) into freshly mapped anonymous memory of the same size (see copy_floor).
- stored bytes: W workers with their own small state, one snapshot each, in the
  shared page store; and 10 workers in a store written as before it (pages per
  worker, format 1), for comparison.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import benchlib
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot.capture import UNPACK_THREADS, populate, restore
from golemish.runtime.snapshot.policy import SnapshotPolicy

AGENT = '''
count = 0
blob = []

def add(n: int) -> int:
    global count
    count += n
    return count

def noop() -> int:
    return 0

def grow(mib: int) -> int:
    # A heap of small objects, as a worker's state is: ~96 bytes per record.
    n = len(blob)
    blob.extend(f"record {i:09d} " + "x" * (i % 40) for i in range(n, n + (mib << 20) // 96))
    return len(blob)
'''

DEFAULT_OUT = benchlib.ROOT / "scripts" / "results" / "bench_python.json"
TAIL = 10


def off() -> SnapshotPolicy:
    return SnapshotPolicy.parse("off")


def runtime(home: str, **kw: Any) -> Runtime:
    return Runtime(RuntimeConfig(home=home, snapshot_policy=off(), **kw))


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def calls(rt: Runtime, res: dict[str, Any], n: int) -> None:
    for durable in (True, False):
        wid = f"agent/{'d' if durable else 'e'}"
        rt.invoke(wid, "noop", [], durable=durable)
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            rt.invoke(wid, "noop", [])
            samples.append(time.perf_counter() - t)
        res[f"trivial_call_us_{'durable' if durable else 'ephemeral'}"] = median(samples) * 1e6
    res["durable_over_ephemeral"] = (res["trivial_call_us_durable"]
                                     / res["trivial_call_us_ephemeral"])


def recovery(home: str, counts: list[int], res: dict[str, Any]) -> None:
    rt = runtime(home)
    for n in counts:
        wid = f"agent/r{n}"
        for i in range(n):
            if i == n - TAIL:
                rt.snapshot(wid)
            rt.invoke(wid, "add", ["1"])
    rt.close()
    rows = res["recovery"] = []
    for n in counts:
        row: dict[str, Any] = {"invocations": n, "tail": TAIL}
        for mode in ("snapshot", "replay"):
            reps = 1 if mode == "replay" and n == max(counts) and n >= 10000 else 3
            secs = []
            for _ in range(reps):
                r = runtime(home, recovery=mode)
                w = f"agent/r{n}"
                rep = r.resume(w)
                assert rep is not None and rep.mode == mode, rep
                secs.append(rep.seconds)
                if mode == "snapshot":
                    row["restored_pages"] = rep.restored_pages
                    row["restore_s"] = rep.restore_seconds
                r.close()
            row[f"{mode}_s"] = median(secs)
            row[f"{mode}_runs"] = reps
        row["replay_over_snapshot"] = row["replay_s"] / row["snapshot_s"]
        rows.append(row)


FLOORS = ("memcpy_fresh", "populate_memcpy_fresh", "populate_thread_memcpy_fresh",
          "parallel_populate_memcpy_fresh")


def parallel_copy(addr: int, image: bytes, threads: int) -> None:
    size = len(image)
    step = -(-size // threads // mmap.PAGESIZE) * mmap.PAGESIZE
    src = ctypes.cast(ctypes.c_char_p(image), ctypes.c_void_p).value or 0

    def one(lo: int) -> None:
        n = min(step, size - lo)
        populate(addr + lo, n)
        ctypes.memmove(addr + lo, src + lo, n)

    workers = [threading.Thread(target=one, args=(lo,)) for lo in range(0, size, step)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()


def copy_floor(image: bytes, out: dict[str, list[float]]) -> None:
    """Ways to put the worker's memory image (its real bytes, already in this
    process's memory) into freshly mapped anonymous memory of the same size, as a
    fresh instance's memory is. The floor a restore is held to is the cheapest:

    - ``memcpy_fresh``: one memcpy; the kernel maps each 4 KiB page at its first
      touch (~15 us a fault on this VM, far above the copy);
    - ``populate_memcpy_fresh``: madvise(MADV_POPULATE_WRITE) over the mapping, then
      one memcpy;
    - ``populate_thread_memcpy_fresh``: the same madvise in a second thread while the
      memcpy runs, both from the bottom up (what a restore does for grown memory);
    - ``parallel_populate_memcpy_fresh``: the memory cut into as many stretches as a
      restore has decompression threads (UNPACK_THREADS), each mapped and copied by
      its own thread;
      each also in CPU seconds of the process (``process_time``, all threads), which
      the load of a shared machine disturbs less than wall time;
    - ``memcpy_touched``: one memcpy into memory already mapped (shown, not a floor:
      a fresh instance's memory is not mapped yet).

    One sample of each is appended to ``out``; the caller runs this right after
    each timed restore, so both see the same load on the shared machine.
    """
    size = len(image)
    for kind in FLOORS:
        mm = mmap.mmap(-1, size)
        dst = (ctypes.c_char * size).from_buffer(mm)
        addr = ctypes.addressof(dst)
        t, c = time.perf_counter(), time.process_time()
        mapper = None
        if kind == "populate_memcpy_fresh":
            populate(addr, size)
        elif kind == "populate_thread_memcpy_fresh":
            mapper = threading.Thread(target=populate, args=(addr, size))
            mapper.start()
        if kind == "parallel_populate_memcpy_fresh":
            parallel_copy(addr, image, UNPACK_THREADS)
        else:
            ctypes.memmove(dst, image, size)
        if mapper is not None:
            mapper.join()
        out[kind].append(time.perf_counter() - t)
        out[f"{kind}_cpu"].append(time.process_time() - c)
        if kind == "memcpy_fresh":
            t = time.perf_counter()
            ctypes.memmove(dst, image, size)
            out["memcpy_touched"].append(time.perf_counter() - t)
        del dst
        mm.close()


#: Timed restores per worker, each followed by one sample of every floor.
RESTORE_RUNS = 7


def build_worker(rt: Runtime, wid: str, target_mib: int) -> None:
    """A worker whose linear memory is ``target_mib`` MiB (within 2%): the interpreter
    after a few calls, then small Python objects added until memory reaches it."""
    for i in range(5):
        rt.invoke(wid, "add", [str(i)])
    target = target_mib << 20
    while True:
        have = rt.worker(wid).instance.memory_size()  # type: ignore[union-attr]
        if have >= target * 0.98:
            break
        # Python's heap grows by ~0.75 of the records' nominal size.
        rt.invoke(wid, "grow", [str(max(1, int((target - have) * 1.2) >> 20))])


def restores(home: str, res: dict[str, Any], sizes: dict[str, int]) -> None:
    rt = runtime(home)
    for label, target in sizes.items():
        build_worker(rt, f"agent/m{label}", target)
        rt.snapshot(f"agent/m{label}")
    rt.close()
    rows = res["restore"] = []
    for label in sizes:
        wid = f"agent/m{label}"
        r = runtime(home)
        rep = r.resume(wid)  # the first restore in a process checks the base: not timed
        assert rep is not None and rep.mode == "snapshot"
        w = r.worker(wid)
        snaps = r.store.snapshots
        m = snaps.manifest(wid, snaps.indexes(wid)[0])
        create = w.oplog.get(1)
        image = w.instance.read(0, m.memory_size)  # type: ignore[union-attr]
        times, whole = [], []
        samples: dict[str, list[float]] = {
            k: [] for k in FLOORS + tuple(f"{f}_cpu" for f in FLOORS) + ("memcpy_touched",)}
        cpu: list[float] = []
        for _ in range(RESTORE_RUNS):
            inst = w._instantiate(create, initialize=False)
            inst.set_memory_limit(max(inst.memory_limit, m.memory_size))
            fresh = r.bases.verified(m.base, inst) if m.base else None
            t, c = time.perf_counter(), time.process_time()
            written = restore(inst, m, w.layout, snaps.pages_for(wid, m), fresh)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            assert inst.read(0, m.memory_size) == image
            inst.close()
            copy_floor(image, samples)
        r.close()
        del image
        for _ in range(3):
            r = runtime(home)
            rep = r.resume(wid)
            whole.append(rep.restore_seconds)
            r.close()
        copies = {k: median(v) for k, v in samples.items()}
        floor_kind = min(FLOORS, key=copies.__getitem__)
        floor = copies[floor_kind]
        rows.append({"worker": label, "memory_mib": m.memory_size / (1 << 20),
                     "pages": m.page_count, "pages_written": written,
                     "restore_s": median(times), "runs": len(times),
                     "restore_threads": UNPACK_THREADS,
                     "restore_samples_s": times,
                     **{f"{k}_s": v for k, v in copies.items()},
                     "floor": floor_kind, "floor_s": floor,
                     "restore_over_floor": median(times) / floor,
                     "restore_cpu_s": median(cpu), "restore_cpu_samples_s": cpu,
                     "floor_cpu_s": copies[f"{floor_kind}_cpu"],
                     "restore_over_floor_cpu": median(cpu) / copies[f"{floor_kind}_cpu"],
                     "restore_over_touched_copy": median(times) / copies["memcpy_touched"],
                     "recovery_restore_step_s": median(whole)})


def stored_bytes(home: str, legacy_home: str, workers: int, res: dict[str, Any]) -> None:
    out: dict[str, Any] = {}
    for name, where, n in (("shared", home, workers), ("per_worker", legacy_home,
                                                       min(10, workers))):
        rt = runtime(where)
        rt.store.snapshots.shared = name == "shared"
        per = []
        for i in range(n):
            wid = f"agent/s{i}"
            rt.invoke(wid, "add", [str(i * 1000 + 1)])
            rt.invoke(wid, "add", [str(i)])
            entry = rt.snapshot(wid)
            assert entry is not None
            per.append(entry.stored_bytes)
        b = rt.store.backend
        table = "cpages" if name == "shared" else "pages"
        total = sum(len(v) for k, v in b.scan(table, b"") if name == "shared"
                    or k.startswith(b"agent/s"))
        if name == "per_worker":  # the bases still land in the shared store
            total_base = 0
        else:
            m = rt.store.snapshots.manifest("agent/s0", rt.store.snapshots.indexes("agent/s0")[0])
            base = rt.store.snapshots.pages.base(m.base)
            total_base = sum(len(b.get("cpages", h) or b"") for h in base.nonzero())
        out[name] = {"workers": n, "first_snapshot_bytes": per[0],
                     "median_snapshot_bytes": median(per),
                     "mean_snapshot_bytes": sum(per) / n,
                     "store_bytes": total, "base_bytes": total_base,
                     "store_bytes_per_worker": total / n}
        rt.close()
    out["per_worker_over_shared_per_worker"] = (out["per_worker"]["store_bytes_per_worker"]
                                                / out["shared"]["store_bytes_per_worker"])
    res["stored"] = out


SECTIONS = ("calls", "recovery", "restore", "stored")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--counts", default="100,1000,10000")
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help="comma-separated sections to run (of %s); the others are kept "
                         "from --out if it exists" % ", ".join(SECTIONS))
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    a = ap.parse_args()
    only = [x for x in a.only.split(",") if x]
    if not only or any(x not in SECTIONS for x in only):
        ap.error(f"--only takes a comma-separated list of {', '.join(SECTIONS)}")
    counts = [int(c) for c in a.counts.split(",")]
    sizes = {"40MiB": 40, "200MiB": 200}  # label: linear memory, MiB
    if a.quick:
        counts, sizes, a.workers, a.calls = [100, 300], {"40MiB": 40, "60MiB": 60}, 12, 50
    res: dict[str, Any] = {}
    out = Path(a.out)
    if set(only) != set(SECTIONS) and out.exists():
        res = json.loads(out.read_text())
        res.setdefault("partial_runs", {})
    machine = benchlib.machine_info()
    if "partial_runs" in res:
        res["partial_runs"][",".join(only)] = machine
    else:
        res["machine"] = machine
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "agent.py"
        src.write_text(AGENT)
        homes = {k: str(Path(tmp) / k) for k in ("calls", "rec", "mem", "many", "legacy")}
        for h in homes.values():
            r = runtime(h)
            r.deploy_python(src)
            r.close()
        if "calls" in only:
            rt = runtime(homes["calls"])
            t = time.perf_counter()
            rt.invoke("agent/cold", "noop", [])
            res["cold_create_and_first_call_s"] = time.perf_counter() - t
            calls(rt, res, a.calls)
            rt.close()
            benchlib.say("calls done")
        if "recovery" in only:
            recovery(homes["rec"], counts, res)
            benchlib.say("recovery done")
        if "restore" in only:
            restores(homes["mem"], res, sizes)
            benchlib.say("restore done")
        if "stored" in only:
            stored_bytes(homes["many"], homes["legacy"], a.workers, res)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    report(res)
    return 0


def report(res: dict[str, Any]) -> None:
    if "cold_create_and_first_call_s" in res:
        calls_report(res)
    if "recovery" in res:
        recovery_report(res)
    if "restore" in res:
        restore_report(res)
    if "stored" in res:
        stored_report(res)


def calls_report(res: dict[str, Any]) -> None:
    print(f"cold create + first call      {res['cold_create_and_first_call_s'] * 1e3:8.1f} ms")
    print(f"trivial call durable/ephemeral {res['trivial_call_us_durable']:7.0f} / "
          f"{res['trivial_call_us_ephemeral']:.0f} us ({res['durable_over_ephemeral']:.2f}x)")


def recovery_report(res: dict[str, Any]) -> None:
    print("\n| invocations | snapshot+tail ms | full replay ms | replay / snapshot | pages restored |")
    print("|---|---|---|---|---|")
    for r in res["recovery"]:
        print(f"| {r['invocations']:,} | {r['snapshot_s'] * 1e3:.1f} | {r['replay_s'] * 1e3:,.0f}"
              f"{'' if r['replay_runs'] > 1 else ' (1 run)'} | {r['replay_over_snapshot']:.0f}x | "
              f"{r['restored_pages']} |")


def restore_report(res: dict[str, Any]) -> None:
    print("\n| worker | memory MiB | pages written / all | restore ms | floor ms | "
          "restore / floor | restore / floor, CPU time | memcpy into fresh memory ms | populate, then memcpy ms | "
          "populate in a thread during the memcpy ms | populate + memcpy in "
          f"{UNPACK_THREADS} threads ms | memcpy into touched memory ms | "
          "restore step of a recovery ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in res["restore"]:
        print(f"| {r['worker']} | {r['memory_mib']:.1f} | {r['pages_written']} / {r['pages']} | "
              f"{r['restore_s'] * 1e3:.1f} | {r['floor_s'] * 1e3:.1f} ({r['floor']}) | "
              f"{r['restore_over_floor']:.2f}x | {r['restore_cpu_s'] * 1e3:.0f} / "
              f"{r['floor_cpu_s'] * 1e3:.0f} ms = {r['restore_over_floor_cpu']:.2f}x | "
              f"{r['memcpy_fresh_s'] * 1e3:.1f} | "
              f"{r['populate_memcpy_fresh_s'] * 1e3:.1f} | "
              f"{r['populate_thread_memcpy_fresh_s'] * 1e3:.1f} | "
              f"{r['parallel_populate_memcpy_fresh_s'] * 1e3:.1f} | "
              f"{r['memcpy_touched_s'] * 1e3:.1f} | "
              f"{r['recovery_restore_step_s'] * 1e3:.1f} |")


def stored_report(res: dict[str, Any]) -> None:
    s = res["stored"]
    print("\n| page store | workers | first snapshot | median snapshot | store total | "
          "per worker |")
    print("|---|---|---|---|---|---|")
    for name in ("shared", "per_worker"):
        x = s[name]
        print(f"| {name} | {x['workers']} | {x['first_snapshot_bytes'] / 1e6:.2f} MB | "
              f"{x['median_snapshot_bytes'] / 1e3:.1f} kB | {x['store_bytes'] / 1e6:.2f} MB | "
              f"{x['store_bytes_per_worker'] / 1e6:.3f} MB |")
    print(f"shared base (interpreter image): {s['shared']['base_bytes'] / 1e6:.2f} MB, stored "
          f"once; per-worker storage {s['per_worker_over_shared_per_worker']:.0f}x smaller")


if __name__ == "__main__":
    sys.exit(main())
