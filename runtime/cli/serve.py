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
@click.option("--cluster", "cluster", is_flag=True, envvar="GOLEMISH_CLUSTER",
              help="Be one of several executors on this PostgreSQL store: workers are "
                   "leased, requests routed to their owner, a dead executor's workers "
                   "taken over (README: Running on several machines).")
@click.option("--executor-id", envvar="GOLEMISH_EXECUTOR_ID", metavar="ID",
              help="This executor's name in the cluster (default: host-pid-random).")
@click.option("--advertise", metavar="URL",
              help="The URL other executors reach this one at (default: the --listen URL).")
@click.option("--lease", "lease_s", type=click.FloatRange(min=0.05), envvar="GOLEMISH_LEASE_S",
              default=1.0, show_default=True,
              help="Seconds a worker's lease lasts without renewal (failover takes about this).")
@click.option("--lease-renew", "renew_s", type=click.FloatRange(min=0.01),
              envvar="GOLEMISH_LEASE_RENEW_S", default=0.2, show_default=True,
              help="Seconds between lease renewals; well under --lease.")
@run
def serve(ctx: Ctx, listen: str, token: str | None, init: bool, threads: int,
          cluster: bool, executor_id: str | None, advertise: str | None, lease_s: float,
          renew_s: float) -> None:
    """Own the store and serve its HTTP API (OpenAPI at /openapi.json) until SIGTERM,
    which drains: running invocations finish, then the store is closed."""
    from ..server import ServerConfig
    from ..server import serve as serve_forever

    cluster_config = None
    if cluster:
        from ..cluster import ClusterConfig
        cluster_config = ClusterConfig(lease_s=lease_s, renew_s=renew_s,
                                       address=advertise or "")
        if executor_id:
            cluster_config.executor_id = executor_id
    config = RuntimeConfig(home=ctx.home, sync=ctx.sync, crash=CrashPoints.from_env(),
                           recovery=ctx.recovery, snapshot_policy=ctx.policy,
                           oplog_retention=ctx.retention, create=init,
                           cluster=cluster_config)
    serve_forever(config, ServerConfig(listen=listen, token=token or None, threads=threads))
