"""`golemish worker …`, `promise …` and `store …`: managing what is deployed and running."""

from __future__ import annotations

import sys
import time

import click

from golemish.oplog import GolemishError

from ..errors import Suspended, WorkerSuspendedError
from ..snapshot.policy import SnapshotPolicy
from ..summaries import clip, full_summary, SUMMARY_WIDTH
from .client import find_server
from .common import Ctx, emit_json, run, table, when, writer
from .versions import history_rows


def format_value(v):  # type: ignore[no-untyped-def]
    """values.format_value, imported when a result is shown (it loads the engine)."""
    from ..typed.values import format_value as fmt
    return fmt(v)


def _versions():  # type: ignore[no-untyped-def]
    """runtime/versions.py (it loads the whole executor) only when a command needs it."""
    from .. import versions
    return versions


@click.group()
def worker() -> None:
    """Inspect and manage workers."""


@worker.command("list")
@run
def worker_list(ctx: Ctx) -> None:
    """List workers."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        infos = client.worker_infos()
    else:
        with ctx.runtime(readonly=True) as rt:
            infos = [rt.worker_info(w) for w in rt.worker_ids()]
    if ctx.json:
        emit_json(infos)
        return
    table([(i["id"], f"{i['component']} v{i['version']}", i["status"], i["oplog_length"],
             i["invocations"], when(i["created_at"])) for i in infos],
           ["worker", "component", "status", "oplog", "invocations", "created"])


@worker.command("show")
@click.argument("worker_id", metavar="WORKER")
@run
def worker_show(ctx: Ctx, worker_id: str) -> None:
    """Show one worker."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        info = client.worker_info(worker_id)
        history = history_rows(None, worker_id, info["version_history"])
    else:
        with ctx.runtime(readonly=True) as rt:
            info = rt.worker_info(worker_id)
            history = history_rows(rt, worker_id)
            info["version_history"] = _versions().version_history(rt, worker_id)
    if ctx.json:
        emit_json(info)
        return
    rows = [("worker", info["id"]), ("component", f"{info['component']} v{info['version']}"),
            ("status", info["status"]),
            ("resident", "yes (loaded by the server)" if info.get("resident")
             else "no (restored from its snapshot and oplog when next used)"),
            ("oplog length", f"{info['oplog_length']}"
                             + (f" ({info['oplog_archived']} archived)"
                                if info["oplog_archived"] else "")),
            ("invocations", info["invocations"]), ("created", when(info["created_at"])),
            ("limits", f"memory {info.get('memory_limit', 0) >> 20} MiB, "
                       f"{info.get('time_limit', 0):g} s per invocation")]
    rows.append(("snapshots", f"{info['snapshots']} kept, policy {info['snapshot_policy']}, "
                              f"dirty tracking by {info['dirty_tracker']}"))
    if info.get("latest_snapshot"):
        rows += [("latest", f"at oplog index {info['latest_snapshot']}, memory "
                            f"{info['memory_bytes'] / (1 << 20):.1f} MiB"),
                 ("stored", f"{info['snapshot_pages']} pages, "
                            f"{info['snapshot_stored_bytes']:,} bytes; dedup "
                            f"{info['dedup_ratio']}x, compression {info['compression_ratio']}x")]
    if info.get("snapshots_disabled"):
        rows.append(("no snapshots", info["snapshots_disabled"]))
    if info.get("last_recovery"):
        rows.append(("last recovery", info["last_recovery"]))
    if info.get("error"):
        rows.append(("error", info["error"]))
    if info.get("forked_from"):
        rows.append(("forked from", info["forked_from"]))
    rows += [("versions" if i == 0 else "", line) for i, line in enumerate(history)]
    for k, v in rows:
        click.echo(f"{k + ':':<15} {v}")


@worker.command("oplog")
@click.argument("worker_id", metavar="WORKER")
@click.option("--from", "start", type=click.IntRange(min=1), default=1, help="First index.")
@click.option("--to", "end", type=click.IntRange(min=1), default=None, help="Last index.")
@click.option("--full", is_flag=True, help="Show long values whole instead of cut at "
              f"{SUMMARY_WIDTH} characters.")
