"""The `golemish` command line. Human tables by default, ``--json`` for scripts.

Errors print one line and exit non-zero; ``--debug`` adds the traceback.
Guest stdout/stderr are streamed to ours as they are recorded; status lines
from golemish itself go to stderr so stdout stays the guest's and the result's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from golemish.oplog import GolemishError

from .crash import CrashPoints
from .errors import ArgumentError, Suspended, WorkerSuspendedError
from .executor import Runtime, RuntimeConfig
from .policy import SnapshotPolicy
from .values import format_value


class Ctx:
    def __init__(self, home: str, as_json: bool, debug: bool, sync: bool, recovery: str,
                 policy: SnapshotPolicy, retention: str = "keep") -> None:
        self.retention = retention
        self.home = home
        self.json = as_json
        self.debug = debug
        self.sync = sync
        self.recovery = recovery
        self.policy = policy
        self.memory_limit_mib = 256
        self.time_limit = 60.0

    def runtime(self, crash_at: str | None = None) -> Runtime:
        crash = CrashPoints(crash_at) if crash_at else CrashPoints.from_env()
        return Runtime(RuntimeConfig(home=self.home, sync=self.sync, crash=crash,
                                     memory_limit=self.memory_limit_mib << 20,
                                     time_limit=self.time_limit, recovery=self.recovery,
                                     snapshot_policy=self.policy,
                                     oplog_retention=self.retention))


def _fail(ctx: Ctx, err: BaseException) -> NoReturn:
    if ctx.debug:
        traceback.print_exception(err)
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    click.echo(f"error: {msg}", err=True)
    sys.exit(1)


def _run(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn golemish errors into one-line messages."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx: Ctx = click.get_current_context().find_object(Ctx)  # type: ignore[assignment]
        try:
            return fn(ctx, *args, **kwargs)
        except WorkerSuspendedError as e:
            _fail(ctx, GolemishError(
                f"{e}; complete what it waits for, or abandon its pending invocation with "
                f"`golemish worker interrupt {e.worker_id}`"))
        except Suspended as e:
            # Not a failure: the invocation waits, durably, and the process may exit.
            if ctx.json:
                _emit_json({"status": "suspended", "worker": e.worker_id,
                            "promise": e.promise, "until_ns": e.until_ns})
            else:
                click.echo(f"golemish: {e}; resume with `golemish "
                           + (f"promise complete {e.promise} DATA`" if e.promise
                              else f"worker resume {e.worker_id}`"), err=True)
        except GolemishError as e:
            _fail(ctx, e)
        except OSError as e:
            _fail(ctx, e)
    return wrapper


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()
    click.echo(line)
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@click.group()
@click.option("--home", envvar="GOLEMISH_HOME", default=".golemish", show_default=True,
              help="Store directory (RocksDB), or memory:// for a throwaway store.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("--sync", is_flag=True, envvar="GOLEMISH_SYNC",
              help="fsync every commit (survives power loss, slower).")
@click.option("--recovery", type=click.Choice(["auto", "snapshot", "replay"]), default="auto",
              envvar="GOLEMISH_RECOVERY", show_default=True,
              help="Rebuild workers from the newest snapshot plus the oplog tail, or by "
                   "replaying the whole oplog (for comparisons).")
@click.option("--snapshot-policy", "policy", default="adaptive", envvar="GOLEMISH_SNAPSHOT_POLICY",
              show_default=True, metavar="POLICY",
              help="Default snapshot policy: adaptive[:TARGET_S], every:N, interval:S or off.")
@click.option("--oplog-retention", "retention", type=click.Choice(["keep", "archive"]),
              default="keep", envvar="GOLEMISH_OPLOG_RETENTION", show_default=True,
              help="Keep every oplog entry live, or archive those older than the oldest kept "
                   "snapshot as zstd chunks (still readable and replayable).")
@click.pass_context
def main(click_ctx: click.Context, home: str, as_json: bool, debug: bool, sync: bool,
         recovery: str, policy: str, retention: str) -> None:
    """golemish: durable WebAssembly workers that survive crashes."""
    try:
        parsed = SnapshotPolicy.parse(policy)
    except GolemishError as e:
        raise click.BadParameter(str(e), param_hint="--snapshot-policy") from None
    click_ctx.obj = Ctx(home, as_json, debug, sync, recovery, parsed, retention)


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="Component name (default: the file name without .wasm).")
@click.option("--wit", "wit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The component's WIT world: typed functions invoked with WAVE values "
                   "(default: a 'golemish:wit' custom section, if the module has one).")
@click.option("--stackful", is_flag=True,
              help="Transform with asyncify so that long invocations can be snapshotted "
                   "mid-call and resumed without replay (needs golemish[stackful]).")
@_run
def deploy(ctx: Ctx, path: Path, name: str | None, wit_path: Path | None,
           stackful: bool) -> None:
    """Deploy a WASI preview 1 module as a new component version."""
    try:
        wasm = path.read_bytes()
        wit = wit_path.read_text() if wit_path else None
    except (OSError, UnicodeDecodeError) as e:
        raise ArgumentError(f"cannot read {e.filename if isinstance(e, OSError) else wit_path}: "
                            f"{getattr(e, 'strerror', e)}") from None
    name = name or path.name.removesuffix(".wasm")
    with ctx.runtime() as rt:
        res = rt.deploy(wasm, name, wit, str(wit_path) if wit_path else None, stackful)
    m = res.meta
    if ctx.json:
        _emit_json({"created": res.created, **m})
    elif res.created:
        click.echo(f"deployed {m['name']} v{m['version']} ({m['size']:,} bytes, "
                   f"{m['hash'][:12]}{', stackful' if m.get('stackful') else ''})")
    else:
        click.echo(f"{m['name']} v{m['version']} already has these bytes ({m['hash'][:12]}); "
                   "nothing to do")


def _writer(stream: int, data: bytes, as_json: bool) -> None:
    out = sys.stderr if (stream == 2 or as_json) else sys.stdout
    out.buffer.write(data)
    out.flush()


def _typed_json(values: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": t, "value": v} for t, v in values]


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("worker")
@click.argument("function")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--idempotency-key", "-k", help="Run at most once per key (recorded).")
@click.option("--env", "-e", "env", multiple=True, metavar="K=V",
              help="Environment for a worker created by this call.")
@click.option("--memory-limit", type=click.IntRange(min=1), envvar="GOLEMISH_MEMORY_LIMIT_MIB",
              default=256, show_default=True, metavar="MIB",
              help="Memory cap of a worker created by this call (fixed for its life).")
@click.option("--time-limit", type=click.FloatRange(min=0.01), envvar="GOLEMISH_TIME_LIMIT",
              default=60.0, show_default=True, metavar="SECONDS",
              help="Time bound per invocation of a worker created by this call.")
@click.option("--ephemeral", is_flag=True,
              help="Create the worker without an oplog: nothing recorded, nothing recovered.")
@click.option("--crash-at", metavar="POINT:N",
              help="Kill this process with SIGKILL at a crash point (try recovery).")
@_run
def invoke(ctx: Ctx, worker: str, function: str, args: tuple[str, ...],
           idempotency_key: str | None, env: tuple[str, ...], memory_limit: int,
           time_limit: float, ephemeral: bool, crash_at: str | None) -> None:
    """Invoke FUNCTION on WORKER (COMPONENT/NAME), creating the worker on first use.

    Numbers for core exports; WAVE values for a component with a WIT interface,
    either as separate arguments or as one call:
    `golemish invoke cart/a 'add-item({sku: "apple", qty: 2, price-cents: 150})'`.
    """
    ctx.memory_limit_mib, ctx.time_limit = memory_limit, time_limit
    pairs = []
    for item in env:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ArgumentError(f"--env {item!r} should be KEY=VALUE")
        pairs.append((k, v))
    write = lambda s, d: _writer(s, d, ctx.json)  # noqa: E731
    with ctx.runtime(crash_at) as rt:
        recovery = None
        if rt.store.get_worker(worker) is not None:
            # Recover first, so that a finished interrupted invocation is reported
            # before this invocation's own output.
            recovery = rt.resume(worker, output=write)
            if recovery is not None and recovery.finished is not None and not ctx.json:
                click.echo(f"golemish: worker {worker} {recovery.describe()}", err=True)
        res = rt.invoke(worker, function, args, idempotency_key=idempotency_key,
                        output=write, env=pairs, durable=not ephemeral)
        res.recovery = res.recovery or recovery
    if res.deduplicated and not ctx.json:
        click.echo(f"golemish: idempotency key {idempotency_key!r} seen before: the recorded "
                   "result, nothing ran again", err=True)
    if ctx.json:
        _emit_json({"worker": worker, "function": function, "oplog_index": res.index,
                    "results": _typed_json(res.results), "seconds": res.seconds,
                    **({"value": res.json} if res.json is not None else {}),
                    "deduplicated": res.deduplicated,
                    "recovery": vars(res.recovery) if res.recovery else None})
    elif res.results:
        click.echo(" ".join(format_value(v) for v in res.results))


@main.group()
def worker() -> None:
    """Inspect and manage workers."""


@worker.command("list")
@_run
def worker_list(ctx: Ctx) -> None:
    """List workers."""
    with ctx.runtime() as rt:
        infos = [rt.worker_info(w) for w in rt.worker_ids()]
    if ctx.json:
        _emit_json(infos)
        return
    _table([(i["id"], f"{i['component']} v{i['version']}", i["status"], i["oplog_length"],
             i["invocations"], _when(i["created_at"])) for i in infos],
           ["worker", "component", "status", "oplog", "invocations", "created"])


@worker.command("show")
@click.argument("worker_id", metavar="WORKER")
@_run
def worker_show(ctx: Ctx, worker_id: str) -> None:
    """Show one worker."""
    with ctx.runtime() as rt:
        info = rt.worker_info(worker_id)
    if ctx.json:
        _emit_json(info)
        return
    rows = [("worker", info["id"]), ("component", f"{info['component']} v{info['version']}"),
            ("status", info["status"]),
            ("oplog length", f"{info['oplog_length']}"
                             + (f" ({info['oplog_archived']} archived)"
                                if info["oplog_archived"] else "")),
            ("invocations", info["invocations"]), ("created", _when(info["created_at"])),
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
    for k, v in rows:
        click.echo(f"{k + ':':<15} {v}")


@worker.command("oplog")
@click.argument("worker_id", metavar="WORKER")
@click.option("--from", "start", type=click.IntRange(min=1), default=1, help="First index.")
@click.option("--to", "end", type=click.IntRange(min=1), default=None, help="Last index.")
@_run
def worker_oplog(ctx: Ctx, worker_id: str, start: int, end: int | None) -> None:
    """Print a worker's oplog: index, kind and a summary per entry."""
    with ctx.runtime() as rt:
        entries = rt.oplog(worker_id, start, end)
    if ctx.json:
        _emit_json([{"index": i, **e.to_json()} for i, e in entries])
        return
    _table([(i, e.NAME, e.summary()) for i, e in entries], ["index", "kind", "summary"])


