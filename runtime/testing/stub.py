"""A local HTTP service for tests, answering as told and recording every call.

::

    stub.expect("POST", "/pay").respond(200, body="ok")
    stub.expect("GET", "/next-action").respond(200, body=lambda call: "pay 100")
    ... run the worker ...
    assert [c.body for c in stub.calls_to("POST", "/pay")] == [b"100"]
    assert len(stub.effects("POST", "/pay")) == 1   # distinct Idempotency-Keys

It listens on 127.0.0.1 on an ephemeral port (``stub.url``, ``stub.address``).
Guest HTTP is deny-by-default: the ``http_stub`` fixture puts ``stub.address`` on
its runtime's allow-list. A request that matches no expectation is answered 404
and recorded too (``stub.unexpected``), so a test can fail on it.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    """One request the stub received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


Body = bytes | str | Callable[[Call], "bytes | str"]


@dataclass
class Expectation:
    """What to answer to requests with one method and path."""

    method: str
    path: str
    status: int = 200
    body: Body = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Answer 503 to this many matching requests first (to exercise retries).
    failures: int = 0

    def respond(self, status: int = 200, body: Body = b"", *,
                headers: dict[str, str] | None = None) -> Expectation:
        """Answer ``status`` with ``body`` (bytes, text, or a function of the Call)."""
        self.status, self.body, self.headers = status, body, dict(headers or {})
        return self

    def fail_first(self, n: int) -> Expectation:
        """Answer the next ``n`` matching requests with 503 before the real answer."""
        self.failures = n
        return self


class HttpStub:
    """A scripted HTTP endpoint on loopback. Thread-safe; use as a context manager."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._expect: dict[tuple[str, str], Expectation] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- scripting -------------------------------------------------------------
    def expect(self, method: str, path: str) -> Expectation:
        """Declare (or replace) the answer for ``method path`` (the path without query)."""
        e = Expectation(method.upper(), path)
        with self._lock:
            self._expect[(e.method, path)] = e
        return e

    # -- inspection ----------------------------------------------------------------
    def calls_to(self, method: str, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method.upper() and c.path == path]

    def effects(self, method: str, path: str) -> dict[str, list[Call]]:
        """Calls to ``method path`` grouped by Idempotency-Key: one group per effect."""
        out: dict[str, list[Call]] = {}
        for c in self.calls_to(method, path):
            out.setdefault(c.idempotency_key or f"(no key #{len(out)})", []).append(c)
        return out

    @property
    def unexpected(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if (c.method, c.path) not in self._expect]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    # -- serving --------------------------------------------------------------------
    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the form the runtime's HTTP allow-list takes."""
        assert self._server is not None, "the stub is not started"
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _answer(self, method: str, raw_path: str, headers: dict[str, str],
                body: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = urllib.parse.urlsplit(raw_path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        with self._lock:
            e = self._expect.get((method, parts.path))
            spec: Body
            if e is None:
                status, rheaders, spec = 404, {}, b"no expectation for this request"
            elif e.failures > 0:
                e.failures -= 1
                status, rheaders, spec = 503, {}, b"try again"
            else:
                status, rheaders, spec = e.status, dict(e.headers), e.body
            call = Call(method, parts.path, query, headers, body, status)
            self.calls.append(call)
        # A body function runs outside the lock: it may look at the stub itself.
        value = spec(call) if callable(spec) else spec
        payload = value.encode() if isinstance(value, str) else bytes(value)
        return status, rheaders, payload

    def start(self) -> HttpStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, rheaders, payload = stub._answer(method, self.path, headers, body)
                self.send_response(status)
                for k, v in rheaders.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client killed mid-request (the point of crash tests) is no error

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="http-stub").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HttpStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