@run
def worker_oplog(ctx: Ctx, worker_id: str, start: int, end: int | None, full: bool) -> None:
    """Print a worker's oplog: index, kind and a summary per entry."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        rows = client.get(client.worker_path(worker_id, "/oplog/text"), start=start, end=end,
                          full=full)
    else:
        with ctx.runtime(readonly=True) as rt:
            entries = rt.oplog(worker_id, start, end)
            void = _versions().skipped(rt, worker_id)  # voided by a revert (or a rewind)
        rows = [{"index": i, "name": e.NAME, "entry": e.to_json(),
                 "summary": full_summary(e) if full else clip(e.summary()),
                 "skipped": any(a <= i <= b for a, b in void)} for i, e in entries]
    if ctx.json:
        emit_json([{"index": r["index"], **r["entry"],
                    **({"skipped": True} if r["skipped"] else {})} for r in rows])
        return
    table([(r["index"], r["name"] + (" (skipped)" if r["skipped"] else ""), r["summary"])
           for r in rows], ["index", "kind", "summary"])


@worker.command("snapshot")
@click.argument("worker_id", metavar="WORKER")
@click.option("--full", is_flag=True, help="Capture every page, ignoring earlier snapshots.")
@run
def worker_snapshot(ctx: Ctx, worker_id: str, full: bool) -> None:
    """Take a snapshot of a worker now."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        got = client.post(client.worker_path(worker_id, "/snapshot"), {"full": full})[1]
        got.pop("worker")
        summary = got.pop("summary")
    else:
        with ctx.runtime() as rt:
            entry = rt.snapshot(worker_id, full=full)
            index = rt.store.oplog(worker_id).last_index
            meta = rt.store.get_worker(worker_id) or {}
        if entry is None:
            raise GolemishError(f"worker {worker_id} cannot be snapshotted: "
                                f"{meta.get('snapshots_disabled', 'it is ephemeral')}")
        got, summary = {"index": index, **entry.to_json()}, entry.summary()
    if ctx.json:
        emit_json(got)
    else:
        click.echo(f"snapshot of {worker_id} at oplog index {got['index']}: {summary}")


@worker.command("config")
@click.argument("worker_id", metavar="WORKER")
@click.option("--snapshot-policy", "policy", metavar="POLICY",
              help="adaptive[:TARGET_S], every:N, interval:SECONDS or off.")
@click.option("--allow-http", multiple=True, metavar="HOST[:PORT]",
              help="Let the worker reach this host (any port, or only PORT) over HTTP; "
                   "'*' allows every host. Guests reach nothing by default, loopback "
                   "included.")
@click.option("--deny-http", multiple=True, metavar="HOST[:PORT]",
              help="Take a host off the worker's HTTP allow-list.")
@run
def worker_config(ctx: Ctx, worker_id: str, policy: str | None, allow_http: tuple[str, ...],
                  deny_http: tuple[str, ...]) -> None:
    """Change a worker's settings."""
    parsed = SnapshotPolicy.parse(policy) if policy else None
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        client.request("PUT", client.worker_path(worker_id, "/config"), {
            "snapshot_policy": str(parsed) if parsed else None,
            "allow_http": list(allow_http), "deny_http": list(deny_http)})
        info = client.worker_info(worker_id)
        info.pop("version_history", None)  # `worker show` has it; in-process config does not
    else:
        with ctx.runtime() as rt:
            rt.configure(worker_id, snapshot_policy=parsed, allow_http=allow_http,
                         deny_http=deny_http)
            info = rt.worker_info(worker_id)
    if ctx.json:
        emit_json(info)
        return
    click.echo(f"{worker_id}: snapshot policy {info['snapshot_policy']}, HTTP allow-list: "
               f"{', '.join(info.get('http_allow', [])) or 'none (guests reach nothing by default)'}")