@worker.command("snapshot")
@click.argument("worker_id", metavar="WORKER")
@click.option("--full", is_flag=True, help="Capture every page, ignoring earlier snapshots.")
@_run
def worker_snapshot(ctx: Ctx, worker_id: str, full: bool) -> None:
    """Take a snapshot of a worker now."""
    with ctx.runtime() as rt:
        entry = rt.snapshot(worker_id, full=full)
        index = rt.store.oplog(worker_id).last_index
        meta = rt.store.get_worker(worker_id) or {}
    if entry is None:
        raise GolemishError(f"worker {worker_id} cannot be snapshotted: "
                            f"{meta.get('snapshots_disabled', 'it is ephemeral')}")
    if ctx.json:
        _emit_json({"index": index, **entry.to_json()})
    else:
        click.echo(f"snapshot of {worker_id} at oplog index {index}: {entry.summary()}")


@worker.command("config")
@click.argument("worker_id", metavar="WORKER")
@click.option("--snapshot-policy", "policy", metavar="POLICY",
              help="adaptive[:TARGET_S], every:N, interval:SECONDS or off.")
@click.option("--allow-http", multiple=True, metavar="HOST[:PORT]",
              help="Let the worker reach this host over HTTP ('*': any). Loopback always can.")
@click.option("--deny-http", multiple=True, metavar="HOST[:PORT]",
              help="Take a host off the worker's HTTP allow-list.")
