"""Routing between executors: any executor accepts any request (runtime/cluster.py).

A request that changes a worker (POST/DELETE under ``/workers/C/N``, and a promise's
completion, which resumes the promise's worker) runs where the worker's lease is:

- held by another registered executor, unexpired: the request is forwarded to that
  executor's address as it came (method, path, query, headers, body) and its answer
  is returned as it is;
- ours, free or expired: it runs here (taking the lease). If another executor took
  it meanwhile, the local answer is 503 ``not-owner`` and the request is forwarded
  once more to the owner now registered.

A forwarded request carries ``X-Golemish-Forwarded``; it is never forwarded again
(no loops), so at worst the caller gets 503 ``not-owner`` and retries. An owner that
cannot be reached gives 503 ``owner-unreachable``: its lease expires within the
lease time, and then any executor takes the worker. Reads run on any executor.
"""

from __future__ import annotations

import json
import re
from typing import Any

import anyio.to_thread
import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from golemish.oplog import GolemishError

from ..executor import Runtime

FORWARDED = b"x-golemish-forwarded"
_WORKER = re.compile(r"^/workers/([^/]+)/([^/]+)(?:/[^/]+)?$")
_PROMISE = re.compile(r"^/promises/(.+)/complete$")
#: Hop-by-hop and recomputed headers, not passed on.
_DROP = {b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding"}
#: Longest wait for a forwarded request (an invocation may run for its time limit).
FORWARD_TIMEOUT_S = 300.0
#: Largest body of a routed request (worker requests are JSON of at most 1 MiB).
MAX_BODY = 2 << 20


def _json(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": {"code": code, "message": message}}).encode()


class Router:
    """ASGI middleware in front of the API of an executor in a cluster."""

    def __init__(self, app: ASGIApp, rt: Runtime) -> None:
        assert rt.cluster is not None
        self.app, self.rt, self.cluster = app, rt, rt.cluster
        self._client: httpx.AsyncClient | None = None
        #: Requests forwarded to another executor (for /health and the tests).
        self.forwarded = 0

    def _worker_of(self, scope: Scope) -> str | None:
        path = scope.get("path", "")
        if scope.get("method") not in ("POST", "DELETE", "PUT", "PATCH"):
            return None
        m = _WORKER.match(path)
        if m:
            return f"{m.group(1)}/{m.group(2)}"
        m = _PROMISE.match(path)
        if m:
            p = self.rt.store.get_promise(m.group(1))
            return None if p is None else str(p["worker"])
        return None

    def _owner(self, worker_id: str) -> tuple[str, str] | None:
        if self.cluster.holds(worker_id):
            return None  # ours (if it was lost meanwhile, the turn finds out: not-owner)
        return self.cluster.leases.owner_address(worker_id, self.cluster.me)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or FORWARDED in dict(scope["headers"]):
            await self.app(scope, receive, send)
            return
        if scope.get("path") == "/cluster" and scope.get("method") == "GET":
            info = {**self.cluster.stats(), "forwarded": self.forwarded}
            await _reply(send, 200, [(b"content-type", b"application/json")],
                         [json.dumps(info).encode()])
            return
        try:
            wid = await anyio.to_thread.run_sync(self._worker_of, scope)
            owner = None if wid is None else await anyio.to_thread.run_sync(self._owner, wid)
        except GolemishError:
            wid = owner = None  # the local handler reports the store's trouble
        if wid is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            await _reply(send, *_json(413, "too-large", "request body over "
                                      f"{MAX_BODY:,} bytes"), )
            return
        if owner is None:
            status, headers, chunks = await self._local(scope, body)
            if not (status == 503 and b'"not-owner"' in b"".join(chunks)):
                await _reply(send, status, headers, chunks)
                return
            try:
                owner = await anyio.to_thread.run_sync(self._owner, wid)
            except GolemishError:
                owner = None
            if owner is None:
                await _reply(send, status, headers, chunks)
                return
        status, raw = await self._forward(scope, body, owner)
        await _reply(send, status, [(b"content-type", b"application/json")], [raw])

    async def _local(self, scope: Scope, body: bytes) -> tuple[int, list[Any], list[bytes]]:
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def send(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                start.update(msg)
            elif msg["type"] == "http.response.body":
                chunks.append(msg.get("body", b""))

        await self.app(scope, receive, send)
        return int(start.get("status", 500)), list(start.get("headers", [])), chunks

    async def _forward(self, scope: Scope, body: bytes,
                       owner: tuple[str, str]) -> tuple[int, bytes]:
        owner_id, address = owner
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.lower() not in _DROP]
        headers.append((FORWARDED.decode(), self.cluster.me))
        query = scope.get("query_string", b"").decode("latin-1")
        # The path as it came (percent-encoded: a promise id holds '#').
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        url = address.rstrip("/") + path + (f"?{query}" if query else "")
        self.forwarded += 1
        try:
            resp = await self._client.request(scope["method"], url, headers=headers,
                                              content=body)
        except httpx.HTTPError as e:
            return _json(503, "owner-unreachable",
                         f"the worker's owner, executor {owner_id} at {address}, did not "
                         f"answer ({type(e).__name__}); retry: its lease expires soon")
        return resp.status_code, resp.content


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body; None when it is over MAX_BODY."""
    chunks, total = [], 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            break
        chunks.append(msg.get("body", b""))
        total += len(chunks[-1])
        if total > MAX_BODY:
            return None
        if not msg.get("more_body"):
            break
    return b"".join(chunks)


async def _reply(send: Send, status: int, headers: list[Any] | bytes,
                 chunks: list[bytes] | None = None) -> None:
    if isinstance(headers, bytes):  # (status, body) from _json
        headers, chunks = [(b"content-type", b"application/json")], [headers]
    assert chunks is not None
    body = b"".join(chunks)
    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
