"""The `golemish` command line. Human tables by default, ``--json`` for scripts.

Errors print one line and exit non-zero; ``--debug`` adds the traceback.
Guest stdout/stderr are streamed to ours as they are recorded; status lines
from golemish itself go to stderr so stdout stays the guest's and the result's.
The worker, promise and store groups live in ``cli_manage``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from golemish.oplog import GolemishError

from ..crash import POINTS as CRASH_POINTS
from ..errors import ArgumentError
from ..limits import DEFAULT_MAX_BYTES
from ..python.cli import python as python_cli
from ..snapshot.policy import SnapshotPolicy
from ..typed.values import typed_json
from .client import find_server, remote_invoke
from .common import (
    Ctx, MainGroup, SafePath, emit_json, protect_stdio, run, table, when,
    writer,
)
from .logs import worker_logs
from .manage import promise, store, worker
from .serve import serve, server
from .testing import test_replay, worker_export
from .versions import component_delete, worker_fork, worker_revert, worker_update

if TYPE_CHECKING:
    from ..components import DeployResult


def format_value(v):  # type: ignore[no-untyped-def]
    """values.format_value, imported when a result is shown (it loads the engine)."""
    from ..typed.values import format_value as fmt
    return fmt(v)


def _versions():  # type: ignore[no-untyped-def]
    """runtime/versions.py (it loads the whole executor) only when a command needs it."""
    from .. import versions
    return versions


@click.group(cls=MainGroup)
@click.version_option(package_name="golemish", message="%(prog)s %(version)s")
@click.option("--home", envvar="GOLEMISH_HOME", default=".golemish", show_default=True,
              help="Store directory (RocksDB), postgres://USER@HOST/DB, or memory:// for a "
                   "throwaway store.")
@click.option("--store", "store_url", envvar="GOLEMISH_STORE", metavar="URL",
              help="The store by URL (postgres://…, rocksdb:///path, memory://); "
                   "overrides --home.")
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
              help="Default snapshot policy: adaptive[:TARGET_S[:N]], every:N, calls:N, "
                   "interval:S or off.")
@click.option("--oplog-retention", "retention", type=click.Choice(["keep", "archive"]),
              default="keep", envvar="GOLEMISH_OPLOG_RETENTION", show_default=True,
              help="Keep every oplog entry live, or archive those older than the oldest kept "
                   "snapshot as zstd chunks (still readable and replayable).")
@click.option("--server", envvar="GOLEMISH_SERVER", metavar="URL",
              help="Go through this `golemish serve` (default: the one serving --home, "
                   "if any; token from GOLEMISH_SERVER_TOKEN).")
@click.pass_context
def main(click_ctx: click.Context, home: str, store_url: str | None, as_json: bool,
         debug: bool, sync: bool, recovery: str, policy: str, retention: str,
         server: str | None) -> None:
    """golemish: durable WebAssembly workers that survive crashes."""
    protect_stdio()
    try:
        parsed = SnapshotPolicy.parse(policy)
    except GolemishError as e:
        raise click.BadParameter(str(e), param_hint="--snapshot-policy") from None
    click_ctx.obj = Ctx(store_url or home, as_json, debug, sync, recovery, parsed, retention)
    click_ctx.obj.server = server


@main.command()
@click.argument("path", type=SafePath(path_type=Path))
@click.option("--name", help="Component name (default: the file name without .wasm).")
@click.option("--entry", metavar="MODULE",
              help="A Python package directory's entry module, e.g. app.main (default: "
                   "DIR.main if DIR/main.py exists, else main).")
@click.option("--wit", "wit_path", type=SafePath(dir_okay=False, path_type=Path),
              help="The component's WIT world: typed functions invoked with WAVE values "
                   "(default: a 'golemish:wit' custom section, if the module has one).")
@click.option("--stackful", is_flag=True,
              help="Transform with asyncify so that long invocations can be snapshotted "
                   "mid-call and resumed without replay (needs golemish[stackful]).")
@click.option("--max-size", "max_size", type=click.FloatRange(min=0, min_open=True),
              envvar="GOLEMISH_MAX_COMPONENT_MIB", default=DEFAULT_MAX_BYTES / (1 << 20),
              show_default=True, metavar="MIB", help="Refuse a larger module.")
@click.option("--allow-http", multiple=True, metavar="HOST[:PORT]",
              help="Let this version's workers reach HOST (any port, or only PORT) over "
                   "HTTP; '*' allows every host. Guests reach nothing by default, "
                   "loopback included.")
@click.option("--file", "files", multiple=True, metavar="SRC:DEST[:ro]",
              help="Put file SRC at guest path DEST in every worker: read-only (:ro) "
                   "anywhere, writable only in /data, the worker's durable directory.")
@click.option("--update-workers", type=click.Choice(["none", "auto"]), default="none",
              show_default=True,
              help="auto: move every idle worker of the component to the new version "
                   "(each replays its history on it; one that diverges stays).")
@run
def deploy(ctx: Ctx, path: Path, name: str | None, entry: str | None, wit_path: Path | None,
           stackful: bool, allow_http: tuple[str, ...], max_size: float,
           files: tuple[str, ...], update_workers: str) -> None:
    """Deploy a WASI preview 1 module, or a Python module (FILE.py, or a DIRECTORY with a
    package and an entry module), as a new component version."""
    # The runtime's modules (wasmtime among them) load only for what needs them: a
    # CLI command that a server answers never does.
    from ..component_files import parse_file_spec
    from ..components import DeployResult, read_module
    ctx.max_component_bytes = int(max_size * (1 << 20))
    python = path.suffix == ".py" or path.is_dir()
    if entry and not path.is_dir():
        raise ArgumentError("--entry is for a Python package directory")
    try:
        wasm = b"" if python else read_module(path, ctx.max_component_bytes)
        wit = wit_path.read_text() if wit_path else None
        specs = [parse_file_spec(f) for f in files]
        carried = [(dest, src.read_bytes(), ro) for src, dest, ro in specs]
    except (OSError, UnicodeDecodeError) as e:
        raise ArgumentError(f"cannot read {e.filename if isinstance(e, OSError) else wit_path}: "
                            f"{getattr(e, 'strerror', e)}") from None
    name = name or path.resolve().name.removesuffix(".wasm")
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        if python or files or update_workers != "none":
            raise ArgumentError(f"deploying a Python module, --file and --update-workers work "
                                f"in-process only, and a server owns this store ({client.url})")
        created, meta = client.deploy(wasm, name, wit, stackful, list(allow_http))
        res, updated = DeployResult(meta, created), []
    else:
        res, updated = _local_deploy(ctx, path, name, entry, wasm, wit, wit_path, stackful,
                                     allow_http, update_workers, carried)
    m = res.meta
    for wid, outcome in updated if not ctx.json else ():
        click.echo(f"{wid}: {outcome}", err=True)
    if ctx.json:
        emit_json({"created": res.created, **m,
                   **({"workers": dict(updated)} if update_workers == "auto" else {})})
    elif res.created:
        click.echo(f"deployed {m['name']} v{m['version']} ({m['size']:,} bytes, "
                   f"{m['hash'][:12]}{', stackful' if m.get('stackful') else ''})")
    else:
        click.echo(f"{m['name']} v{m['version']} already has these bytes ({m['hash'][:12]}); "
                   + ("updated its HTTP allow-list" if allow_http else "nothing to do"))
    if allow_http and not ctx.json:
        click.echo(f"{m['name']} v{m['version']}: HTTP allow-list: {', '.join(m['http_allow'])}")


def _local_deploy(ctx: Ctx, path: Path, name: str, entry: str | None, wasm: bytes,
                  wit: str | None, wit_path: Path | None, stackful: bool,
                  allow_http: tuple[str, ...], update_workers: str,
                  files: list[tuple[str, bytes, bool]]
                  ) -> tuple[DeployResult, list[tuple[str, str]]]:
    from ..components import DeployResult
    with ctx.runtime(create=True) as rt:
        if path.suffix == ".py" or path.is_dir():
            if wit_path or stackful or files:
                raise ArgumentError("--wit, --stackful and --file are for wasm modules; a Python "
                                    "module's WIT comes from its type hints")
            res = rt.deploy_python(path, name.removesuffix(".py"),
                                   progress=lambda msg: click.echo(msg, err=True), entry=entry)
            if allow_http:
                res = DeployResult(rt.configure_component(
                    res.meta["name"], res.meta["version"], allow_http=allow_http), res.created)
        else:
            res = rt.deploy(wasm, name, wit, str(wit_path) if wit_path else None, stackful,
                            http_allow=allow_http, files=files)
        updated = (_versions().update_idle(rt, name, res.meta["version"])
                   if update_workers == "auto" else [])
    return res, updated


@main.command(context_settings={"ignore_unknown_options": True},
              epilog="\b\nCrash points (--crash-at POINT:N):\n" + "\n".join(
                  f"  {p:<21} {what}" for p, what in CRASH_POINTS.items()))
@click.argument("worker")
@click.argument("function")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--idempotency-key", "-k", help="Run at most once per key (recorded).")
@click.option("--env", "-e", "env", multiple=True, metavar="K=V",
              help="Environment for a worker created by this call.")
@click.option("--memory-limit", type=click.IntRange(min=1), envvar="GOLEMISH_MEMORY_LIMIT_MIB",
              default=256, show_default=True, metavar="MIB",
              help="Memory cap of the worker; given for an existing worker, it applies "
                   "from this invocation on (recorded in the oplog).")
@click.option("--time-limit", type=click.FloatRange(min=0.01), envvar="GOLEMISH_TIME_LIMIT",
              default=60.0, show_default=True, metavar="SECONDS",
              help="Time bound per invocation; given for an existing worker, it applies "
                   "from this invocation on (recorded in the oplog).")
@click.option("--ephemeral", is_flag=True,
              help="Create the worker without an oplog: nothing recorded, nothing recovered.")
@click.option("--crash-at", metavar="POINT:N",
              help="Kill this process with SIGKILL the N-th time it reaches POINT, to try "
                   "recovery (points below; also GOLEMISH_CRASH_AT).")
@click.option("--at", "at", metavar="TIME",
              help="Do not wait: store the invocation to run at TIME (ISO 8601, local time "
                   "without an offset, or unix seconds); `golemish serve` runs it.")
@click.option("--in", "delay", metavar="DELAY",
              help="Like --at, DELAY from now: 30s, 10m, 1h30m, 500ms.")
@run
def invoke(ctx: Ctx, worker: str, function: str, args: tuple[str, ...],
           idempotency_key: str | None, env: tuple[str, ...], memory_limit: int,
           time_limit: float, ephemeral: bool, crash_at: str | None, at: str | None,
           delay: str | None) -> None:
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
    write = lambda s, d: writer(s, d, ctx.json)  # noqa: E731
    limits = _limits_given(memory_limit, time_limit)
    client = find_server(ctx.home, ctx.server)
    if at is not None or delay is not None:
        from .schedule import due_seconds, schedule
        refused = [*(f"--{k.replace('_', '-')}" for k in limits),
                   *(["--ephemeral"] if ephemeral else []), *(["--crash-at"] if crash_at else [])]
        schedule(ctx, client, worker, function, list(args), idempotency_key, pairs,
                 due_seconds(at, delay, time.time()), refused)
        return
    if client is not None:
        res = remote_invoke(client, worker, function, list(args), idempotency_key, pairs,
                            ephemeral, crash_at, limits, write)
    else:
        res = _local_invoke(ctx, worker, function, args, idempotency_key, pairs, ephemeral,
                            crash_at, limits, write)
    _show_invocation(ctx, worker, function, idempotency_key, res)


def _local_invoke(ctx: Ctx, worker: str, function: str, args: tuple[str, ...],
                  idempotency_key: str | None, pairs: list[tuple[str, str]], ephemeral: bool,
                  crash_at: str | None, limits: dict[str, float], write: Any) -> Any:
    with ctx.runtime(crash_at) as rt:
        recovery = None
        if rt.store.get_worker(worker) is not None:
            # Recover first, so that a finished interrupted invocation is reported
            # before this invocation's own output.
            recovery = rt.resume(worker, output=write)
            if recovery is not None and recovery.finished is not None and not ctx.json:
                click.echo(f"golemish: worker {worker} {recovery.describe()}", err=True)
        res = rt.invoke(worker, function, args, idempotency_key=idempotency_key,
                        output=write, env=pairs, durable=not ephemeral, **limits)
        res.recovery = res.recovery or recovery
    return res


def _show_invocation(ctx: Ctx, worker: str, function: str, idempotency_key: str | None,
                     res: Any) -> None:
    if res.deduplicated and not ctx.json:
        click.echo(f"golemish: idempotency key {idempotency_key!r} seen before: the recorded "
                   "result, nothing ran again", err=True)
    if ctx.json:
        emit_json({"worker": worker, "function": function, "oplog_index": res.index,
                    "results": typed_json(res.results), "seconds": res.seconds,
                    **({"value": res.json} if res.json is not None else {}),
                    "deduplicated": res.deduplicated,
                    "recovery": vars(res.recovery) if res.recovery else None})
    elif res.results:
        click.echo(" ".join(format_value(v) for v in res.results))


def _limits_given(memory_limit_mib: int, time_limit: float) -> dict[str, float]:
    """The limit options given on this command line (an existing worker takes them)."""
    ctx = click.get_current_context()
    given = lambda name: ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE  # noqa: E731
    out: dict[str, float] = {}
    if given("memory_limit"):
        out["memory_limit"] = memory_limit_mib << 20
    if given("time_limit"):
        out["time_limit"] = time_limit
    return out


@main.group()
def component() -> None:
    """Inspect deployed components."""


@component.command("list")
@run
def component_list(ctx: Ctx) -> None:
    """List components and their versions."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        from . import remote as cli_remote
        comps, counts = client.get("/components"), cli_remote.component_usage(client)
    else:
        with ctx.runtime(readonly=True) as rt:
            comps = rt.list_components()
            counts = _versions().component_usage(rt)
    if ctx.json:
        emit_json([{**c, "workers": counts.get((c["name"], c["version"]), 0)} for c in comps])
        return
    table([(c["name"], c["version"], counts.get((c["name"], c["version"]), 0),
            f"{c['size']:,}", c["hash"][:12], c["model"], when(c["deployed_at"]))
           for c in comps],
          ["name", "version", "workers", "bytes", "hash", "model", "deployed"])


