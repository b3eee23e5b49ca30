"""`golemish serve`: one process owns the store and serves its API until SIGTERM.

Lifecycle: open the Runtime (the store's owner), bind the socket, write
``server.json`` (pid, URL) into the store directory so that clients on the same
``--home`` can find the server, serve. SIGTERM or SIGINT drains: uvicorn stops
accepting, in-flight requests finish (their invocations run to the end), then
the Runtime and store close and ``server.json`` is removed; the exit status is 0.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ArgumentError
from ..executor import Runtime, RuntimeConfig
from .cutoff import CutOffRecovery
from .record import server_file
from .waker import Waker


@dataclass
class ServerConfig:
    listen: str = "127.0.0.1:7070"
    token: str | None = None
    #: Threads for invocations and store access (different workers in parallel).
    threads: int = 64
    #: Evict a worker idle this long (seconds; None: never), see runtime/eviction.py.
    idle_timeout: float | None = 60.0
    #: Evict least recently used workers while loaded ones hold more (bytes; None: no cap).
    max_memory: int | None = None
    #: SIGTERM waits this long for running invocations; those still running then are
    #: parked (left open in the oplog) and finished by the next server's start.
    drain_timeout: float = 30.0


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ArgumentError(f"--listen {listen!r} should be HOST:PORT, e.g. 127.0.0.1:7070")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(cfg: ServerConfig) -> tuple[str, int]:
    host, port = parse_listen(cfg.listen)
    if not is_loopback(host) and not cfg.token:
        raise ArgumentError(f"--listen {cfg.listen} is reachable from other machines: give "
                            "--token (or GOLEMISH_SERVER_TOKEN) so that every call needs it")
    return host, port


def _server_class(state: Any, started: Callable[[], Any]) -> Any:
    import uvicorn

    class _Server(uvicorn.Server):  # type: ignore[misc]
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            started()

        def handle_exit(self, sig: int, frame: Any) -> None:
            # uvicorn re-raises the signal once it has drained, which would kill us
            # before the store is closed; we drain, close and exit 0 instead.
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True
            # Live-log and console event streams end, so that the drain can finish.
            state.stopping.set()

    return _Server


def serve(rt_config: RuntimeConfig, cfg: ServerConfig) -> None:
    """Serve until SIGTERM/SIGINT, then drain and close. Blocks.

    Start-up order: bind (a bad address fails before anything else), open the
    Runtime, import and build the HTTP stack, write server.json and serve; once the
    event loop serves, a thread finishes cut-off invocations (server/cutoff.py).
    Requests for those workers wait their turn meanwhile.
    """
    import prometheus_client

    from .metrics import Metrics
    host, port = check_listen(cfg)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP,
    # and without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ArgumentError(f"cannot listen on {cfg.listen}: {e.strerror}") from None
    prometheus_client.disable_created_metrics()  # no *_created series beside each counter
    metrics = Metrics()
    rt_config.observer = metrics
    rt = Runtime(rt_config)
    record = server_file(rt_config.home)
    try:
        _serve(rt, cfg, sock, family, metrics, record)
    finally:
        try:
            _close_within(rt, cfg.drain_timeout, record)
        finally:
            sock.close()
            _remove_record(record)


def _serve(rt: Runtime, cfg: ServerConfig, sock: socket.socket, family: int,
           metrics: Any, record: Path | None) -> None:
    """Build the HTTP app over the open Runtime, write server.json and serve."""
    import uvicorn  # the HTTP stack only for the server, not every CLI command

    from .app import build_app, classify_error
    from .evictor import Evictor
    from .manage import ServerState
    from .scheduler import Scheduler
    state = ServerState(idle_timeout=cfg.idle_timeout, max_memory=cfg.max_memory,
                        drain_timeout=cfg.drain_timeout)
    # Cut-off invocations are finished from the moment the event loop serves (alone,
    # this server owns every worker; in a cluster, those this executor holds), not
    # beside the imports above: a thread that releases the GIL at every engine and
    # store call waits up to a switch interval to get it back from an importing one
    # (a 22 ms recovery took ~160 ms there, and delayed the imports as much).
    cut_off = CutOffRecovery(rt)
    _Server = _server_class(state, cut_off.start)
    metrics.attach(rt)
    sock.listen(1024)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if family == socket.AF_INET6 else bound_host
    url = state.url = f"http://{shown}:{bound_port}"
    scheduler = Scheduler(rt, classify=classify_error)
    app = build_app(rt, token=cfg.token, threads=cfg.threads, state=state,
                    metrics=metrics, poke=scheduler.poke)
    if rt.cluster is not None:  # one of several executors: route, lease, fail over
        from .routing import Router
        rt.cluster.config.address = rt.cluster.config.address or url
        app = Router(app, rt)
        if cfg.token:  # the router answers /cluster and forwards: behind the token
            from .wrappers import BearerAuth
            from .console_api import PUBLIC_PATHS
            app = BearerAuth(app, cfg.token, PUBLIC_PATHS)
    server = _Server(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off",
        timeout_keep_alive=30, timeout_graceful_shutdown=cfg.drain_timeout))
    if record is not None:
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "url": url,
                                   "token": bool(cfg.token),
                                   "started_at": state.started_at}))
        os.replace(tmp, record)
    print(f"golemish: serving {rt.store.location} on {url}", flush=True)
    # Alone, the waker hears of every sleeper it must wake; in a cluster a sleeper
    # may fall to this executor when another dies, so it rescans the store often.
    waker = Waker(rt) if rt.cluster is None else Waker(rt, backstop_s=0.5)
    evictor = Evictor(rt, idle_timeout=cfg.idle_timeout, max_memory=cfg.max_memory)
    if rt.cluster is not None:
        rt.cluster.start()
    waker.start()
    scheduler.start()
    evictor.start()
    try:
        server.run(sockets=[sock])
    finally:
        state.stopping.set()
        cut_off.stop()
        evictor.stop()
        scheduler.stop()
        waker.stop()
        if rt.cluster is not None:
            rt.cluster.stop()  # gives the leases up: the others take over at once


def _remove_record(record: Path | None) -> None:
    if record is None:
        return
    try:
        if json.loads(record.read_text()).get("pid") == os.getpid():
            record.unlink()
    except (OSError, ValueError):
        pass


def _close_within(rt: Runtime, timeout: float, record: Path | None) -> None:
    """Close the Runtime (each worker's running invocation finishes first), or, if
    invocations still run after ``timeout``, park them: exit without waiting. Their
    InvokeStart is recorded and no response was sent, so nothing acknowledged is lost;
    the next server finishes them at start (server/cutoff.py)."""
    done = threading.Event()

    def close() -> None:
        try:
            rt.close()
        finally:
            done.set()
    threading.Thread(target=close, name="golemish-close", daemon=True).start()
    if done.wait(timeout):
        return
    print(f"golemish: invocations still running after {timeout:g} s were parked; "
          "the next server start finishes them", flush=True)
    _remove_record(record)
    os._exit(0)
