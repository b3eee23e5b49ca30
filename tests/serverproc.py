"""A real `golemish serve` process for tests (integration and chaos).

Started on an ephemeral loopback port; its URL comes from server.json in the
store. ``stop`` sends a signal and waits for the exit status.
"""

from __future__ import annotations

import os
import signal
import subprocess

import httpx

from golemish.runtime.server.process import wait_until_serving

from conftest import golemish_cmd


class ServerProc:
    def __init__(self, home: str, *extra: str, token: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.home = home
        self.proc = subprocess.Popen(
            [*golemish_cmd(), "--home", home, "serve", "--listen", "127.0.0.1:0", *extra,
             *(["--token", token] if token else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})})
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