@_run
def worker_config(ctx: Ctx, worker_id: str, policy: str | None, allow_http: tuple[str, ...],
                  deny_http: tuple[str, ...]) -> None:
    """Change a worker's settings."""
    parsed = SnapshotPolicy.parse(policy) if policy else None
    with ctx.runtime() as rt:
        rt.configure(worker_id, snapshot_policy=parsed, allow_http=allow_http,
                     deny_http=deny_http)
        info = rt.worker_info(worker_id)
    if ctx.json:
        _emit_json(info)
        return
    click.echo(f"{worker_id}: snapshot policy {info['snapshot_policy']}, HTTP allow-list: "
               f"{', '.join(info.get('http_allow', [])) or 'loopback only'}")


@worker.command("interrupt")
@click.argument("worker_id", metavar="WORKER")
@_run
def worker_interrupt(ctx: Ctx, worker_id: str) -> None:
    """Abandon a worker's pending invocation (suspended or cut off by a crash).

    It is recorded as failed and the worker returns to its state from before it;
    effects it already had (HTTP calls, calls to other workers) are not undone.
    """
    with ctx.runtime() as rt:
        pending = rt.interrupt(worker_id)
    click.echo(f"interrupted {pending} on {worker_id}" if pending
               else f"{worker_id} had no pending invocation")


