#!/usr/bin/env python3
"""Fault campaign: damage one store file at a time and check that golemish never lies.

Builds a store with several workers of every guest (counter, kv, journal, the typed
cart and echo, agent, stackful counter and journal; snapshots every 1 to 4
invocations or never, agents paying a local sink and calling counter/shared),
closes it, and records the crash-free truth: each worker's answer to a reading
function (``golemish invoke W F``) and a clean ``store check --deep``. Then, for
each fault, on a fresh copy of the store (the original is never touched, which the
run verifies): flip random bytes in, truncate or delete one file of one kind
(SST, pages SST, WAL, MANIFEST, CURRENT, OPTIONS, compiled cache, identity), and
run every reading function and ``store check --deep`` through the CLI, each in a
process of its own (forked from a driver subprocess), with timeouts.

Each fault's outcome is one of

    correct       every worker answers the truth (check may report harmless damage)
    clean-error   some command fails with a one-line error, the others answer the
                  truth, and check does not say ok
    silent-wrong  some answer differs from the truth, or check says ok while a
                  command failed
    traceback     a Python traceback in some output
    crash         a process killed by a signal (SIGSEGV, SIGABRT...)
    timeout       a command ran past its time limit

    python scripts/fault_campaign.py [--faults 500] [--seed 1] [--quick] [--jobs 2]
        [--out F] [--only I ...] [--keep DIR]

Exits 1 if any fault ended silent-wrong, traceback, crash or timeout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, fresh_copy, guest_modules, machine_info  # noqa: E402

KINDS = ("sst", "pages", "wal", "manifest", "current", "options", "cache", "identity")
FAULTS = {"flip": 0.6, "truncate": 0.2, "delete": 0.2}      # how often each is drawn
OUTCOMES = ("correct", "clean-error", "silent-wrong", "traceback", "crash", "timeout")
BAD = ("silent-wrong", "traceback", "crash", "timeout")
# component: (guest, WIT file, stackful)
COMPONENTS = {"counter": ("counter", None, False), "kv": ("kv", None, False),
              "journal": ("journal", None, False), "cart": ("cart", "cart.wit", False),
              "echo": ("echo", "echo.wit", False), "agent": ("agent", None, False),
              "scounter": ("counter", None, True), "sjournal": ("journal", None, True)}
# worker: snapshot policy
WORKERS = {"counter/c1": "every:1", "counter/c2": "every:4", "counter/shared": "off",
           "kv/k1": "every:1", "kv/k2": "every:3", "journal/j1": "every:2",
           "cart/alice": "every:1", "cart/bob": "off", "echo/e1": "every:2",
           "agent/a1": "every:1", "agent/a2": "every:3", "scounter/s1": "every:2",
           "sjournal/s1": "every:3"}
# the reading function of each component: the worker's observable state
READS = {"counter": ["checksum"], "kv": ["checksum"], "journal": ["checksum"],
         "cart": ["items"], "echo": ["live-allocs"], "agent": ["run", "0"],
         "scounter": ["checksum"], "sjournal": ["checksum"]}
SESSIONS, ROUNDS = 3, 3      # store openings while building, op rounds per opening
STEP_TIMEOUT = 60.0          # seconds one command may take
TRACEBACK = "Traceback (most recent call last)"


# -- building the store ----------------------------------------------------------------
def ops(rng: random.Random, wid: str, http: bool = True) -> list[list[str]]:
    """One round of state-changing invocations for a worker (agents: HTTP calls if http)."""
    comp = wid.split("/")[0]
    if comp in ("counter", "scounter"):
        return [["add", str(rng.randint(1, 100))] for _ in range(2)]
    if comp in ("journal", "sjournal"):
        return [["append", str(rng.randint(1, 3))]]
    if comp == "kv":
        return [["put", str(rng.randrange(30)), str(rng.choice([16, 3000, 5000, 20000]))],
                ["put", str(rng.randrange(30)), "9000"], ["del", str(rng.randrange(30))],
                ["touch", "100"]]
    if comp == "cart":
        sku = rng.choice(["apple", "pear", "fig", "plum"])
        return [["add-item", f'{{sku: "{sku}", qty: {rng.randint(1, 5)}, '
                             f'price-cents: {rng.randint(50, 500)}}}'],
                *([["remove-item", '"fig"']] if rng.random() < 0.3 else [])]
    if comp == "echo":
        return [["echo-string", json.dumps("x" * rng.randint(0, 40))]]
    if comp == "agent":
        return [["pay", str(rng.randint(100, 900))], ["delegate", str(rng.randint(1, 9))],
                ["fetch", str(rng.randint(0, 99))]] if http else \
            [["delegate", str(rng.randint(1, 9))]]
    raise ValueError(comp)


def build_store(home: Path, seed: int) -> dict[str, Any]:
    """Deploy every component, create the workers and run SESSIONS x ROUNDS rounds."""
    from golemish.runtime.executor import Runtime, RuntimeConfig
    from golemish.runtime.snapshot.policy import SnapshotPolicy
    from golemish.runtime.testing import EffectSink

    rng = random.Random(f"build:{seed}")
    wasm = guest_modules(sorted({g for g, _, _ in COMPONENTS.values()}))
    invocations = 0
    with EffectSink() as sink:
        allow = (sink.url.removeprefix("http://"),)
        for session in range(SESSIONS):
            with Runtime(RuntimeConfig(home=str(home), http_allow=allow)) as rt:
                if session == 0:
                    for name, (guest, wit, stackful) in COMPONENTS.items():
                        text = (ROOT / "guest_examples" / wit).read_text() if wit else None
                        rt.deploy(wasm[guest], name, text, wit, stackful)
                    for wid, policy in WORKERS.items():
                        comp = wid.split("/")[0]
                        rt.invoke(wid, READS[comp][0], READS[comp][1:],
                                  env=[("AGENT_URL", sink.url)] if comp == "agent" else ())
                        rt.configure(wid, snapshot_policy=SnapshotPolicy.parse(policy))
                for _ in range(ROUNDS):
                    for wid in WORKERS:
                        for fn, *args in ops(rng, wid):
                            rt.invoke(wid, fn, args)
                            invocations += 1
    # A last round whose writes live only in the write-ahead log: closing the store
    # flushes it, so this process is killed instead (the truth comes from recovery).
    last = subprocess.run([sys.executable, __file__, "--last-session", str(home), str(seed)],
                          capture_output=True, text=True)
    if last.returncode != -9:
        raise SystemExit(f"last build session exited with {last.returncode}: {last.stderr}")
    return {"invocations": invocations + int(last.stdout), "payments": len(sink.payments)}


def last_session(home: str, seed: str) -> None:
    """One round of invocations without HTTP, acknowledged, then SIGKILL before closing."""
    from golemish.runtime.executor import Runtime, RuntimeConfig

    rng, n = random.Random(f"last:{seed}"), 0
    rt = Runtime(RuntimeConfig(home=home))
    for wid in WORKERS:
        for fn, *args in ops(rng, wid, http=False):
            rt.invoke(wid, fn, args)
            n += 1
    print(n, flush=True)
    os.kill(os.getpid(), 9)


def kind_of(path: Path, home: Path) -> str | None:
    """Which kind of store file this is (None: not a target, such as the info log)."""
    rel, name = path.relative_to(home), path.name
    if rel.parts[0] == "cache":
        return "cache" if name.endswith(".cwasm") else None
    if len(rel.parts) > 1 or name in ("LOCK", "LOG", "golemish.lock") or name.startswith("LOG."):
        return None
    if name.endswith(".sst"):
        # snapshot pages: the shared store (cpages), or per worker (format 1)
        return "pages" if sst_table(path) in ("pages", "cpages") else "sst"
    if name.endswith(".log"):
        return "wal"
    for prefix, kind in (("MANIFEST-", "manifest"), ("OPTIONS-", "options")):
        if name.startswith(prefix):
            return kind
    if name == "CURRENT":
        return "current"
    return "identity"  # RocksDB's IDENTITY, rocksdict's config, golemish's own identity


def sst_table(path: Path) -> str | None:
    """The column family of a table file, read from its properties block."""
    m = re.search(rb"family\.id.{0,8}?name([a-z_]+)", path.read_bytes(), re.S)
    return m.group(1).decode() if m else None


def store_files(home: Path) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {k: [] for k in KINDS}
    for p in sorted(home.rglob("*")):
        if p.is_file() and (kind := kind_of(p, home)):
            files[kind].append(str(p.relative_to(home)))
    return files


def digest(home: Path) -> str:
    """A hash over every file of the store (names and contents)."""
    h = hashlib.sha256()
    for p in sorted(home.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(home)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


# -- faults --------------------------------------------------------------------------------
def plan(seed: int, n: int, files: dict[str, list[str]], sizes: dict[str, int]) -> list[dict]:
    """n faults, the kinds in turn; each names its file, type and bytes (pure in the seed)."""
    rng, kinds = random.Random(f"faults:{seed}"), [k for k in KINDS if files[k]]
    faults = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        name = rng.choice(files[kind])
        fault, size = rng.choices(list(FAULTS), weights=list(FAULTS.values()))[0], sizes[name]
        fault = "delete" if size == 0 and fault != "delete" else fault
        f: dict[str, Any] = {"index": i, "kind": kind, "file": name, "fault": fault,
                             "size": size}
        if fault == "flip":
            f["flips"] = [[rng.randrange(size), rng.randrange(1, 256)]
                          for _ in range(rng.choice([1, 1, 1, 2, 4, 16]))]
        elif fault == "truncate":
            f["length"] = rng.randrange(size)
        faults.append(f)
    return faults


def inject(home: Path, f: dict) -> None:
    path = home / f["file"]
    if f["fault"] == "delete":
        path.unlink()
    elif f["fault"] == "truncate":
        os.truncate(path, f["length"])
    else:
        data = bytearray(path.read_bytes())
        for offset, xor in f["flips"]:
            data[offset] ^= xor
        path.write_bytes(bytes(data))


def describe(f: dict) -> str:
    if f["fault"] == "flip":
        return f"flip {len(f['flips'])} byte(s) at {','.join(str(o) for o, _ in f['flips'][:4])}"
    return f"truncate to {f['length']} of {f['size']}" if f["fault"] == "truncate" else "delete"


# -- the driver: every command in a process of its own -------------------------------------
def commands(home: str) -> list[list[str]]:
    reads = [["--home", home, "invoke", wid, *READS[wid.split("/")[0]]] for wid in WORKERS]
    return [*reads, ["--home", home, "store", "check", "--deep"]]


def drive(home: str) -> None:
    """Run every command (forked from here, after the imports), one JSON line each."""
    import traceback

    from golemish.runtime.cli import main

    tmp = Path(tempfile.mkdtemp(prefix="fault-drive-"))
    for argv in commands(home):
        out, err = tmp / "out", tmp / "err"
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: one CLI process, as `golemish ARGV` would be
            code = 70
            try:
                for fd, path in ((1, out), (2, err)):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
                try:
                    main.main(args=argv, prog_name="golemish")
                    code = 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else int(e.code is not None)
                    if isinstance(e.code, str):
                        print(e.code, file=sys.stderr)
                except BaseException:
                    traceback.print_exc()
                    code = 1
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        timed_out = False
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() - t0 > STEP_TIMEOUT:
                os.kill(pid, 9)
                timed_out, done = True, os.waitpid(pid, 0)
                break
            time.sleep(0.005)
        print(json.dumps({"argv": argv[2:], "rc": os.waitstatus_to_exitcode(done[1]),
                          "timeout": timed_out, "seconds": round(time.monotonic() - t0, 3),
                          "out": out.read_text(errors="replace")[-2000:],
                          "err": err.read_text(errors="replace")[-2000:]}), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


def run_driver(home: Path) -> tuple[list[dict], str | None]:
    """The driver subprocess's steps, and a problem with the driver itself if any."""
    budget = STEP_TIMEOUT * (len(WORKERS) + 2)
    try:
        proc = subprocess.run([sys.executable, __file__, "--driver", str(home)],
                              capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return [], "timeout"
    steps = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(steps) != len(WORKERS) + 1:
        return steps, f"driver exited with {proc.returncode}: {proc.stderr[-1000:]}"
    return steps, None


# -- classification --------------------------------------------------------------------------
def error_line(step: dict) -> str:
    lines = [ln for ln in step["err"].splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit {step['rc']} without a message"


def classify(steps: list[dict], truth: dict[str, str], problem: str | None) -> tuple[str, str]:
    """(outcome, what happened) for one fault's commands."""
    if problem == "timeout" or any(s["timeout"] for s in steps):
        s = next((s for s in steps if s["timeout"]), None)
        return "timeout", f"{' '.join(s['argv']) if s else 'driver'} timed out"
    for s in steps:
        if s["rc"] < 0:
            return "crash", f"{' '.join(s['argv'])} killed by signal {-s['rc']}"
    for s in steps:
        if TRACEBACK in s["out"] + s["err"]:
            return "traceback", f"{' '.join(s['argv'])}: {error_line(s)}"
    if problem:
        return "crash", problem
    *reads, check = steps
    wrong = [s for s in reads if s["rc"] == 0 and s["out"] != truth[s["argv"][1]]]
    if wrong:
        s = wrong[0]
        return "silent-wrong", (f"{s['argv'][1]} answered {s['out'].strip()[-200:]!r}, truth "
                                f"{truth[s['argv'][1]].strip()[-200:]!r}; check rc {check['rc']}: "
                                f"{check['out'].strip().splitlines()[-1:] or error_line(check)}")
    failed = [s for s in reads if s["rc"] != 0]
    if not failed:
        return "correct", "" if check["rc"] == 0 else f"check: {check_summary(check)}"
    if check["rc"] == 0:
        return "silent-wrong", (f"check ok, but {failed[0]['argv'][1]} failed: "
                                f"{error_line(failed[0])}")
    return "clean-error", f"{len(failed)} read(s) failed: {error_line(failed[0])}; " \
                          f"check: {check_summary(check)}"


def check_summary(check: dict) -> str:
    problems = [ln for ln in check["out"].splitlines() if ln.startswith("problem:")]
    return problems[0] if problems else error_line(check)


# -- the campaign --------------------------------------------------------------------------------
def one_fault(orig: Path, work: Path, f: dict, truth: dict[str, str], keep: Path | None) -> dict:
    home = work / f"fault-{f['index']}"
    t0 = time.monotonic()
    fresh_copy(orig, home)
    inject(home, f)
    steps, problem = run_driver(home)
    outcome, detail = classify(steps, truth, problem)
    if keep is not None and outcome in BAD:
        fresh_copy(orig, keep / f"fault-{f['index']}")
        inject(keep / f"fault-{f['index']}", f)
    shutil.rmtree(home, ignore_errors=True)
    return {**{k: v for k, v in f.items() if k != "flips"}, "what": describe(f),
            "outcome": outcome, "detail": detail, "seconds": round(time.monotonic() - t0, 2),
            "errors": sorted({error_line(s) for s in steps if s["rc"] != 0})[:6]}


def report(results: list[dict], meta: dict, out: Path) -> int:
    table = {k: Counter() for k in KINDS}
    by_fault: dict[str, Counter] = {}
    for r in results:
        table[r["kind"]][r["outcome"]] += 1
        by_fault.setdefault(f"{r['kind']} {r['fault']}", Counter())[r["outcome"]] += 1
    totals = Counter(r["outcome"] for r in results)
    print(f"\n  {'file kind':<12}" + "".join(f"{o:>14}" for o in OUTCOMES) + f"{'total':>8}")
    for kind in KINDS:
        if sum(table[kind].values()):
            print(f"  {kind:<12}" + "".join(f"{table[kind][o]:>14}" for o in OUTCOMES)
                  + f"{sum(table[kind].values()):>8}")
    print(f"  {'all':<12}" + "".join(f"{totals[o]:>14}" for o in OUTCOMES) + f"{len(results):>8}")
    bad = [r for r in results if r["outcome"] in BAD]
    for r in bad[:40]:
        print(f"  {r['outcome']:<13} #{r['index']} {r['kind']} {r['file']} {r['what']}: "
              f"{r['detail'][:300]}")
    ok = not bad and meta["original_unchanged"]
    print(f"\nfault campaign, seed {meta['seed']}: {len(results)} faults in "
          f"{meta['seconds']:.0f} s ({meta['seconds_per_fault']:.2f} s per fault, "
          f"{meta['jobs']} jobs): {'OK' if ok else 'FAILED'}; original store "
          f"{'unchanged' if meta['original_unchanged'] else 'MODIFIED'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "fault_campaign", "ok": ok, **meta,
        "outcomes": {o: totals[o] for o in OUTCOMES},
        "table": {k: {o: table[k][o] for o in OUTCOMES} for k in KINDS},
        "by_fault": {k: {o: c[o] for o in OUTCOMES} for k, c in sorted(by_fault.items())},
        "results": results}, indent=1))
    print(f"  wrote {out}")
    return 0 if ok else 1