@component.command("show")
@click.argument("name")
@click.option("--version", "version", type=int, default=None, help="Default: the latest.")
@run
def component_show(ctx: Ctx, name: str, version: int | None) -> None:
    """Show a component's imports and exports with their signatures."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        from . import remote as cli_remote
        c = cli_remote.component(client, name, version)
    else:
        with ctx.runtime(readonly=True) as rt:
            c = rt.component(name, version)
    if ctx.json:
        emit_json(c)
        return
    click.echo(f"{c['name']} v{c['version']}  {c['size']:,} bytes  {c['model']}  "
               f"sha256 {c['hash']}")
    if c.get("kind") == "python":
        what = (f"python package, entry {c['entry']} ({c['filename']}, {len(c['files'])} files)"
                if c.get("layout") == "package" else f"python module {c['filename']}")
        click.echo(f"{what}; WIT derived from its type hints:")
        click.echo("".join(f"  {line}\n" for line in c["wit"].splitlines()), nl=False)
        return
    if c.get("wit"):
        from ..typed.invoke import Interface
        click.echo("interface (WIT):")
        for line in Interface(c["wit"], c["name"]).signatures():
            click.echo(f"  {line}")
    click.echo("exports:")
    for ename, kind, sig in c["exports"]:
        click.echo(f"  {kind:<7} {ename}{'' if kind != 'func' else ' '}{sig if kind == 'func' else '  ' + sig}")
    click.echo("imports:")
    for mod, iname, kind, sig in c["imports"]:
        click.echo(f"  {kind:<7} {mod}.{iname} {sig}")


@component.command("config")
@click.argument("name")
@click.option("--version", "version", type=int, default=None, help="Default: the latest.")
@click.option("--allow-http", multiple=True, metavar="HOST[:PORT]",
              help="Let the version's workers reach this host over HTTP ('*': any).")
@click.option("--deny-http", multiple=True, metavar="HOST[:PORT]",
              help="Take an entry off the version's HTTP allow-list.")
@run
def component_config(ctx: Ctx, name: str, version: int | None, allow_http: tuple[str, ...],
                     deny_http: tuple[str, ...]) -> None:
    """Change a component version's settings: its HTTP allow-list."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        from urllib.parse import quote
        meta = client.post(f"/components/{quote(name, safe='')}/config", {
            "version": version, "allow_http": list(allow_http),
            "deny_http": list(deny_http)})[1]
    else:
        with ctx.runtime() as rt:
            meta = rt.configure_component(name, version, allow_http=allow_http,
                                          deny_http=deny_http)
    if ctx.json:
        emit_json(meta)
        return
    click.echo(f"{name} v{meta['version']}: HTTP allow-list: "
               f"{', '.join(meta['http_allow']) or 'none (guests reach nothing by default)'}")


component.add_command(component_delete)
for _cmd in (worker_revert, worker_fork, worker_update):
    worker.add_command(_cmd)


main.add_command(worker)
worker.add_command(worker_logs)
main.add_command(promise)
main.add_command(store)
main.add_command(test_replay)
main.add_command(python_cli)
main.add_command(serve)
main.add_command(server)
worker.add_command(worker_export)


if __name__ == "__main__":  # pragma: no cover
    main()
