"""Executors of one PostgreSQL store as real `golemish serve --cluster` processes, for
the cluster tests and scripts/bench_cluster.py.

Each executor listens on a loopback port of its own (chosen free before it starts, so
that a restart comes back on the same address), with a fixed executor id, and is
stopped with SIGTERM, killed with SIGKILL, or paused and resumed (SIGSTOP/SIGCONT).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def golemish_cmd() -> list[str]:
    beside = Path(sys.executable).with_name("golemish")
    exe = str(beside) if beside.exists() else shutil.which("golemish")
    return [exe] if exe else [sys.executable, "-m", "golemish.runtime.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Executor:
    """One `golemish serve --cluster` process (restartable on the same port and id)."""

    def __init__(self, store: str, name: str, *, lease_s: float = 1.0, renew_s: float = 0.2,
                 log_dir: Path | None = None, env: dict[str, str] | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.store, self.name = store, name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lease_s, self.renew_s = lease_s, renew_s
        self.log_dir, self.env, self.extra = log_dir, env or {}, extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> None:
        log: Any = subprocess.DEVNULL
        if self.log_dir is not None:
            log = open(self.log_dir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            [*golemish_cmd(), "--store", self.store, "serve", "--cluster",
             "--executor-id", self.name, "--listen", f"127.0.0.1:{self.port}",
             "--lease", str(self.lease_s), "--lease-renew", str(self.renew_s), *self.extra],
            stdout=log, stderr=log, env={**os.environ, **self.env})
        if log is not subprocess.DEVNULL:
            log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"executor {self.name} exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/cluster", timeout=1).status_code in (200, 401):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"executor {self.name} did not start within {timeout} s")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int | None:
        """SIGTERM (drain), SIGKILL after 30 s; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode

    def info(self) -> dict[str, Any]:
        return httpx.get(self.url + "/cluster", timeout=5).json()


def migrate(store: str) -> None:
    subprocess.run([*golemish_cmd(), "--store", store, "store", "migrate"], check=True,
                   capture_output=True)


def deploy(url: str, name: str, wasm: bytes, allow_http: list[str] | None = None) -> None:
    """Deploy over HTTP (a JSON deploy, so that ``allow_http`` goes with it)."""
    import base64
    r = httpx.post(url + "/components", params={"name": name}, timeout=120,
                   json={"wasm": base64.b64encode(wasm).decode(),
                         "allow_http": allow_http or []})
    assert r.status_code in (200, 201), r.text


class Sink:
    """A local HTTP service the guests' effects go to (agent's ``pay``: POST /pay).

    It records every request with its Idempotency-Key, as a payment API would, and
    answers after ``delay_s`` (so that an effect can be in flight when an executor
    is killed). ``effects()``: body -> the distinct keys it came with.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.delay_s = delay_s
        self.requests: list[tuple[str, str, str]] = []  # (key, path, body)
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n).decode()
                with sink._lock:
                    sink.requests.append((self.headers.get("idempotency-key", ""),
                                          self.path, body))
                if sink.delay_s:
                    time.sleep(sink.delay_s)
                try:
                    self.send_response(200)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the executor that asked was killed meanwhile

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def effects(self) -> dict[str, set[str]]:
        with self._lock:
            out: dict[str, set[str]] = {}
            for key, _, body in self.requests:
                out.setdefault(body, set()).add(key)
            return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