def main() -> int:
    if sys.argv[1:2] == ["--driver"]:
        drive(sys.argv[2])
        return 0
    if sys.argv[1:2] == ["--last-session"]:
        last_session(*sys.argv[2:4])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="50 faults")
    ap.add_argument("--jobs", type=int, default=2, help="faults run at once")
    ap.add_argument("--only", type=int, nargs="+", metavar="I",
                    help="run only these fault indexes of the plan (to reproduce one)")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="keep the original store and a copy of each badly handled fault here")
    ap.add_argument("--out", type=Path, default=ROOT / "scripts/results/fault_campaign.json")
    args = ap.parse_args()
    n = 50 if args.quick else args.faults
    work = Path(tempfile.mkdtemp(prefix="golemish-faults-"))
    t0 = time.monotonic()
    try:
        orig = work / "store"
        print(f"fault campaign: seed {args.seed}, {n} faults, building {orig}", flush=True)
        built = build_store(orig, args.seed)
        build_s = time.monotonic() - t0
        before = digest(orig)
        files = store_files(orig)
        sizes = {name: (orig / name).stat().st_size for names in files.values() for name in names}
        print(f"  built in {build_s:.1f} s: {built['invocations']} invocations; files "
              + ", ".join(f"{k} {len(v)}" for k, v in files.items()), flush=True)
        runs = [run_driver(_copy(orig, work / f"baseline-{i}")) for i in range(2)]
        for baseline, problem in runs:
            if problem or any(s["rc"] != 0 for s in baseline):
                raise SystemExit(f"the undamaged store does not answer cleanly: {problem} "
                                 f"{[(s['argv'], error_line(s)) for s in baseline if s['rc']]}")
        truth, again = ({s["argv"][1]: s["out"] for s in b[:-1]} for b, _ in runs)
        if truth != again:  # the reading functions must be deterministic
            raise SystemExit(f"two recoveries of the undamaged store disagree: "
                             f"{ {w: (truth[w], again[w]) for w in truth if truth[w] != again[w]} }")
        faults = plan(args.seed, n, files, sizes)
        if args.only:
            faults = [faults[i] for i in args.only]
        if args.keep:
            fresh_copy(orig, args.keep / "original")
        t1 = time.monotonic()
        results: list[dict] = []
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = [pool.submit(one_fault, orig, work, f, truth, args.keep) for f in faults]
            for i, fut in enumerate(futures, 1):
                results.append(r := fut.result())
                if r["outcome"] in BAD or i % 50 == 0:
                    print(f"  [{i}/{len(faults)}] #{r['index']} {r['kind']} {r['file']} "
                          f"{r['what']}: {r['outcome']} {r['detail'][:200]}", flush=True)
        elapsed = time.monotonic() - t1
        meta = {"seed": args.seed, "faults": len(results), "jobs": args.jobs,
                "seconds": round(elapsed, 1), "build_seconds": round(build_s, 1),
                "seconds_per_fault": elapsed / max(1, len(results)),
                "total_seconds": round(time.monotonic() - t0, 1),
                "original_unchanged": digest(orig) == before, "store_files": files,
                "workers": WORKERS, "reads": READS, "built": built,
                "truth": truth, "machine": machine_info(),
                "reproduce": f"python scripts/fault_campaign.py --seed {args.seed} "
                             f"--faults {n} --only I"}
        return report(results, meta, args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _copy(src: Path, dst: Path) -> Path:
    fresh_copy(src, dst)
    return dst


if __name__ == "__main__":
    sys.exit(main())
