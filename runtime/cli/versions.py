"""`golemish worker revert | fork | update` and `component delete`: versions and time travel.

The commands are thin: the work is in :mod:`versions`. They are registered on the
worker and component groups by ``cli``.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import ArgumentError
from .client import find_server
from .common import Ctx, emit_json, run
from .remote import versions_op


def _versions():  # type: ignore[no-untyped-def]
    """runtime/versions.py (it loads the whole executor) only when a command needs it."""
    from .. import versions
    return versions


@click.command("revert")
@click.argument("worker_id", metavar="WORKER")
@click.option("--to-index", type=click.IntRange(min=1), default=None,
              help="Give the worker its state at this oplog index (between invocations).")
@click.option("--last-invocations", type=click.IntRange(min=1), default=None,
              help="Undo this many of the latest invocations still in effect.")
@run
def worker_revert(ctx: Ctx, worker_id: str, to_index: int | None,
                  last_invocations: int | None) -> None:
    """Revert a worker to an earlier state. Later entries stay in the oplog, skipped."""
    if (to_index is None) == (last_invocations is None):
        raise ArgumentError("give exactly one of --to-index and --last-invocations")
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        r = versions_op(client, worker_id, "revert", {"to_index": to_index,
                                                       "last_invocations": last_invocations})
    else:
        with ctx.runtime() as rt:
            r = _versions().revert(rt, worker_id, to_index=to_index,
                                last_invocations=last_invocations)
    if ctx.json:
        emit_json({"worker": r.worker, "to": r.target, "index": r.index, "undone": r.undone,
                   "effects_not_undone": r.effects, "version": r.version,
                   "seconds": r.seconds})
        return
    if r.effects:
        click.echo(f"warning: {len(r.effects)} outside effect(s) in the reverted span are "
                   f"not undone: {', '.join(r.effects[:5])}", err=True)
    click.echo(f"reverted {r.worker} to oplog index {r.target} (v{r.version}): "
               f"{r.undone} invocation(s) undone, recorded at index {r.index}")


@click.command("fork")
@click.argument("worker_id", metavar="WORKER")
@click.argument("new_id", metavar="NEW")
@click.option("--at", "at", type=click.IntRange(min=1), default=None,
              help="Oplog index to fork at (default: the end).")
@run
def worker_fork(ctx: Ctx, worker_id: str, new_id: str, at: int | None) -> None:
    """Create worker NEW with WORKER's history up to an index; both go on independently."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        f = versions_op(client, worker_id, "fork", {"new": new_id, "at": at})
    else:
        with ctx.runtime() as rt:
            f = _versions().fork(rt, worker_id, new_id, at)
    if ctx.json:
        emit_json(vars(f))
        return
    base = f"from the snapshot at {f.snapshot}" if f.snapshot else "replaying from create"
    click.echo(f"forked {f.source} at oplog index {f.at} as {f.worker} (v{f.version}, "
               f"{base}) in {f.seconds * 1e3:.1f} ms")


@click.command("update")
@click.argument("worker_id", metavar="WORKER")
@click.option("--to", "version", type=click.IntRange(min=0), required=True,
              help="The component version to move to.")
@click.option("--mode", type=click.Choice(["auto", "manual"]), default="auto",
              show_default=True,
              help="auto: replay the history on the new version (fails on divergence); "
                   "manual: golemish_save on the old version, golemish_load on the new.")
@run
def worker_update(ctx: Ctx, worker_id: str, version: int, mode: str) -> None:
    """Move a worker to another version of its component."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        r = versions_op(client, worker_id, "update", {"version": version, "mode": mode})
    else:
        with ctx.runtime() as rt:
            r = _versions().update(rt, worker_id, version, mode)
    if ctx.json:
        emit_json(vars(r))
        return
    click.echo(f"updated {r.worker} v{r.from_version} -> v{r.version} ({r.mode}, "
               f"{r.replayed_invocations} invocations replayed) in {r.seconds * 1e3:.1f} ms")


@click.command("delete")
@click.argument("name")
@click.option("--version", "version", type=click.IntRange(min=0), required=True)
@run
def component_delete(ctx: Ctx, name: str, version: int) -> None:
    """Delete one component version (refused while workers use it)."""
    client = find_server(ctx.home, ctx.server)
    if client is not None:
        from urllib.parse import quote
        client.request("DELETE", f"/components/{quote(name, safe='')}/versions/{version}")
    else:
        with ctx.runtime() as rt:
            _versions().delete_component(rt, name, version)
    if not ctx.json:
        click.echo(f"deleted {name} v{version}")


def history_rows(rt: object, worker_id: str,
                 history: list[dict[str, Any]] | None = None) -> list[str]:
    """`worker show`'s version history lines (from ``history`` when given: a server's)."""
    out = []
    if history is None:
        history = _versions().version_history(rt, worker_id)  # type: ignore[arg-type]
    for h in history:
        gone = "" if h["in_effect"] else " (reverted)"
        if h["kind"] == "create":
            out.append(f"v{h['version']} created (index {h['index']})")
        elif h["kind"] == "update":
            out.append(f"v{h['from_version']} -> v{h['version']} {h['mode']} update "
                       f"(index {h['index']}){gone}")
        elif h["kind"] == "update-failed":
            out.append(f"update to v{h['version']} ({h['mode']}) failed at index "
                       f"{h['index']}: {h['message']}")
        else:
            out.append(f"reverted to index {h['to']} at index {h['index']}{gone}")
    return out