@worker.command("resume")
@click.argument("worker_id", metavar="WORKER")
@click.option("--wait", is_flag=True, help="If the worker sleeps, wait until it wakes.")
@_run
def worker_resume(ctx: Ctx, worker_id: str, wait: bool) -> None:
    """Recover a worker now: finish an invocation a crash cut off, or one whose timer
    is due or whose promise was completed."""
    with ctx.runtime() as rt:
        while True:
            try:
                report = rt.resume(worker_id, output=lambda s, d: _writer(s, d, ctx.json))
                break
            except WorkerSuspendedError as e:
                if not (wait and e.until_ns):
                    raise Suspended(e.worker_id, promise=e.promise, until_ns=e.until_ns) \
                        from None
                time.sleep(max(0.0, e.until_ns / 1e9 - time.time() - rt.suspend_after_s()))
    if ctx.json:
        _emit_json(vars(report) if report else None)
    elif report is not None:
        click.echo(f"worker {worker_id} {report.describe()}")


@worker.command("delete")
@click.argument("worker_id", metavar="WORKER")
@_run
def worker_delete(ctx: Ctx, worker_id: str) -> None:
    """Delete a worker and its oplog."""
    with ctx.runtime() as rt:
        rt.delete_worker(worker_id)
    if not ctx.json:
        click.echo(f"deleted {worker_id}")


@main.group()
def store() -> None:
    """Inspect the store itself."""


