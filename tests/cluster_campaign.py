"""The cluster chaos campaign: 3 executors on one PostgreSQL store under load, one
SIGKILLed (and restarted) every ``interval_s``, and now and then one paused with
SIGSTOP past its lease and resumed (a zombie). Used by tests/chaos/test_cluster_chaos.py
and scripts/bench_cluster.py.

Load: client threads send invocations with idempotency keys to random executors and
retry each (same key) until it is acknowledged (200): counter ``add`` (exactly-once
state), agent ``pay`` (an HTTP effect to a local sink, which records each request's
Idempotency-Key) and agent ``nap`` (a durable sleep).

At the end every executor is stopped and the store is checked from outside:
- lost: an acknowledged invocation whose InvokeStart is not in its worker's oplog,
  or a counter whose value (replayed from the oplog by a fresh runtime) is not the
  sum of its acknowledged adds;
- duplicated effects: one payment that reached the sink under two different keys;
  a payment acknowledged but never received;
- duplicate records: an idempotency key with two InvokeStarts (a write accepted
  from a zombie would show here, or as a divergence);
- divergences: a worker that fails to replay its whole oplog from the start
  (recovery=replay), or is marked failed; ``store check`` problems.

That these checks catch a zombie's writes was tried by hand: with the fencing taken
out of runtime/cluster.py (FencingBackend writing unfenced), 8 kills and 4 zombies
gave 2 lost invocations and 4 divergences (an invocation end without a start,
snapshots and idempotency keys pointing at overwritten entries).
"""

from __future__ import annotations

import itertools
import random
import signal
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cluster_kit import Executor, Sink, deploy, migrate


@dataclass
class Report:
    kills: int = 0
    zombies: int = 0
    acknowledged: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated_effects: list[str] = field(default_factory=list)
    duplicate_records: list[str] = field(default_factory=list)
    divergences: list[str] = field(default_factory=list)
    zombie_fenced_rejections: int = 0
    taken_over: int = 0
    forwarded: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {k: (v if not isinstance(v, list) else (len(v), v[:10]))
                for k, v in vars(self).items()}


class _Client(threading.Thread):
    def __init__(self, n: int, executors: list[Executor], sink: Sink, stop: threading.Event,
                 seq: itertools.count, rep: Report, lock: threading.Lock,
                 acked: dict[str, Any], rng: random.Random) -> None:
        super().__init__(daemon=True, name=f"client-{n}")
        self.n, self.executors, self.sink, self.stop = n, executors, sink, stop
        self.seq, self.rep, self.lock, self.acked, self.rng = seq, rep, lock, acked, rng
        self.http = httpx.Client(timeout=60)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.one()
        except Exception as e:  # noqa: BLE001 - reported as an error of the campaign
            with self.lock:
                self.rep.errors.append(f"client {self.n}: {type(e).__name__}: {e}")
        finally:
            self.http.close()

    def one(self) -> None:
        i = next(self.seq)
        kind = self.rng.choice(["add", "add", "pay", "nap"])
        w = self.rng.randrange(4)
        key = f"k{i}"
        if kind == "add":
            worker, fn, args, env = f"counter/c{w}", "add", [str(1 + i % 7)], {}
        elif kind == "pay":
            worker, fn, args, env = f"agent/p{w}", "pay", [str(i)], {"AGENT_URL": self.sink.url}
        else:
            worker, fn, args, env = f"agent/n{w}", "nap", ["150"], {}
        deadline = time.monotonic() + 120
        while True:
            ex = self.rng.choice(self.executors)
            try:
                r = self.http.post(f"{ex.url}/workers/{worker}/invoke",
                                   json={"function": fn, "args": args, "env": env},
                                   headers={"Idempotency-Key": key})
                if r.status_code == 200:
                    break
                if r.status_code < 500:
                    with self.lock:
                        self.rep.errors.append(f"{worker} {fn} {key}: {r.status_code} {r.text}")
                    return
            except httpx.HTTPError:
                pass
            with self.lock:
                self.rep.retries += 1
            if time.monotonic() > deadline:
                with self.lock:
                    self.rep.errors.append(f"{worker} {fn} {key}: no answer within 120 s")
                return
            time.sleep(0.05)
        with self.lock:
            self.acked[key] = (worker, fn, args)


