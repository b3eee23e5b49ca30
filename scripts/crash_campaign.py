#!/usr/bin/env python3
"""Crash campaign: a mixed durable workload killed with SIGKILL over and over.

Nine workers (counter, journal, kv, agent; snapshot policies adaptive, every:1,
every:5; agents pay the sink, fetch, and call counter/shared) run a deterministic
stream of ops, op N sent with idempotency key ``op-N``. A driver child recovers
every worker (timed), acknowledges each invocation it gets back, and is killed
from outside at a random moment or from inside at each crash point in turn
(random n); recovery alternates between snapshot+tail and full replay. After
every kill the parent checks that acknowledged ops are recorded, each key ran
once, results match a crash-free reference run, each payment reached the sink
once, and ``check_store`` is clean; periodically every worker is recovered both
ways and the states (memory sha256 + globals) compared. Exits 1 on a failure.

    python scripts/crash_campaign.py [--kills 1000] [--seed 1] [--quick] [--out F]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from golemish.oplog import EffectBegin, InvokeEnd, InvokeFailed, InvokeStart, Store, open_store
from golemish.oplog.check import check_store
from golemish.runtime.crash import POINTS, CrashPoints
from golemish.runtime.errors import DivergenceError
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy
from golemish.runtime.testing import EffectSink

ROOT = Path(__file__).resolve().parent.parent
WORKERS = {"counter/ad": "adaptive", "counter/e1": "every:1", "journal/e5": "every:5",
           "journal/ad": "adaptive", "kv/e1": "every:1", "kv/e5": "every:5",
           "kv/ad": "adaptive", "agent/e1": "every:1", "agent/e5": "every:5"}
SETUP = {"counter": ("get", []), "journal": ("count", []), "kv": ("count", []),
         "agent": ("fetch", ["0"])}             # the invocation that creates each worker
NONDETERMINISTIC = {("journal", "append")}      # returns a checksum over clocks/random
AGENT_EXPECT = {"pay": [200], "fetch": [200]}   # agent ops are not re-run in the reference
PROBES = {"counter": ["get", "history_len", "checksum"], "journal": ["count"],
          "kv": ["checksum", "count"], "agent": []}
N_RANGE = {"before-oplog-append": 60, "after-oplog-append": 60, "after-host-call": 40,
           "before-invocation": 25, "after-invocation": 25, "before-commit": 30,
           "after-commit": 30}  # snapshot points: 10
INVARIANTS = ["divergences", "lost_acknowledged", "duplicated_effects", "duplicate_executions",
              "store_check_failures", "missing_effects", "lost_invocations", "recorded_gaps",
              "failed_invocations", "driver_errors", "recovery_errors", "campaign_errors"]
BUDGET = 40            # ops one driver process sends at most
CHILD_TIMEOUT = 180.0  # seconds a driver may live


def op(seed: int, n: int) -> tuple[str, str, list[str]]:
    """Logical operation n of the stream: (worker, function, args). Pure in (seed, n)."""
    rng = random.Random(f"{seed}:{n}")
    wid = rng.choice(sorted(WORKERS))
    comp, r = wid.split("/")[0], rng.random()
    if comp == "counter":
        return (wid, "add", [str(rng.randint(1, 100))]) if r < 0.8 else \
            (wid, rng.choice(["get", "history_len"]), [])
    if comp == "journal":
        return (wid, "append", [str(rng.randint(1, 4))]) if r < 0.85 else (wid, "count", [])
    if comp == "agent":  # delegate(n): counter/shared add(n), a worker-to-worker call
        return (wid, "pay", [str(100 + n)]) if r < 0.4 else (wid, "fetch", [str(n % 1000)]) \
            if r < 0.7 else (wid, "delegate", [str(rng.randint(1, 100))])
    if r < 0.45:
        return wid, "put", [str(rng.randrange(40)), str(rng.choice([16, 3000, 5000, 20000]))]
    if r < 0.65:
        return wid, "del", [str(rng.randrange(40))]
    if r < 0.85:
        return wid, "touch", [str(rng.choice([10, 100, 500]))]
    return (wid, "get", [str(rng.randrange(40))]) if r < 0.95 else (wid, "checksum", [])


def drive(home: str, seed: str, start: str, count: str, mode: str) -> None:
    """The child: recover every worker (timed), then send ops start..start+count-1."""
    def emit(*fields: object) -> None:
        print(json.dumps(fields), flush=True)

    with Runtime(RuntimeConfig(home=home, recovery=mode)) as rt:
        emit("open")
        for wid in WORKERS:
            rep = rt.resume(wid)
            emit("rec", {"worker": wid, "requested": mode, "mode": rep.mode,
                         "seconds": rep.seconds, "entries": rep.entries})
        emit("ready")
        for n in range(int(start), int(start) + int(count)):
            wid, fn, args = op(int(seed), n)
            res = rt.invoke(wid, fn, args, idempotency_key=f"op-{n}")
            emit("ack", n, res.deduplicated, [v for _, v in res.results])


def state(rt: Runtime, wid: str) -> tuple[str, tuple]:
    """A worker's whole state: sha256 of linear memory and every mutable global."""
    inst = (w := rt.worker(wid)).instance
    mem = hashlib.sha256(inst.read(0, inst.memory_size())).hexdigest()
    return mem, tuple(inst.get_global(g) for g in w.layout.globals)


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no data)."""
    s = sorted(xs)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)] if s else float("nan")


@dataclass
class Rec:
    """One logical op as the oplog records it."""
    wid: str
    function: str
    args: list[str]
    results: list | None = None
    effect_keys: list[str] = field(default_factory=list)


class Campaign:
    """Runs driver processes, kills them, and checks the store after every kill."""

    def __init__(self, args: argparse.Namespace, workdir: str, sink: EffectSink) -> None:
        self.args, self.seed, self.sink = args, args.seed, sink
        self.home, self.errfile = os.path.join(workdir, "store"), os.path.join(workdir, "err")
        self.rng = random.Random(args.seed)
        # failures by kind; kills by crash point or "outside"; other counts
        self.counts, self.kills, self.stats = Counter(), Counter(), Counter()
        self.failures, self.latencies = [], []       # latencies: one per recovered worker
        self.recorded: dict[int, Rec] = {}           # op number -> what the oplog says
        self.starts: Counter[str] = Counter()        # idempotency key -> InvokeStarts
        self.seen: dict[str, int] = {}               # worker -> last oplog index scanned
        self.open: dict[str, str] = {}               # worker -> key of its open invocation
        self.acked: dict[int, list] = {}             # op number -> acknowledged results
        self.pays, self.problems = [], set()         # recorded pay ops; store problems seen
        self.cycles, self.elapsed, self.tracker, self.probes, self.ctx = 0, 0.0, None, {}, {}
        self.ref = Runtime(RuntimeConfig(home="memory://", crash=CrashPoints(),
                                         snapshot_policy=SnapshotPolicy.parse("off")))
        self.ref_next, self.ref_results, self.code = 0, {}, code_version()

    # -- set-up and the reference -------------------------------------------------
    def setup(self) -> None:
        """Build and deploy the guests; create every worker with its snapshot policy."""
        subprocess.run([sys.executable, ROOT / "guest_examples/build.py", *SETUP], check=True,
                       stdout=subprocess.DEVNULL)
        with Runtime(RuntimeConfig(home=self.home, crash=CrashPoints())) as rt:
            for name in SETUP:
                wasm = (ROOT / f"guest_examples/build/{name}.wasm").read_bytes()
                for r in (rt, self.ref) if name != "agent" else (rt,):
                    # Guests reach nothing by default: the agents may reach the sink.
                    r.deploy(wasm, name,
                             http_allow=[self.sink.address] if name == "agent" else ())
            for wid, policy in WORKERS.items():
                fn, args = SETUP[comp := wid.split("/")[0]]
                rt.invoke(wid, fn, args, idempotency_key=f"setup-{wid}",
                          env=[("AGENT_URL", self.sink.url)] if comp == "agent" else ())
                rt.configure(wid, snapshot_policy=SnapshotPolicy.parse(policy))
                if comp != "agent":
                    self.ref.invoke(wid, fn, args, idempotency_key=f"setup-{wid}")
            self.tracker = rt.worker_info("kv/e1").get("dirty_tracker")

    def reference(self, n: int) -> list:
        """Results of op n in the crash-free run (advanced lazily, in stream order)."""
        while self.ref_next <= n:
            wid, fn, args = op(self.seed, self.ref_next)
            if fn in AGENT_EXPECT:
                self.ref_results[self.ref_next] = AGENT_EXPECT[fn]
            else:
                wid, fn = ("counter/shared", "add") if fn == "delegate" else (wid, fn)
                res = self.ref.invoke(wid, fn, args, idempotency_key=f"op-{self.ref_next}")
                self.ref_results[self.ref_next] = [v for _, v in res.results]
            self.ref_next += 1
        return self.ref_results.get(n, [])

    # -- one kill ------------------------------------------------------------------
    def next_spec(self, cycle: int) -> str:
        """Every 4th cycle an outside kill; otherwise the next crash point, random n."""
        if cycle % 4 == 3:
            return "outside"
        point = sorted(POINTS)[(cycle - cycle // 4) % len(POINTS)]
        return f"{point}:{self.rng.randint(1, N_RANGE.get(point, 10))}"

    def spawn(self, spec: str, mode: str, start: int) -> tuple[int | None, list[list]]:
        """Run one driver; kill it from outside if spec says so. Returns (rc, lines)."""
        env = {k: v for k, v in os.environ.items() if k != "GOLEMISH_CRASH_AT"}
        env.update({} if spec == "outside" else {"GOLEMISH_CRASH_AT": spec})
        with open(self.errfile, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--driver", self.home, str(self.seed), str(start),
                 str(BUDGET), mode], stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        marks = {"open": threading.Event(), "ready": threading.Event()}
        in_recovery = self.rng.random() < 0.25  # a quarter of outside kills during recovery
        mark, delay = (marks["open"], 0.3) if in_recovery else (marks["ready"], 0.12)
        delay = self.rng.uniform(0, delay)

        def outside() -> None:
            if mark.wait(CHILD_TIMEOUT) and time.sleep(delay) is None and proc.poll() is None:
                proc.kill()  # SIGKILL, this child only

        watchdog = threading.Timer(CHILD_TIMEOUT, proc.kill)
        watchdog.start()
        if spec == "outside":
            threading.Thread(target=outside, daemon=True).start()
        lines: list[list] = []
        for line in proc.stdout:
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
                marks.get(lines[-1][0], threading.Event()).set()
        rc, hung = proc.wait(), watchdog.finished.is_set()
        watchdog.cancel()
        for m in marks.values():  # release the outside killer of a driver that ended
            m.set()
        if hung:
            self.fail("driver_errors", f"driver still running after {CHILD_TIMEOUT:.0f} s")
        return None if hung else rc, lines

    def cycle(self) -> None:
        """One driver run, its kill and the checks of the store after it."""
        cycle, self.cycles = self.cycles, self.cycles + 1
        spec = self.next_spec(cycle)
        mode = ("auto", "replay")[(cycle + cycle // 4) % 2]  # not tied to outside kills
        start = len(self.acked)
        self.ctx = {"cycle": cycle, "spec": spec, "mode": mode, "start_op": start}
        rc, lines = self.spawn(spec, mode, start)
        if rc == -9:
            self.kills[spec.split(":")[0]] += 1
        elif rc == 0:
            self.stats["clean_exits"] += 1
        elif rc is not None:
            tail = Path(self.errfile).read_text(errors="replace").strip()[-2000:]
            self.fail("divergences" if "Divergence" in tail else "driver_errors",
                      f"driver exited with {rc}: {tail.splitlines()[-1]}\n{tail}")
        self.latencies += [{"cycle": cycle, "source": "restart", **item[1]}
                           for item in lines if item[0] == "rec"]
        self.check([item[1:] for item in lines if item[0] == "ack"])

    # -- checks --------------------------------------------------------------------
    def fail(self, kind: str, detail: str) -> None:
        """Count an invariant failure, with what is needed to reproduce it."""
        self.counts[kind] += 1
        self.failures.append({"kind": kind, **self.ctx, "seed": self.seed, "detail": detail})
        print(f"  FAIL {kind} (cycle {self.ctx.get('cycle')}, {self.ctx.get('spec')}, "
              f"recovery {self.ctx.get('mode')}): {detail[:300]}", flush=True)

    def scan(self, store: Store) -> None:
        """Read the oplog entries appended since the last scan (oplogs are append-only)."""
        for wid in WORKERS:
            for index, e in store.oplog(wid).read(self.seen.get(wid, 0) + 1):
                self.seen[wid] = index
                key = self.open.get(wid, "")
                if isinstance(e, InvokeStart):
                    new = e.idempotency_key or "<none>"
                    self.starts[new] += 1
                    if self.starts[new] > 1:
                        self.fail("duplicate_executions", f"{new} has {self.starts[new]} "
                                  f"InvokeStarts (latest {wid} index {index})")
                    if key:
                        self.fail("lost_invocations", f"{wid}: {key} never ended")
                    self.open[wid] = new
                    if new.startswith("op-"):
                        n = int(new[3:])
                        args = [str(v) for _, v in e.params]
                        self.recorded.setdefault(n, Rec(wid, e.function, args))
                        self.pays += [n] if e.function == "pay" else []
                elif isinstance(e, EffectBegin) and key.startswith("op-"):
                    self.recorded[int(key[3:])].effect_keys.append(e.idempotency_key)
                elif isinstance(e, (InvokeEnd, InvokeFailed)) and key:
                    del self.open[wid]
                    if isinstance(e, InvokeFailed):
                        self.fail("failed_invocations", f"{key} on {wid}: {e.message}")
                    elif key.startswith("op-"):
                        self.completed(int(key[3:]), [v for _, v in e.results])

    def check(self, acks: list[list]) -> None:
        """The invariants that hold at every moment, checked on the store as it is now."""
        store = open_store(self.home)
        try:
            self.scan(store)
            for n, dedup, results in acks:
                rec = self.recorded.get(n)
                self.stats["deduplicated_resends"] += bool(dedup)
                if rec is None or rec.results is None:
                    self.fail("lost_acknowledged", f"op-{n} was acknowledged, not recorded")
                elif rec.results != results:
                    self.fail("divergences", f"op-{n} acknowledged {results}, "
                              f"recorded {rec.results}")
                self.acked[n] = results
            for kind, ops in (("lost_acknowledged", self.acked), ("recorded_gaps", self.recorded)):
                if ops and max(ops) + 1 != len(ops):  # both must be a prefix of the stream
                    self.fail(kind, f"missing: {sorted(set(range(max(ops))) - set(ops))[:9]}")
            self.check_payments()
            problems, counts = check_store(store, deep=self.ctx.get("deep", False))
            for p in set(map(str, problems)) - self.problems:  # each problem reported once
                self.problems.add(p)
                self.fail("store_check_failures", p)
            self.stats["store_checks"] += 1
            self.stats["oplog_entries"] = counts["entries"]
        finally:
            store.close()

    def completed(self, n: int, results: list) -> None:
        """Op n ended: it must be the op that was sent, with the crash-free result."""
        rec, (wid, fn, args) = self.recorded[n], op(self.seed, n)
        rec.results = results
        if (rec.wid, rec.function, rec.args) != (wid, fn, args):
            self.fail("divergences", f"op-{n} recorded as {rec.wid} {rec.function} "
                      f"{rec.args}, sent as {wid} {fn} {args}")
        elif (wid.split("/")[0], fn) not in NONDETERMINISTIC and results != self.reference(n):
            self.fail("divergences", f"op-{n} {wid} {fn} {args} -> {results}, "
                      f"crash-free reference {self.reference(n)}")

    def check_payments(self) -> None:
        """Each completed pay op is exactly one payment at the sink, under its own key."""
        payments = dict(self.sink.payments)
        expected: dict[str, int] = {}
        for n in self.pays:
            rec = self.recorded[n]
            expected.update((k, n) for k in rec.effect_keys)
            if rec.results is not None and len(rec.effect_keys) != 1:
                self.fail("duplicated_effects", f"op-{n} pay made {len(rec.effect_keys)} "
                          "payment requests")
            elif rec.results is not None and rec.effect_keys[0] not in payments:
                self.fail("missing_effects", f"op-{n} pay never reached the sink")
        for k, body in payments.items():
            if k not in expected:
                self.fail("duplicated_effects", f"payment {body!r} under unknown key {k}")
            elif body != str(100 + expected[k]):
                self.fail("divergences", f"op-{expected[k]} paid {body!r}")
        self.stats["payments"] = len(payments)
        self.stats["redeliveries"] = sum(d - 1 for d in self.sink.deliveries.values())

    def recover_all(self, mode: str) -> dict[str, tuple]:
        """Recover every worker in a fresh Runtime; their states (timed like restarts)."""
        states = {}
        with Runtime(RuntimeConfig(home=self.home, recovery=mode, crash=CrashPoints())) as rt:
            for wid in WORKERS:
                try:
                    rep = rt.resume(wid)
                    states[wid] = state(rt, wid)
                except Exception as e:  # a divergence, corruption, a failed worker...
                    self.fail("divergences" if isinstance(e, DivergenceError) else
                              "recovery_errors", f"{wid} ({mode}): {type(e).__name__}: {e}")
                    continue
                self.latencies.append({"cycle": self.ctx.get("cycle"), "source": "checkpoint",
                                       "worker": wid, "requested": mode, "mode": rep.mode,
                                       "seconds": rep.seconds, "entries": rep.entries})
        return states

    def checkpoint(self, final: bool = False) -> None:
        """Recover every worker both ways; states must agree (kv: with the reference too)."""
        snap, replay = self.recover_all("auto"), self.recover_all("replay")
        self.ctx["deep"] = final
        self.check([])  # the recoveries may have finished a cut-off op
        self.reference(len(self.recorded) - 1)  # the reference runs the same prefix
        for wid in set(snap) & set(replay):
            if snap[wid] != replay[wid]:
                self.fail("divergences", f"{wid}: snapshot recovery and replay differ")
            if wid.startswith("kv/") and state(self.ref, wid) != replay[wid]:
                self.fail("divergences", f"{wid}: state differs from the crash-free run")
        self.stats["checkpoints"] += 1
        if final:
            self.probe()

    def probe(self) -> None:
        """Final read-only probes in both recovery modes: the same, and as the reference."""
        calls = [(w, f) for w in WORKERS for f in PROBES[w.split("/")[0]]]
        got = {f"{w} {f}": {} for w, f in calls}
        for mode in ("auto", "replay"):
            with Runtime(RuntimeConfig(home=self.home, recovery=mode, crash=CrashPoints())) as rt:
                for w, f in calls:
                    res = rt.invoke(w, f, [], idempotency_key=f"final-{mode}-{w}-{f}")
                    got[f"{w} {f}"][mode] = [v for _, v in res.results]
        for (w, f), by_mode in zip(calls, got.values()):  # counter checksums: recorded clocks
            want = None if (w[:8], f) == ("counter/", "checksum") else \
                [v for _, v in self.ref.invoke(w, f, []).results]
            if by_mode["auto"] != by_mode["replay"] or want not in (None, by_mode["auto"]):
                self.fail("divergences", f"{w} {f}: {by_mode}, crash-free {want}")
        self.probes = got
        self.starts, self.seen, self.open, self.recorded, self.pays = Counter(), {}, {}, {}, []
        self.check([[n, False, r] for n, r in self.acked.items()])  # all again, from disk

    # -- the whole run ---------------------------------------------------------------
    def run(self) -> None:
        """Set up, then kill and check until --kills, a bound on driver runs, or time."""
        t0 = time.monotonic()
        try:
            self.setup()
            every = 10 if self.args.quick else 50
            while (sum(self.kills.values()) < self.args.kills
                   and self.cycles < 3 * self.args.kills + 10
                   and time.monotonic() - t0 < self.args.max_seconds):
                self.cycle()
                kills = sum(self.kills.values())
                if kills and kills % every == 0 and self.stats["checkpoints"] < kills // every:
                    self.checkpoint()
                    print(f"  {kills} kills, {self.cycles} driver runs, {len(self.acked)} ops "
                          f"acknowledged, {time.monotonic() - t0:.0f} s", flush=True)
            self.ctx = dict(self.ctx, spec="final", mode="both", cycle=self.cycles)
            self.checkpoint(final=True)
        except Exception:  # report what was found so far; the error is a failure too
            self.fail("campaign_errors", traceback.format_exc())
        self.ref.close()
        self.elapsed = time.monotonic() - t0


def code_version() -> str:
    """The git commit, and a hash of the runtime's sources as they are now."""
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                         capture_output=True).stdout.strip()
    h = hashlib.sha256(b"".join(f.read_bytes() for d in ("runtime", "oplog")
                                for f in sorted((ROOT / d).rglob("*.py"))))
    return f"{git or '?'}+{h.hexdigest()[:12]}"


