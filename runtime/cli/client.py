"""The CLI as a client of a running `golemish serve`.

A command finds the server for its store: ``--server URL`` (or
``GOLEMISH_SERVER``), else the ``server.json`` that a live server wrote into
``--home``. With none, commands run in-process as before. Errors come back as the
server's one-line message, so the output is the same either way. Only the
standard library is used here: the CLI's start-up stays light.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from golemish.oplog import GolemishError

from ..errors import Suspended
from ..typed.values import from_typed_json


class ServerUnreachable(GolemishError):
    """The server named by --server, GOLEMISH_SERVER or server.json does not answer."""


class ServerError(GolemishError):
    """The server refused a call: its one-line message, with its stable code."""

    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message)
        self.code, self.status = code, status


class Client:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None,
                query: dict[str, str] | None = None) -> tuple[int, Any]:
        url = self.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=3600) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read())["error"]
            except (ValueError, KeyError, TypeError):
                raise GolemishError(f"server {self.url}: HTTP {e.code} {e.reason}") from None
            raise ServerError(err["message"], err.get("code", ""), e.code) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServerUnreachable(f"server {self.url} does not answer: {reason}") from None

    def invoke(self, worker: str, function: str, args: list[str], *, key: str | None,
               env: list[tuple[str, str]], ephemeral: bool) -> dict[str, Any]:
        comp, _, name = worker.partition("/")
        path = f"/workers/{_seg(comp)}/{_seg(name)}/invoke"
        status, body = self.request("POST", path, {
            "function": function, "args": args, "env": dict(env), "ephemeral": ephemeral},
            headers={"Idempotency-Key": key} if key else None)
        if status == 202:
            raise Suspended(body["worker"], promise=body.get("promise"),
                            until_ns=body.get("until_ns"))
        return body

    def worker_infos(self) -> list[dict[str, Any]]:
        return self.request("GET", "/workers")[1]

    def worker_info(self, worker: str) -> dict[str, Any]:
        return self.request("GET", self.worker_path(worker))[1]

    def worker_path(self, worker: str, tail: str = "") -> str:
        """``/workers/C/N`` + tail, after checking the id as the runtime would."""
        comp, sep, name = worker.partition("/")
        from ..errors import NotFoundError
        from ..names import parse_worker_id
        try:
            parse_worker_id(worker)
        except GolemishError:  # what the in-process commands say: none has that id
            raise NotFoundError(f"no worker {worker}") from None
        return f"/workers/{_seg(comp)}/{_seg(name)}{tail}"

    def get(self, path: str, **query: Any) -> Any:
        q = {k: str(v).lower() if isinstance(v, bool) else str(v)
             for k, v in query.items() if v is not None}
        return self.request("GET", path, query=q or None)[1]

    def post(self, path: str, body: Any = None, **query: Any) -> tuple[int, Any]:
        q = {k: str(v).lower() if isinstance(v, bool) else str(v)
             for k, v in query.items() if v is not None}
        return self.request("POST", path, {} if body is None else body, query=q or None)

    def deploy(self, wasm: bytes, name: str, wit: str | None, stackful: bool,
               allow_http: list[str]) -> tuple[bool, dict[str, Any]]:
        import base64
        _, body = self.request("POST", "/components", {
            "wasm": base64.b64encode(wasm).decode(), "wit": wit, "stackful": stackful,
            "allow_http": allow_http}, query={"name": name})
        created = bool(body.pop("created"))
        return created, body

    def stream(self, path: str, query: dict[str, str]) -> Any:
        """Server-sent events from ``path``: yields (event, data) until the stream ends."""
        url = self.url + path + f"?{urllib.parse.urlencode(query)}"
        req = urllib.request.Request(url, headers={"Accept": "text/event-stream"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            resp = urllib.request.urlopen(req, timeout=3600)
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read())["error"]
            except (ValueError, KeyError, TypeError):
                raise GolemishError(f"server {self.url}: HTTP {e.code} {e.reason}") from None
            raise GolemishError(err["message"]) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServerUnreachable(f"server {self.url} does not answer: {reason}") from None
        with resp:
            event, data = "message", []
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        yield event, "\n".join(data)
                    event, data = "message", []
                elif line.startswith(":"):
                    continue
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())


def _seg(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def find_server(home: str, server: str | None = None) -> Client | None:
    """The client for the server of ``home`` (or ``server``), or None: run in-process."""
    token = os.environ.get("GOLEMISH_SERVER_TOKEN") or None
    url = server or os.environ.get("GOLEMISH_SERVER")
    if url:
        return Client(url, token)
    from ..server.record import read_server_file, stale_server_file  # no runtime
    info = read_server_file(home)
    if info is None:
        stale = stale_server_file(home)
        if stale is not None:
            import sys
            print(f"golemish: removed a stale server.json (server pid {stale.get('pid')} is "
                  "not running); working in-process", file=sys.stderr)
    return Client(info["url"], token) if info else None


def remote_invoke(client: Client, worker: str, function: str, args: list[str],
                  key: str | None, env: list[tuple[str, str]], ephemeral: bool,
                  crash_at: str | None, limits: dict[str, float], write: Any) -> Any:
    """`golemish invoke` through the server: an InvocationResult-like object."""
    from types import SimpleNamespace

    from ..errors import ArgumentError
    if crash_at or limits:
        raise ArgumentError("--crash-at, --memory-limit and --time-limit work in-process "
                            f"only, and a server owns this store ({client.url})")
    body = client.invoke(worker, function, args, key=key, env=env, ephemeral=ephemeral)
    for stream, name in ((1, "stdout"), (2, "stderr")):
        if body.get(name):
            write(stream, body[name].encode())
    rec = body.get("recovery")
    return SimpleNamespace(
        results=from_typed_json(body["results"]),
        index=body["oplog_index"], seconds=body["seconds"], json=body.get("value"),
        deduplicated=body["deduplicated"],
        recovery=SimpleNamespace(**rec) if rec else None)
