"""Fixtures for the web console's browser tests: Debian's Chromium driven by
Playwright's sync API (no pytest-playwright needed), against a real `golemish serve`
process with real workers (tests/console_kit.py).

A missing Chromium is a failure, not a skip: CI (.ci/run) installs it, and a suite
that silently skipped its browser tests would claim a console it never loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from console_kit import ConsoleServer, chromium_path, populate

TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def browser() -> Iterator:
    path = chromium_path()
    if path is None:
        pytest.fail("Chromium not found: the console's browser tests drive Debian's chromium "
                    "(apt-get install chromium; .ci/run installs it), or set "
                    "GOLEMISH_CHROMIUM=/path/to/chromium", pytrace=False)
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=TIMEOUT_MS)  # a loaded 2-core machine
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path)
        yield b
        b.close()


class Console:
    """A populated server and what the tests need to know about it."""

    def __init__(self, server: ConsoleServer, promise: str) -> None:
        self.server, self.promise, self.url = server, promise, server.url


@pytest.fixture
def console(tmp_path: Path, guests) -> Iterator[Console]:
    server = ConsoleServer(str(tmp_path / "store"))
    try:
        yield Console(server, populate(server, guests))
    finally:
        assert server.stop() == 0


class PageErrors(list):
    """JavaScript exceptions and Content-Security-Policy violations seen by a page."""


@pytest.fixture
def new_page(browser) -> Iterator:
    contexts, errors = [], PageErrors()

    def make():
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(TIMEOUT_MS)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("console", lambda m: errors.append(f"console: {m.text}")
                if m.type == "error" and "Content Security Policy" in m.text else None)
        return page

    yield make
    for ctx in contexts:
        ctx.close()
    assert not errors, errors


@pytest.fixture
def page(new_page):
    return new_page()