def report(c: Campaign, out: Path) -> bool:
    """Print the summary table, write the JSON; True when every invariant held."""
    ok, s, code = not any(c.counts[k] for k in INVARIANTS), c.stats, [c.code, code_version()]
    machine = {"platform": platform.platform(), "python": platform.python_version(),
               "cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
               "loadavg": os.getloadavg(), "dirty_tracker": c.tracker,
               **{p: metadata.version(p) for p in ("wasmtime", "rocksdict", "golemish")},
               "date": time.strftime("%FT%T%z")}
    lat: dict[str, dict] = {}
    for mode in ("snapshot", "replay"):
        xs = [r for r in c.latencies if r["mode"].split()[0] == mode]  # + "(mid-call)"
        ms = [r["seconds"] * 1e3 for r in xs]
        lat[mode] = {"recoveries": len(xs), "p50_ms": percentile(ms, 50),
                     "p99_ms": percentile(ms, 99), "max_ms": percentile(ms, 100),
                     "entries_p50": percentile([r["entries"] for r in xs], 50)}
    summary = {"kills": sum(c.kills.values()), "driver runs": c.cycles,
               "seconds": round(c.elapsed), "ops acknowledged": len(c.acked),
               **{k.replace("_", " "): s[k] for k in (
                   "clean_exits", "deduplicated_resends", "payments", "redeliveries",
                   "oplog_entries", "store_checks", "checkpoints")},
               "code changed during the run": code[0][-12:] != code[1][-12:]}
    print(f"\ncrash campaign, seed {c.seed}, code {code[0]}: {'OK' if ok else 'FAILED'}\n"
          + "\n".join(f"    {k:<28}{v!s:>8}" for k, v in summary.items()) + "\n\n  kills by point\n"
          + "\n".join(f"    {p:<28}{c.kills[p]:>8}" for p in [*sorted(POINTS), "outside"])
          + "\n\n  invariant failures\n"
          + "\n".join(f"    {k:<28}{c.counts[k]:>8}" for k in INVARIANTS))
    print(f"\n  recovery latency, per worker {'n':>7} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'entries p50':>12}")
    for mode, r in lat.items():
        print(f"    {mode:<28}{r['recoveries']:>8} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['max_ms']:>8.2f} {r['entries_p50']:>12}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "crash_campaign", "ok": ok, "seed": c.seed, "code": code,
        "summary": {**summary, **{k: c.counts[k] for k in INVARIANTS}, **{
            f"{m} recovery {q} ms": round(v[f"{q}_ms"], 2) for m, v in lat.items()
            for q in ("p50", "p99")}},
        "settings": {"kills": c.args.kills, "quick": c.args.quick, "budget": BUDGET,
                     "workers": WORKERS, "max_seconds": c.args.max_seconds},
        "machine": machine, "kills_by_point": dict(c.kills), "kills": summary["kills"],
        "invariants": {k: c.counts[k] for k in INVARIANTS}, "stats": dict(s),
        "ops_acknowledged": len(c.acked), "ops_recorded": len(c.recorded),
        "recovery_latency": lat, "final_probes": c.probes, "failures": c.failures,
        "raw_latencies": c.latencies}, indent=1, default=str))
    print(f"\n  wrote {out}")
    return ok


def main() -> int:
    if sys.argv[1:2] == ["--driver"]:
        return drive(*sys.argv[2:7]) or 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="50 kills")
    ap.add_argument("--out", type=Path, default=ROOT / "scripts/results/crash_campaign.json")
    ap.add_argument("--keep", action="store_true", help="keep the store directory")
    args = ap.parse_args()
    args.kills = min(args.kills, 50) if args.quick else args.kills
    args.max_seconds = 150.0 if args.quick else 4 * 3600.0  # stop by then whatever happens
    workdir = tempfile.mkdtemp(prefix="golemish-campaign-")
    try:
        with EffectSink() as sink:
            c = Campaign(args, workdir, sink)
            print(f"crash campaign: seed {args.seed}, {args.kills} kills, store {workdir}, "
                  f"effect sink {sink.url}", flush=True)
            c.run()
            ok = report(c, args.out)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