@store.command("check")
@click.option("--deep", is_flag=True, help="Also decompress every page and verify its hash.")
@_run
def store_check(ctx: Ctx, deep: bool) -> None:
    """Verify the store: dense oplogs, checksums, snapshot pages, references.

    Prints each problem with its location and exits 1 if there is any.
    """
    from golemish.oplog.check import check_store
    from golemish.oplog import open_store

    with open_store(ctx.home) as st:
        problems, counts = check_store(st, deep=deep)
    if ctx.json:
        _emit_json({"ok": not problems, "checked": counts,
                    "problems": [{"where": p.where, "what": p.what} for p in problems]})
    else:
        for p in problems:
            click.echo(f"problem: {p}")
        summary = ", ".join(f"{n} {k}" for k, n in counts.items())
        click.echo(f"{'ok' if not problems else f'{len(problems)} problem(s)'}: checked {summary}")
    if problems:
        sys.exit(1)


@main.group()
def promise() -> None:
    """Promises: values a worker awaits from outside (a human's approval, a webhook)."""


@promise.command("list")
@_run
def promise_list(ctx: Ctx) -> None:
    """List promises and their state."""
    with ctx.runtime() as rt:
        promises = rt.list_promises()
    if ctx.json:
        _emit_json(promises)
        return
    _table([(p["id"], p["worker"], p["state"], _when(p["created_at"]),
             _when(p["completed_at"]) if p.get("completed_at") else "-") for p in promises],
           ["promise", "worker", "state", "created", "completed"])


@promise.command("complete")
@click.argument("promise_id", metavar="PROMISE")
@click.argument("data", default="")
@_run
def promise_complete(ctx: Ctx, promise_id: str, data: str) -> None:
    """Complete PROMISE with DATA and resume the worker awaiting it.

    The worker's invocation continues here; its output goes to this command.
    """
    with ctx.runtime() as rt:
        p, outcome = rt.complete_promise(promise_id, data.encode(),
                                         output=lambda s, d: _writer(s, d, ctx.json))
    if isinstance(outcome, Suspended):
        raise outcome
    finished = getattr(outcome, "finished", None)
    if ctx.json:
        _emit_json({"promise": promise_id, "worker": p["worker"], "finished": finished})
    elif finished:
        result = (" ".join(format_value(v) for v in finished["results"]) if finished["ok"]
                  else f"failed: {finished['error']}")
        click.echo(f"golemish: {p['worker']} finished {finished['function']}: {result}",
                   err=True)
        if finished["ok"] and finished["results"]:
            click.echo(" ".join(format_value(v) for v in finished["results"]))


@main.group()
def component() -> None:
    """Inspect deployed components."""


@component.command("list")
@_run
def component_list(ctx: Ctx) -> None:
    """List components and their versions."""
    with ctx.runtime() as rt:
        comps = rt.list_components()
    if ctx.json:
        _emit_json(comps)
        return
    _table([(c["name"], c["version"], f"{c['size']:,}", c["hash"][:12], c["model"],
             _when(c["deployed_at"])) for c in comps],
           ["name", "version", "bytes", "hash", "model", "deployed"])


@component.command("show")
@click.argument("name")
@click.option("--version", "version", type=int, default=None, help="Default: the latest.")
@_run
def component_show(ctx: Ctx, name: str, version: int | None) -> None:
    """Show a component's imports and exports with their signatures."""
    with ctx.runtime() as rt:
        c = rt.component(name, version)
    if ctx.json:
        _emit_json(c)
        return
    click.echo(f"{c['name']} v{c['version']}  {c['size']:,} bytes  {c['model']}  "
               f"sha256 {c['hash']}")
    if c.get("wit"):
        from .typed import Interface
        click.echo("interface (WIT):")
        for line in Interface(c["wit"], c["name"]).signatures():
            click.echo(f"  {line}")
    click.echo("exports:")
    for ename, kind, sig in c["exports"]:
        click.echo(f"  {kind:<7} {ename}{'' if kind != 'func' else ' '}{sig if kind == 'func' else '  ' + sig}")
    click.echo("imports:")
    for mod, iname, kind, sig in c["imports"]:
        click.echo(f"  {kind:<7} {mod}.{iname} {sig}")




if __name__ == "__main__":  # pragma: no cover
    main()