@worker.command("interrupt")
@click.argument("worker_id", metavar="WORKER")
@run
def worker_interrupt(ctx: Ctx, worker_id: str) -> None:
    """Abandon a worker's pending invocation (suspended or cut off by a crash).

    It is recorded as failed and the worker returns to its state from before it;
    effects it already had (HTTP calls, calls to other workers) are not undone.
    """
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        pending = client.post(client.worker_path(worker_id, "/interrupt"))[1]["abandoned"]
    else:
        with ctx.runtime() as rt:
            pending = rt.interrupt(worker_id)
    click.echo(f"interrupted {pending} on {worker_id}" if pending
               else f"{worker_id} had no pending invocation")


@worker.command("resume")
@click.argument("worker_id", metavar="WORKER")
@click.option("--wait", is_flag=True, help="If the worker sleeps, wait until it wakes.")
@run
def worker_resume(ctx: Ctx, worker_id: str, wait: bool) -> None:
    """Recover a worker now: finish an invocation a crash cut off, or one whose timer
    is due or whose promise was completed."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        from .remote import remote_resume
        report = remote_resume(client, worker_id, wait, lambda s, d: writer(s, d, ctx.json))
        if ctx.json:
            emit_json(vars(report) if report else None)
        elif report is not None:
            click.echo(f"worker {worker_id} {report.describe()}")
        return
    with ctx.runtime() as rt:
        while True:
            try:
                report = rt.resume(worker_id, output=lambda s, d: writer(s, d, ctx.json))
                break
            except WorkerSuspendedError as e:
                if not (wait and e.until_ns):
                    raise Suspended(e.worker_id, promise=e.promise, until_ns=e.until_ns) \
                        from None
                time.sleep(max(0.0, e.until_ns / 1e9 - time.time() - rt.suspend_after_s()))
    if ctx.json:
        emit_json(vars(report) if report else None)
    elif report is not None:
        click.echo(f"worker {worker_id} {report.describe()}")


@worker.command("delete")
@click.argument("worker_id", metavar="WORKER")
@run
def worker_delete(ctx: Ctx, worker_id: str) -> None:
    """Delete a worker and its oplog."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        client.request("DELETE", client.worker_path(worker_id))
    else:
        with ctx.runtime() as rt:
            rt.delete_worker(worker_id)
    if not ctx.json:
        click.echo(f"deleted {worker_id}")


@click.group()
def store() -> None:
    """Inspect the store itself."""


@store.command("check")
@click.option("--deep", is_flag=True, help="Also decompress every page and verify its hash, "
              "and read the module and compiled-code tables whole.")
@run
def store_check(ctx: Ctx, deep: bool) -> None:
    """Verify the store: dense oplogs, checksums, snapshot pages, references.

    Prints each problem with its location and exits 1 if there is any.
    """
    from golemish.oplog.check import check_store
    from golemish.oplog import open_store

    with open_store(ctx.home, readonly=True) as st:
        problems, counts = check_store(st, deep=deep)
    if ctx.json:
        emit_json({"ok": not problems, "checked": counts,
                    "problems": [{"where": p.where, "what": p.what} for p in problems]})
    else:
        for p in problems:
            click.echo(f"problem: {p}")
        summary = ", ".join(f"{n} {k}" for k, n in counts.items())
        click.echo(f"{'ok' if not problems else f'{len(problems)} problem(s)'}: checked {summary}")
    if problems:
        sys.exit(1)


@store.command("init")
@run
def store_init(ctx: Ctx) -> None:
    """Create an empty store at --home (`deploy` also creates one). Nothing else does."""
    from golemish.oplog import open_store
    from golemish.oplog.backends.postgres import display_url, is_postgres_url, migrate
    from golemish.oplog.backends.rocksdb import read_identity
    from golemish.oplog.store import store_path

    path = store_path(ctx.home)
    if is_postgres_url(ctx.home):
        before, _ = migrate(ctx.home)
        existed = before is not None
    else:
        existed = path is not None and read_identity(path) is not None
    with open_store(ctx.home, create=True):
        pass
    ident = read_identity(path) if path is not None else None
    where = path or display_url(ctx.home)
    if ctx.json:
        emit_json({"path": where, "created": not existed,
                   "store_id": ident and ident.get("store_id")})
    else:
        click.echo(f"{'store exists' if existed else 'created store'} at {where}")


