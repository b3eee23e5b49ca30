"""Test kit: a local HTTP service standing in for the outside world.

:class:`EffectSink` serves on 127.0.0.1 (an ephemeral port) and counts effects
per ``Idempotency-Key``, the way a payment provider would deduplicate. Tests,
the agent demo and the crash campaign use it to check "exactly once" from the
receiving side. Guests reach nothing by default, loopback included: allow
:attr:`EffectSink.address` explicitly (``deploy --allow-http``,
``Runtime.deploy(..., http_allow=[sink.address])``, ``worker config``).

Routes: ``GET /next-action?round=R`` answers ``pay <100·R>`` (a fake LLM);
``GET /item?n=N`` answers ``item N``; ``POST /pay`` records a payment once per
key; ``GET /stats`` returns the counts as JSON.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class EffectSink:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()        # path -> requests seen
        self.deliveries: Counter[str] = Counter()      # idempotency key -> POSTs seen
        self.payments: dict[str, str] = {}             # key -> body of the first POST
        self.fail_next = 0                             # answer 503 to this many requests
        self.headers: list[dict[str, str]] = []        # the headers of each request seen
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: the allow-list entry that lets a guest reach the sink."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> EffectSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _reply(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                sink._handle(self, "GET", b"")

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                if len(body) < n:
                    # The client died between its headers and its body (http.client
                    # sends them in two writes): an incomplete request is no request,
                    # as at any real service. Recording it would invent a payment.
                    self.close_connection = True
                    return
                sink._handle(self, "POST", body)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client killed mid-request (the point of crash tests) is not an error.
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="effect-sink").start()
        return self

    def _handle(self, h: Any, method: str, body: bytes) -> None:
        parts = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        with self._lock:
            self.requests[parts.path] += 1
            self.headers.append(dict(h.headers.items()))
            if self.fail_next > 0:
                self.fail_next -= 1
                return h._reply(503, "try again")
            if parts.path == "/next-action":
                return h._reply(200, f"pay {100 * int(query.get('round', 1))}")
            if parts.path == "/item":
                return h._reply(200, f"item {query.get('n', '?')}")
            if parts.path == "/pay" and method == "POST":
                key = h.headers.get("Idempotency-Key") or f"no-key-{sum(self.deliveries.values())}"
                self.deliveries[key] += 1
                self.payments.setdefault(key, body.decode())
                return h._reply(200, "ok")
            if parts.path == "/stats":
                return h._reply(200, json.dumps(self.stats()))
        h._reply(404, "not found")

    def stats(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "deliveries": dict(self.deliveries),
                "payments": dict(self.payments)}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> EffectSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
