"""`golemish serve`: run the server on this --home (runtime/server)."""

from __future__ import annotations

import click

from ..crash import CrashPoints
from ..executor import RuntimeConfig
from .common import Ctx, run


@click.command()
@click.option("--listen", default="127.0.0.1:7070", show_default=True, metavar="HOST:PORT",
              help="Address to serve on (port 0: any free port; see server.json in the store). "
                   "Anything but loopback needs --token.")
@click.option("--token", envvar="GOLEMISH_SERVER_TOKEN", metavar="TOKEN",
              help="Require 'Authorization: Bearer TOKEN' on every call.")
@click.option("--init", "init", is_flag=True, help="Create the store if there is none.")
@click.option("--threads", type=click.IntRange(min=1), default=64, show_default=True,
              help="Threads running invocations (different workers in parallel).")
@run
def serve(ctx: Ctx, listen: str, token: str | None, init: bool, threads: int) -> None:
    """Own the store and serve its HTTP API (OpenAPI at /openapi.json) until SIGTERM,
    which drains: running invocations finish, then the store is closed."""
    from ..server import ServerConfig
    from ..server import serve as serve_forever

    config = RuntimeConfig(home=ctx.home, sync=ctx.sync, crash=CrashPoints.from_env(),
                           recovery=ctx.recovery, snapshot_policy=ctx.policy,
                           oplog_retention=ctx.retention, create=init)
    serve_forever(config, ServerConfig(listen=listen, token=token or None, threads=threads))
