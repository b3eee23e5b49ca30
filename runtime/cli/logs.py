"""`golemish worker logs W [--follow] [--from INDEX]`: a worker's recorded output.

Without --follow it prints the output recorded so far and exits: through the
server if one serves the store, else read in-process from the store (read-only,
so also beside a server owning it). --follow needs a server: it streams the
output as it is recorded over server-sent events (runtime/server/logs.py); a
store without a server has nobody recording, so there would be nothing to wait
for. Guest stdout goes to stdout and stderr to stderr, byte for byte; --json
prints one JSON object per chunk (a line each with --follow, a list without).
"""

from __future__ import annotations

import base64
import json
import sys

import click

from ..errors import ArgumentError
from .client import find_server
from .common import Ctx, emit_json, run, writer


def _show(ctx: Ctx, ev: dict[str, object], as_line: bool) -> None:
    if as_line:
        click.echo(json.dumps({k: v for k, v in ev.items() if k != "b64"}))
        sys.stdout.flush()
        return
    writer(1 if ev["stream"] == "stdout" else 2, base64.b64decode(str(ev["b64"])), False)


@click.command("logs")
@click.argument("worker_id", metavar="WORKER")
@click.option("--follow", "-f", is_flag=True,
              help="Keep streaming output as it is recorded (needs a running server).")
@click.option("--from", "start", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="INDEX", help="Start at this oplog index (resume after the last "
                                    "index seen).")
@run
def worker_logs(ctx: Ctx, worker_id: str, follow: bool, start: int) -> None:
    """Print a worker's output (stdout and stderr as recorded in its oplog)."""
    from ..output_log import read_logs
    client = find_server(ctx.home, ctx.server)
    if client is None:
        if follow:
            raise ArgumentError(f"--follow streams from a running server, and none serves "
                                f"{ctx.home}: start one with `golemish serve --detach` (without "
                                "--follow the recorded output is printed)")
        from ..names import parse_worker_id
        from ..errors import NotFoundError
        parse_worker_id(worker_id)
        with ctx.runtime(readonly=True) as rt:
            got = read_logs(rt, worker_id, start)
        if got is None:
            raise NotFoundError(f"no worker {worker_id}")
        events = got[0]
    elif not follow:
        events = client.get(client.worker_path(worker_id, "/logs"), **{"from": start})
    else:
        path = client.worker_path(worker_id, "/logs")
        for kind, data in client.stream(path, {"from": str(start), "follow": "1"}):
            if kind == "log":
                _show(ctx, json.loads(data), ctx.json)
            elif kind == "end":
                reason = json.loads(data).get("reason", "")
                click.echo(f"golemish: stream ended: {reason}", err=True)
                return
        return
    if ctx.json:
        emit_json([{k: v for k, v in ev.items() if k != "b64"} for ev in events])
        return
    for ev in events:
        _show(ctx, ev, False)
