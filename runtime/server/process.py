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
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golemish.oplog.store import store_path

from ..errors import ArgumentError
from ..executor import Runtime, RuntimeConfig
from .waker import Waker

SERVER_FILE = "server.json"


@dataclass
class ServerConfig:
    listen: str = "127.0.0.1:7070"
    token: str | None = None
    #: Threads for invocations and store access (different workers in parallel).
    threads: int = 64


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


def server_file(home: str) -> Path | None:
    path = store_path(home)
    return Path(path) / SERVER_FILE if path is not None else None


def read_server_file(home: str) -> dict[str, Any] | None:
    """The running server's record for ``home``, if its process is alive."""
    f = server_file(home)
    if f is None:
        return None
    try:
        info = json.loads(f.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


def wait_until_serving(home: str, proc: subprocess.Popen, timeout: float = 30.0) -> str | None:
    """The URL of the server ``proc`` started for ``home``, once it has written its record;
    None if it exits or the timeout passes first (for tests and benchmarks)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        info = read_server_file(home)
        if info is not None and info.get("pid") == proc.pid:
            return str(info["url"])
        time.sleep(0.02)
    return None


def _server_class() -> Any:
    import uvicorn

    class _Server(uvicorn.Server):  # type: ignore[misc]
        #: Set when the drain begins (open event streams end; see build_app).
        stopping: threading.Event

        def handle_exit(self, sig: int, frame: Any) -> None:
            self.stopping.set()
            # uvicorn re-raises the signal once it has drained, which would kill us
            # before the store is closed; we drain, close and exit 0 instead.
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    return _Server


def serve(rt_config: RuntimeConfig, cfg: ServerConfig) -> None:
    """Serve until SIGTERM/SIGINT, then drain and close. Blocks."""
    import uvicorn  # the HTTP stack only for the server, not every CLI command

    from .app import build_app
    _Server = _server_class()

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
    rt = Runtime(rt_config)
    record = server_file(rt_config.home)
    try:
        sock.listen(1024)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if family == socket.AF_INET6 else bound_host
        url = f"http://{shown}:{bound_port}"
        stopping = threading.Event()
        app = build_app(rt, token=cfg.token, threads=cfg.threads, stopping=stopping)
        if rt.cluster is not None:  # one of several executors: route, lease, fail over
            from .routing import Router
            rt.cluster.config.address = rt.cluster.config.address or url
            app = Router(app, rt)
            if cfg.token:  # the router answers /cluster and forwards: behind the token
                from .app import BearerAuth
                from .console_api import PUBLIC_PATHS
                app = BearerAuth(app, cfg.token, PUBLIC_PATHS)
        server = _Server(uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off",
            timeout_keep_alive=30))
        server.stopping = stopping
        if record is not None:
            tmp = record.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "url": url,
                                       "token": bool(cfg.token)}))
            os.replace(tmp, record)
        print(f"golemish: serving {rt.store.location} on {url}", flush=True)
        waker = Waker(rt)
        if rt.cluster is not None:
            rt.cluster.start()
        waker.start()
        try:
            server.run(sockets=[sock])
        finally:
            waker.stop()
            if rt.cluster is not None:
                rt.cluster.stop()  # gives the leases up: the others take over at once
    finally:
        try:
            rt.close()  # waits for any invocation still running
        finally:
            sock.close()
            if record is not None:
                try:
                    if json.loads(record.read_text()).get("pid") == os.getpid():
                        record.unlink()
                except (OSError, ValueError):
                    pass
