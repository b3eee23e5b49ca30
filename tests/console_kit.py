"""A real `golemish serve` process with real workers, for the console's browser tests
and scripts/console_screenshots.py (tests/console_kit.py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from serverproc import golemish_cmd, ServerProc

ROOT = Path(__file__).resolve().parents[1]


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


class ConsoleServer(ServerProc):
    """`golemish serve --listen 127.0.0.1:0` on a fresh store; stop() with SIGTERM."""

    def __init__(self, home: str, token: str | None = None) -> None:
        subprocess.run([*golemish_cmd(), "--home", home, "store", "init"], check=True,
                       capture_output=True)
        super().__init__(home, token=token)
        self.token = token


def populate(server: ConsoleServer, guests: dict[str, Path]) -> str:
    """Components and workers worth looking at; returns the id of a pending promise."""
    server.deploy("counter", guests["counter"])
    server.deploy("agent", guests["agent"])
    server.deploy("cart", guests["cart"], ROOT / "guest_examples/cart.wit")
    for n in (5, 7, 3):
        server.ok("counter/alice", "add", str(n))
    r = server.http.post("/workers/counter/alice/snapshot", json={})
    assert r.status_code == 201, r.text
    for n in (11, 2):
        server.ok("counter/alice", "add", str(n))
    server.ok("counter/bob", "add", "2")
    server.ok("cart/shop", "add-item", '{sku: "apple", qty: 2, price-cents: 150}')
    server.ok("cart/shop", "add-item", '{sku: "pear", qty: 1, price-cents: 90}')
    r = server.invoke("agent/approver", "approval")
    assert r.status_code == 202, r.text
    return str(r.json()["promise"])
