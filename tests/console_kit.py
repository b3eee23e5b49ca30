"""A real `golemish serve` process with real workers, for the console's browser tests
and scripts/console_screenshots.py (tests/console_kit.py)."""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from golemish.runtime.server.process import wait_until_serving

ROOT = Path(__file__).resolve().parents[1]


def golemish_cmd() -> list[str]:
    exe = shutil.which("golemish", path=os.path.dirname(sys.executable)) or shutil.which("golemish")
    return [exe] if exe else [sys.executable, "-m", "golemish.runtime.cli"]


def build_guests(names: list[str] | None = None) -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location("guest_build", ROOT / "guest_examples/build.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build(names, verbose=False)


def chromium_path() -> str | None:
    """Debian's Chromium (apt-get install chromium), or GOLEMISH_CHROMIUM."""
    given = os.environ.get("GOLEMISH_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class ConsoleServer:
    """`golemish serve --listen 127.0.0.1:0` on a fresh store; stop() with SIGTERM."""

    def __init__(self, home: str, token: str | None = None) -> None:
        self.home, self.token = home, token
        subprocess.run([*golemish_cmd(), "--home", home, "store", "init"], check=True,
                       capture_output=True)
        env = {k: v for k, v in os.environ.items()
               if k not in ("GOLEMISH_SERVER", "GOLEMISH_CRASH_AT", "GOLEMISH_SERVER_TOKEN")}
        self.proc = subprocess.Popen(
            [*golemish_cmd(), "--home", home, "serve", "--listen", "127.0.0.1:0",
             *(["--token", token] if token else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        url = wait_until_serving(home, self.proc)
        if url is None:
            self.proc.kill()
            raise AssertionError(f"server did not start: {self.proc.communicate()}")
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=60)

    def deploy(self, name: str, wasm: Path, wit: Path | None = None) -> None:
        if wit is None:
            r = self.http.post("/components", params={"name": name}, content=wasm.read_bytes())
        else:
            r = self.http.post("/components", params={"name": name}, json={
                "wasm": base64.b64encode(wasm.read_bytes()).decode(), "wit": wit.read_text()})
        assert r.status_code in (200, 201), r.text

    def invoke(self, worker: str, function: str, *args: str) -> httpx.Response:
        return self.http.post(f"/workers/{worker}/invoke",
                              json={"function": function, "args": list(args)})

    def ok(self, worker: str, function: str, *args: str) -> dict:
        r = self.invoke(worker, function, *args)
        assert r.status_code == 200, r.text
        return r.json()

    def stop(self) -> int:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
                raise
        return self.proc.returncode


def populate(server: ConsoleServer, guests: dict[str, Path]) -> str:
    """Components and workers worth looking at; returns the id of a pending promise."""
    server.deploy("counter", guests["counter"])
    server.deploy("agent", guests["agent"])
    server.deploy("cart", guests["cart"], ROOT / "guest_examples/cart.wit")
    for n in (5, 7, 3):
        server.ok("counter/alice", "add", str(n))
    r = server.http.post("/console/api/workers/counter/alice/snapshot", json={})
    assert r.status_code == 200, r.text
    for n in (11, 2):
        server.ok("counter/alice", "add", str(n))
    server.ok("counter/bob", "add", "2")
    server.ok("cart/shop", "add-item", '{sku: "apple", qty: 2, price-cents: 150}')
    server.ok("cart/shop", "add-item", '{sku: "pear", qty: 1, price-cents: 90}')
    r = server.invoke("agent/approver", "approval")
    assert r.status_code == 202, r.text
    return str(r.json()["promise"])
