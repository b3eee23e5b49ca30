#!/usr/bin/env python3
"""Screenshots of the web console for the README: docs/img/console-*.png.

    .venv/bin/python scripts/console_screenshots.py [--out docs/img]

Starts a real `golemish serve` on a temporary store, deploys the counter, agent and
cart guest examples, runs real invocations (a snapshot, a promise left pending, a
worker recovered after a server restart), then loads each page in Debian's Chromium
(Playwright, executable_path) and saves it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from console_kit import ConsoleServer, build_guests, chromium_path, populate  # noqa: E402

PAGES = [
    ("workers", "#/workers", "#workers tbody tr"),
    ("worker", "#/worker/counter/alice", "#oplog details.inv"),
    ("promises", "#/promises", "#promises tbody tr"),
    ("component", "#/component/cart", "#wit"),
    ("dashboard", "#/dashboard", "#s-workers"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs/img")
    args = ap.parse_args()
    chromium = chromium_path()
    if chromium is None:
        print("chromium not found (apt-get install chromium, or GOLEMISH_CHROMIUM)",
              file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    guests = build_guests(["counter", "agent", "cart"])
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = str(Path(tmp) / "store")
        server = ConsoleServer(home)
        try:
            populate(server, guests)
            for i in range(8):
                server.ok(f"counter/w{i}", "add", str(i + 1))
        finally:
            server.stop()
        # A restart: the next invocation recovers its worker (shown as "last recovery").
        server = ConsoleServer(home)
        try:
            server.ok("counter/alice", "add", "4")
            server.ok("counter/w3", "add", "1")
            server.http.post("/console/api/workers/counter/w3/snapshot", json={})
            r = server.invoke("agent/second", "approval")
            assert r.status_code == 202, r.text
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                for name, hash_, ready in PAGES:
                    page.goto(f"{server.url}/{hash_}")
                    page.wait_for_selector(ready)
                    if name == "worker":
                        page.locator("#oplog details.inv").last.locator("summary").click()
                        page.wait_for_selector("#live-output .idx")
                        page.evaluate("window.scrollTo(0, 0)")
                    if name == "dashboard":
                        time.sleep(2.5)  # a second scrape, for rates
                    path = args.out / f"console-{name}.png"
                    page.screenshot(path=str(path), full_page=True)
                    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
                browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
