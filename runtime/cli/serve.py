"""`golemish serve` (in the foreground or --detach) and `golemish server status|stop`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import click

from ..crash import CrashPoints
from ..errors import ArgumentError
from .common import Ctx, emit_json, run

#: The detached server's output, in the store directory.
LOG_FILE = "server.log"


def _size(text: str | None) -> int | None:
    if text is None:
        return None
    from ..eviction import parse_size
    try:
        return parse_size(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--max-memory") from None


@click.command()
@click.option("--listen", default="127.0.0.1:7070", show_default=True, metavar="HOST:PORT",
              help="Address to serve on (port 0: any free port; see server.json in the store). "
                   "Anything but loopback needs --token.")
@click.option("--token", envvar="GOLEMISH_SERVER_TOKEN", metavar="TOKEN",
              help="Require 'Authorization: Bearer TOKEN' on every call.")
@click.option("--init", "init", is_flag=True, help="Create the store if there is none.")
@click.option("--threads", type=click.IntRange(min=1), default=64, show_default=True,
              help="Threads running invocations (different workers in parallel).")
@click.option("--idle-timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
              metavar="SECONDS", help="Snapshot and drop from memory a worker idle this long "
                                      "(0: never); its next invocation restores it.")
@click.option("--max-memory", metavar="SIZE",
              help="Also evict the least recently used workers while loaded ones hold more "
                   "linear memory than this (512M, 2G).")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=30.0,
              show_default=True, metavar="SECONDS",
              help="On SIGTERM, wait this long for running invocations; those still "
                   "running are parked and finished by the next start.")
@click.option("--detach", is_flag=True,
              help=f"Run in the background (output in {LOG_FILE} in the store); print the "
                   "URL and pid once it serves.")
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
          idle_timeout: float, max_memory: str | None, drain_timeout: float,
          detach: bool, cluster: bool, executor_id: str | None, advertise: str | None,
          lease_s: float, renew_s: float) -> None:
    """Own the store and serve its HTTP API (OpenAPI at /openapi.json) until SIGTERM,
    which drains: running invocations finish, then the store is closed."""
    from ..server.process import ServerConfig, check_listen
    from ..server.process import serve as serve_forever

    cfg = ServerConfig(listen=listen, token=token or None, threads=threads,
                       idle_timeout=idle_timeout or None, max_memory=_size(max_memory),
                       drain_timeout=drain_timeout)
    check_listen(cfg)  # refuse a public address without a token before anything starts
    if detach:
        _detach(ctx)
        return
    from ..executor import RuntimeConfig
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
    serve_forever(config, cfg)


def _detach(ctx: Ctx) -> None:
    """Start this same command without --detach in a new session, wait until it serves."""
    from golemish.oplog.store import store_path

    from ..server.record import read_server_file, wait_until_serving
    path = store_path(ctx.home)
    if path is None:
        raise ArgumentError(f"--detach needs a store on disk, not {ctx.home}")
    if read_server_file(ctx.home) is not None:
        raise ArgumentError(f"a server already serves {ctx.home} "
                            "(see `golemish server status`)")
    root = click.get_current_context().find_root()
    module = root.command.callback.__module__  # type: ignore[union-attr]
    argv = [a for a in sys.argv[1:] if a != "--detach"]
    os.makedirs(path, exist_ok=True)
    log_path = os.path.join(path, LOG_FILE)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, *argv], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True,
                                env={**os.environ, "GOLEMISH_HOME": ctx.home})
    url = wait_until_serving(ctx.home, proc, timeout=60)
    if url is None:
        if proc.poll() is None:
            proc.kill()
        tail = _tail(log_path)
        raise ArgumentError(f"the server did not start{': ' + tail if tail else ''} "
                            f"(see {log_path})")
    if ctx.json:
        emit_json({"url": url, "pid": proc.pid, "log": log_path})
    else:
        click.echo(f"golemish: serving {ctx.home} on {url} (pid {proc.pid}, log {log_path})")


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


@click.group()
def server() -> None:
    """The server serving --home (or --server URL): status and stop."""


@server.command("status")
@run
def server_status(ctx: Ctx) -> None:
    """Address, pid, uptime and resident workers of the running server."""
    from .client import find_server
    client = find_server(ctx.home, ctx.server)
    if client is None:
        raise ArgumentError(f"no server serves {ctx.home} (start one with "
                            "`golemish serve --detach`)")
    st = client.request("GET", "/server")[1]
    if ctx.json:
        emit_json(st)
        return
    click.echo(f"serving {st['home']} on {st['url']}, pid {st['pid']}, up "
               f"{_duration(st['uptime_s'])}, {st['workers_resident']} worker(s) resident, "
               f"{st['evicted_total']} evicted")


def _duration(s: float) -> str:
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


@server.command("stop")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              metavar="SECONDS", help="How long to wait for the drain.")
@run
def server_stop(ctx: Ctx, timeout: float) -> None:
    """Stop the server of --home with SIGTERM and wait until it has drained and exited."""
    from .client import find_server
    from ..server.record import read_server_file
    info = read_server_file(ctx.home)
    if info is None:
        find_server(ctx.home, None)  # says so if a stale server.json was left behind
        raise ArgumentError(f"no server serves {ctx.home}")
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            break
        time.sleep(0.05)
    else:
        raise ArgumentError(f"server pid {pid} has not stopped after {timeout:g} s")
    if ctx.json:
        emit_json({"stopped": pid, "url": info["url"]})
    else:
        click.echo(f"stopped the server on {info['url']} (pid {pid})")


def _running(pid: int) -> bool:
    """False for a zombie (exited, not yet reaped by its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
