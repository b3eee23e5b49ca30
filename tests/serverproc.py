"""A real `golemish serve` process for tests (integration and chaos).

Started on an ephemeral loopback port; its URL comes from server.json in the
store. ``stop`` sends a signal and waits for the exit status. Importable outside
pytest too (scripts/console_screenshots.py puts tests/ on sys.path).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from golemish.runtime.server.record import wait_until_serving


def golemish_cmd() -> list[str]:
    # The golemish beside this interpreter first: run as `.venv/bin/python -m pytest`
    # without the venv on PATH, which() found another install's (pyenv's shim) instead.
    beside = Path(sys.executable).with_name("golemish")
    exe = str(beside) if beside.exists() else shutil.which("golemish")
    return [exe] if exe else [sys.executable, "-m", "golemish.runtime.cli"]


#: Variables a test runner's own environment must not pass on to a test's server.
NOT_INHERITED = ("GOLEMISH_SERVER", "GOLEMISH_CRASH_AT", "GOLEMISH_SERVER_TOKEN")


def inherited_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}


class ServerProc:
    def __init__(self, home: str, *extra: str, token: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.home = home
        self.proc = subprocess.Popen(
            [*golemish_cmd(), "--home", home, "serve", "--listen", "127.0.0.1:0", *extra,
             *(["--token", token] if token else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**inherited_env(), **(env or {})})
        url = wait_until_serving(home, self.proc)
        if url is None:
            self.proc.kill()
            raise AssertionError(f"server did not start: {self.proc.communicate()}")
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def invoke(self, worker: str, function: str, *args: str, key: str | None = None,
               client: httpx.Client | None = None) -> httpx.Response:
        return (client or self.http).post(
            f"/workers/{worker}/invoke", json={"function": function, "args": list(args)},
            headers={"Idempotency-Key": key} if key else {})

    def ok(self, worker: str, function: str, *args: str) -> dict:
        r = self.invoke(worker, function, *args)
        assert r.status_code == 200, r.text
        return r.json()

    def deploy(self, name: str, wasm: Path, wit: Path | None = None) -> None:
        if wit is None:
            r = self.http.post("/components", params={"name": name}, content=wasm.read_bytes())
        else:
            r = self.http.post("/components", params={"name": name}, json={
                "wasm": base64.b64encode(wasm.read_bytes()).decode(), "wit": wit.read_text()})
        assert r.status_code in (200, 201), r.text

    def get(self, worker: str) -> int:
        r = self.invoke(worker, "get")
        assert r.status_code == 200, r.text
        return int(r.json()["results"][0]["value"])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.out, self.err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return self.proc.returncode