@store.command("migrate")
@run
def store_migrate(ctx: Ctx) -> None:
    """Create or upgrade the schema of a PostgreSQL store (--store postgres://…).

    The only command that upgrades one; every other refuses a schema it does not
    know. Safe to run again, and from several machines at once.
    """
    from golemish.oplog.backends.postgres import display_url, is_postgres_url, migrate

    if not is_postgres_url(ctx.home):
        raise GolemishError(f"store migrate works on PostgreSQL stores (postgres://…), not "
                            f"{ctx.home}; `golemish store init` creates a RocksDB store")
    before, after = migrate(ctx.home)
    where = display_url(ctx.home)
    if ctx.json:
        emit_json({"store": where, "from": before, "to": after})
    elif before is None:
        click.echo(f"created store at {where} (schema version {after})")
    elif before == after:
        click.echo(f"store at {where} is up to date (schema version {after})")
    else:
        click.echo(f"upgraded store at {where} from schema version {before} to {after}")


@store.command("recover")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@run
def store_recover(ctx: Ctx, yes: bool) -> None:
    """Recover a store whose write-ahead log is damaged, losing the writes after the damage.

    First prints exactly what would be lost (workers and oplog index ranges), then asks
    for confirmation (or takes --yes), then keeps every write before the damaged
    record. A store that opens normally is left alone.
    """
    from golemish.oplog.recover import inspect_wal, recover_wal
    from golemish.oplog.store import store_path

    path = store_path(ctx.home)
    if path is None:
        raise GolemishError(f"store recover works on stores on disk, not {ctx.home}")
    damage = inspect_wal(path)
    if damage is None:
        if ctx.json:
            emit_json({"damaged": False, "recovered": False})
        else:
            click.echo(f"the write-ahead log of {path} is intact: nothing to recover")
        return
    if not ctx.json:
        for line in damage.describe():
            click.echo(line)
    if not yes and not click.confirm("Recover, losing the writes listed above?", err=True):
        raise GolemishError("not recovered: nothing was changed")
    done = recover_wal(path)
    if ctx.json:
        emit_json({"damaged": True, "recovered": done is not None,
                   **(done or damage).to_json()})
    else:
        click.echo(f"recovered {path}: the writes listed above are gone; "
                   "check it with `golemish store check`")


@click.group()
def promise() -> None:
    """Promises: values a worker awaits from outside (a human's approval, a webhook)."""


@promise.command("list")
@run
def promise_list(ctx: Ctx) -> None:
    """List promises and their state."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        promises = client.get("/promises")
    else:
        with ctx.runtime(readonly=True) as rt:
            promises = rt.list_promises()
    if ctx.json:
        emit_json(promises)
        return
    table([(p["id"], p["worker"], p["state"], when(p["created_at"]),
             when(p["completed_at"]) if p.get("completed_at") else "-") for p in promises],
           ["promise", "worker", "state", "created", "completed"])


@promise.command("complete")
@click.argument("promise_id", metavar="PROMISE")
@click.argument("data", default="")
@run
def promise_complete(ctx: Ctx, promise_id: str, data: str) -> None:
    """Complete PROMISE with DATA and resume the worker awaiting it.

    The worker's invocation continues here; its output goes to this command.
    """
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        from .remote import remote_complete
        p, outcome = remote_complete(client, promise_id, data,
                                     lambda s, d: writer(s, d, ctx.json))
    else:
        with ctx.runtime() as rt:
            p, outcome = rt.complete_promise(promise_id, data.encode(),
                                             output=lambda s, d: writer(s, d, ctx.json))
    if isinstance(outcome, Suspended):
        raise outcome
    finished = getattr(outcome, "finished", None)
    if ctx.json:
        emit_json({"promise": promise_id, "worker": p["worker"], "finished": finished})
    elif finished:
        result = (" ".join(format_value(v) for v in finished["results"]) if finished["ok"]
                  else f"failed: {finished['error']}")
        click.echo(f"golemish: {p['worker']} finished {finished['function']}: {result}",
                   err=True)
        if finished["ok"] and finished["results"]:
            click.echo(" ".join(format_value(v) for v in finished["results"]))
