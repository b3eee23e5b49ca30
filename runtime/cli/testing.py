"""Commands for testing workers: `worker export` and `test-replay`.

``golemish worker export W > w.oplog`` writes the worker's oplog as one
checksummed file (format in golemish.oplog.export). ``golemish test-replay W
--component new.wasm`` replays the recorded history (from the store, or
``--oplog FILE``) against a component file and reports the first divergence:
exit 0 when the build is compatible with the history, 1 when it diverges, 2 for
any other error. The replay is pure: nothing is sent, written or printed by the
guest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from golemish.oplog import GolemishError, export as oplog_export

from ..errors import ArgumentError
from .common import Ctx, SafePath, emit_json, run


@click.command("export")
@click.argument("worker_id", metavar="WORKER")
@click.option("--output", "-o", type=SafePath(dir_okay=False, path_type=Path),
              help="Write to this file instead of stdout.")
@run
def worker_export(ctx: Ctx, worker_id: str, output: Path | None) -> None:
    """Write WORKER's oplog as a self-contained, checksummed file (for test-replay)."""
    from ..testing.replay import export_header
    with ctx.runtime() as rt:
        header = export_header(rt, worker_id)
        raw = [r for _, r in rt.store.oplog(worker_id).raw()]
        header["entries"] = len(raw)
        data = oplog_export.dump(header, raw)
    if output is not None:
        output.write_bytes(data)
        click.echo(f"exported {len(raw)} entries of {worker_id} to {output}", err=True)
    elif sys.stdout.isatty():
        raise ArgumentError("the oplog file is binary: redirect it (`> w.oplog`) or use -o FILE")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


@click.command("test-replay")
@click.argument("worker_id", metavar="WORKER")
@click.option("--component", "component_path", required=True,
              type=SafePath(dir_okay=False, path_type=Path),
              help="The component file to check against the recorded history.")
@click.option("--store", "store_home", metavar="HOME",
              help="Read the oplog from this store (default: --home).")
@click.option("--oplog", "oplog_path", type=SafePath(dir_okay=False, path_type=Path),
              help="Read the oplog from a file made by `golemish worker export`.")
@click.option("--wit", "wit_path", type=SafePath(dir_okay=False, path_type=Path),
              help="The new build's WIT world (default: the recorded component's).")
@click.pass_obj
def test_replay(ctx: Ctx, worker_id: str, component_path: Path, store_home: str | None,
                oplog_path: Path | None, wit_path: Path | None) -> None:
    """Replay WORKER's recorded oplog against a component file; report the first divergence.

    A determinism check to run in CI before an update. Exit 0: compatible;
    1: the new build diverges; 2: an error (unreadable file, unknown worker).
    """
    from ..testing.replay import replay_file
    try:
        if store_home and oplog_path:
            raise ArgumentError("give --store or --oplog, not both")
        oplog = _load(ctx, worker_id, store_home, oplog_path)
        try:
            wasm = component_path.read_bytes()
            wit = wit_path.read_text() if wit_path else None
        except OSError as e:
            raise ArgumentError(f"cannot read {e.filename}: {e.strerror}") from None
        outcome = replay_file(oplog, wasm, wit=wit)
    except GolemishError as e:
        click.echo(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", err=True)
        sys.exit(2)
    d = outcome.divergence
    if ctx.json:
        emit_json({"worker": worker_id, "component": str(component_path),
                   "compatible": d is None, "entries": outcome.entries,
                   "invocations": outcome.invocations, "host_calls": outcome.host_calls,
                   "open_end": outcome.open_end,
                   "divergence": None if d is None else
                   {"index": d.index, "recorded": d.recorded, "asked": d.asked}})
    elif d is None:
        tail = "; the history ends inside an invocation (replayed up to there)" \
            if outcome.open_end else ""
        click.echo(f"compatible: {component_path.name} replays the {outcome.entries} entries "
                   f"({outcome.invocations} invocations, {outcome.host_calls} host calls) "
                   f"of {worker_id}{tail}")
    else:
        click.echo(f"divergence at oplog index {d.index}: recorded {d.recorded}, "
                   f"but {component_path.name} asked for {d.asked}")
    sys.exit(0 if d is None else 1)


def _load(ctx: Ctx, worker_id: str, store_home: str | None,
          oplog_path: Path | None) -> oplog_export.OplogFile:
    if oplog_path is not None:
        try:
            data = oplog_path.read_bytes()
        except OSError as e:
            raise ArgumentError(f"cannot read {e.filename}: {e.strerror}") from None
        f = oplog_export.load(data, str(oplog_path))
        if f.worker_id != worker_id:
            raise ArgumentError(f"{oplog_path} holds the oplog of {f.worker_id}, "
                                f"not {worker_id}")
        return f
    from ..executor import Runtime, RuntimeConfig
    from ..testing.replay import export_header
    home = store_home or ctx.home
    if "://" not in home and not Path(home).is_dir():  # reading must not create a store
        raise ArgumentError(f"no store at {home}")
    with Runtime(RuntimeConfig(home=home)) as rt:
        header = export_header(rt, worker_id)
        raw = [r for _, r in rt.store.oplog(worker_id).raw()]
    return oplog_export.OplogFile(header, tuple(raw))