def run_campaign(store_url: str, guests: dict[str, Path], *, kills: int = 50,
                 interval_s: float = 1.0, zombie_every: int = 10, clients: int = 6,
                 lease_s: float = 1.0, renew_s: float = 0.2, seed: int = 1,
                 log_dir: Path | None = None, say: Any = None) -> Report:
    rng = random.Random(seed)
    say = say or (lambda *a: None)
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="golemish-chaos-"))
    rep = Report()
    migrate(store_url)
    sink = Sink(delay_s=0.02)  # an effect takes a moment: some are in flight at a kill
    executors = [Executor(store_url, f"e{i}", lease_s=lease_s, renew_s=renew_s,
                          log_dir=log_dir) for i in range(3)]
    t0 = time.monotonic()
    try:
        for e in executors:
            e.start()
        deploy(executors[0].url, "counter", guests["counter"].read_bytes())
        deploy(executors[0].url, "agent", guests["agent"].read_bytes(), [sink.host])
        stop, lock, acked = threading.Event(), threading.Lock(), {}
        seq = itertools.count(1)
        threads = [_Client(n, executors, sink, stop, seq, rep, lock, acked,
                           random.Random(seed * 1000 + n)) for n in range(clients)]
        for t in threads:
            t.start()
        for k in range(1, kills + 1):
            time.sleep(interval_s)
            if zombie_every and k % zombie_every == 0:
                z = rng.choice(executors)
                z.signal(signal.SIGSTOP)
                time.sleep(lease_s + 1.0)  # past its lease: the others take its workers
                z.signal(signal.SIGCONT)
                rep.zombies += 1
                time.sleep(0.5)
                try:
                    rep.zombie_fenced_rejections += z.info()["fenced_rejections"]
                except httpx.HTTPError:
                    pass
            victim = rng.choice(executors)
            try:
                info = victim.info()
                rep.taken_over += info["taken_over"]
                rep.forwarded += info["forwarded"]
            except httpx.HTTPError:
                pass
            victim.kill()
            rep.kills += 1
            victim.start()
            say(f"kill {k}/{kills}: {victim.name}; acknowledged so far {len(acked)}")
        stop.set()
        for t in threads:
            t.join(180)
        rep.acknowledged = len(acked)
        rep.by_kind = dict(Counter(fn for _, fn, _ in acked.values()))
        for e in executors:
            try:
                info = e.info()
                rep.taken_over += info["taken_over"]
                rep.forwarded += info["forwarded"]
            except httpx.HTTPError:
                pass
    finally:
        for e in executors:
            e.stop()
        sink.close()
    _verify(store_url, acked, sink, rep)
    rep.seconds = round(time.monotonic() - t0, 1)
    return rep


def _verify(store_url: str, acked: dict[str, Any], sink: Sink, rep: Report) -> None:
    from golemish.oplog import InvokeStart
    from golemish.oplog.check import check_store
    from golemish.runtime.errors import GolemishError
    from golemish.runtime.executor import Runtime, RuntimeConfig

    expected: dict[str, int] = defaultdict(int)
    keys_by_worker: dict[str, set[str]] = defaultdict(set)
    for key, (worker, fn, args) in acked.items():
        keys_by_worker[worker].add(key)
        if fn == "add":
            expected[worker] += int(args[0])
    with Runtime(RuntimeConfig(home=store_url, create=False, recovery="replay")) as rt:
        for wid in rt.worker_ids():
            starts = Counter(e.idempotency_key for _, e in rt.store.oplog(wid).read()
                             if isinstance(e, InvokeStart) and e.idempotency_key)
            rep.duplicate_records += [f"{wid} {k} x{n}" for k, n in starts.items() if n > 1]
            rep.lost += [f"{wid} {k}" for k in keys_by_worker.get(wid, set()) - set(starts)]
            try:
                if rt.worker_info(wid)["status"] == "failed":
                    rep.divergences.append(f"{wid}: failed")
                rt.resume(wid)  # replays the whole oplog from Create
                if wid.startswith("counter/"):
                    got = rt.invoke(wid, "get").results[0][1]
                    if got != expected.get(wid, 0):
                        rep.lost.append(f"{wid}: value {got}, acknowledged adds sum to "
                                        f"{expected.get(wid, 0)}")
            except GolemishError as e:
                rep.divergences.append(f"{wid}: {e}")
        problems, _ = check_store(rt.store)
        rep.divergences += [f"store check: {p}" for p in problems]
    effects = sink.effects()
    rep.duplicated_effects += [f"payment {b} under keys {sorted(k)}"
                               for b, k in effects.items() if len(k) > 1]
    for key, (worker, fn, args) in acked.items():
        if fn == "pay" and args[0] not in effects:
            rep.lost.append(f"payment {args[0]} ({key}) acknowledged, never received")
