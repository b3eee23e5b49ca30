#!/usr/bin/env python
"""Store backends side by side: RocksDB against PostgreSQL, in one run.

Run from the repository root::

    python scripts/bench_store_backends.py            # full run
    python scripts/bench_store_backends.py --quick    # smoke test
    python scripts/bench_store_backends.py --url postgresql://user@host/db   # a server of yours

Without ``--url`` a private PostgreSQL cluster is started from the binaries on PATH
(as tests/pg.py does: loopback TCP, fsync on) and stopped at the end.

Per configuration, each figure a median over repeats:

* append: one oplog append (``WorkerOplog.append``: the entry and the worker's
  head in one batch, one commit);
* batch of N: one ``backend.write`` of N puts of 100-byte values (one commit);
* get: one point read of an existing key;
* scan: reading 1,000 oplog entries (``WorkerOplog.read``);
* invoke: one ``add`` on the counter guest through the Runtime (two host calls, a
  log line, begin and end: five commits).

Configurations: RocksDB (WAL, no fsync: golemish's default), RocksDB ``--sync``
(fsync per commit), Postgres with its defaults (synchronous_commit on: the commit
is flushed to disk before it returns), and Postgres with synchronous_commit off
(the server acknowledges before its WAL flush: survives a crash of golemish, not of
the database machine). Postgres is reached over TCP on 127.0.0.1.

Prints a table and writes JSON (``--out``, default scripts/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, gc_paused, guest_modules, machine_info, say, summary  # noqa: E402

from golemish.oplog import Log, Store  # noqa: E402
from golemish.oplog.backends.postgres import PostgresBackend  # noqa: E402
from golemish.oplog.backends.rocksdb import RocksBackend  # noqa: E402

ASYNC_OPTS = "?options=-c%20synchronous_commit%3Doff"


def new_database(admin_url: str, name: str) -> str:
    import psycopg
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def time_each(fn, n: int) -> list[float]:
    out = []
    with gc_paused():
        for i in range(n):
            t = time.perf_counter()
            fn(i)
            out.append(time.perf_counter() - t)
    return out


def bench_backend(backend: Any, n: int, batch_sizes: list[int]) -> dict[str, Any]:
    store = Store(backend)
    log = store.create_worker({"id": "b/w"}, Log(1, b"create"))
    entry = Log(1, b"x" * 60)
    res: dict[str, Any] = {}
    time_each(lambda i: log.append(entry), 5)  # warm-up
    res["append"] = summary(time_each(lambda i: log.append(entry), n))
    value = b"v" * 100
    for size in batch_sizes:
        def batch(i: int, size: int = size) -> None:
            backend.write([("meta", b"batch%d-%d-%d" % (size, i, j), value) for j in range(size)])
        res[f"batch_{size}"] = summary(time_each(batch, max(5, n // 4)))
    res["get"] = summary(time_each(lambda i: backend.get("meta", b"head\0b/w"), n))
    while log.last_index < 1000:
        log.append(entry)
    res["scan_1000"] = summary(time_each(lambda i: sum(1 for _ in log.read(1, 1000)),
                                         max(3, n // 20)))
    return res


def bench_invoke(home: str, n: int, wasm: bytes, sync: bool) -> dict[str, Any]:
    from golemish.runtime.executor import Runtime, RuntimeConfig
    from golemish.runtime.snapshot.policy import SnapshotPolicy
    cache = tempfile.mkdtemp(prefix="golemish-bench-cache-")
    try:
        with Runtime(RuntimeConfig(home=home, snapshot_policy=SnapshotPolicy.parse("off"),
                                   cache_dir=cache, sync=sync)) as rt:
            rt.deploy(wasm, "counter")
            rt.invoke("counter/a", "add", ["1"])
            return summary(time_each(lambda i: rt.invoke("counter/a", "add", ["1"]), n))
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--url", help="an admin URL of an existing server (its database "
                                  "golemish_bench_* are created and dropped)")
    ap.add_argument("--out", type=Path,
                    default=ROOT / "scripts" / "results" / "bench_store_backends.json")
    args = ap.parse_args()
    n = 40 if args.quick else 300
    batch_sizes = [10, 100] if args.quick else [10, 100, 1000]
    cluster = None
    if args.url is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from pg import Cluster
        cluster = Cluster(Path(tempfile.mkdtemp(prefix="golemish-bench-pg-")))
        cluster.start()
        admin = cluster.url()
    else:
        admin = args.url
    tmp = Path(tempfile.mkdtemp(prefix="golemish-bench-"))
    wasm = guest_modules(["counter"])["counter"]
    results: dict[str, Any] = {}
    try:
        configs = {
            "rocksdb": lambda: RocksBackend(str(tmp / "r"), create=True),
            "rocksdb --sync": lambda: RocksBackend(str(tmp / "rs"), create=True, sync=True),
            "postgres": lambda: PostgresBackend(new_database(admin, "golemish_bench_pg"),
                                                create=True),
            "postgres sync_commit=off": lambda: PostgresBackend(
                new_database(admin, "golemish_bench_pga") + ASYNC_OPTS, create=True),
        }
        homes = {"rocksdb": str(tmp / "ir"), "rocksdb --sync": str(tmp / "irs"),
                 "postgres": new_database(admin, "golemish_bench_ipg"),
                 "postgres sync_commit=off": new_database(admin, "golemish_bench_ipga")
                 + ASYNC_OPTS}
        for name, make in configs.items():
            say(f"{name}: store operations ...")
            b = make()
            try:
                results[name] = bench_backend(b, n, batch_sizes)
            finally:
                b.close()
            say(f"{name}: invocations ...")
            results[name]["invoke"] = bench_invoke(homes[name], max(10, n // 10), wasm,
                                                   sync=name == "rocksdb --sync")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)

    cols = ["append", *[f"batch_{s}" for s in batch_sizes], "get", "scan_1000", "invoke"]
    say()
    say("median latency, ms (ratio to rocksdb in brackets)")
    say(f"{'store':26}" + "".join(f"{c:>20}" for c in cols))
    base = results["rocksdb"]
    for name, r in results.items():
        cells = []
        for c in cols:
            m = r[c]["median"] * 1e3
            ratio = r[c]["median"] / base[c]["median"]
            cells.append(f"{m:9.3f} ({ratio:7.1f}x)")
        say(f"{name:26}" + "".join(f"{x:>20}" for x in cells))
    for name, r in results.items():
        per_op = {s: r[f"batch_{s}"]["median"] / s * 1e6 for s in batch_sizes}
        say(f"{name}: per op in a batch: " +
            ", ".join(f"N={s}: {us:.1f} us" for s, us in per_op.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": machine_info(), "quick": args.quick, "n": n,
        "postgres": "private cluster (tests/pg.py)" if cluster else "given --url",
        "results": results,
        "ratios_to_rocksdb": {name: {c: r[c]["median"] / base[c]["median"] for c in cols}
                              for name, r in results.items()},
    }, indent=1))
    say(f"wrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
