"""Routes for what the CLI does besides invoking: server status, versions (revert,
fork, update), the oplog as the CLI prints it, component config and deletion, and
live logs (logs.py). Worker snapshot and config are worker_routes.py's.

They call the same functions as the in-process CLI commands (runtime/versions.py,
Runtime methods) and return what those return as JSON, so the CLI in client mode
prints exactly what it prints in-process. Registered from ``app.build_app``; the
OpenAPI paths are ``openapi.manage_paths``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import versions
from ..errors import ArgumentError
from ..summaries import clip, full_summary
from . import logs

if TYPE_CHECKING:
    from .app import Api


@dataclass
class ServerState:
    """What `server status` reports, and the stop signal that ends live-log streams."""

    url: str = ""
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    idle_timeout: float | None = None
    max_memory: int | None = None
    drain_timeout: float = 30.0
    #: Set when SIGTERM arrives: followers' streams end so that the drain can finish.
    stopping: threading.Event = field(default_factory=threading.Event)


def _strings(body: dict[str, Any], key: str) -> list[str]:
    v = body.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ArgumentError(f"\"{key}\" should be a list of strings")
    return v


def _opt_int(body: dict[str, Any], key: str, lo: int = 0) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if type(v) is not int or v < lo:
        raise ArgumentError(f"\"{key}\" should be an integer of at least {lo}")
    return v


class Manage:
    def __init__(self, api: Api, state: ServerState) -> None:
        self.api, self.rt, self.state = api, api.rt, state

    async def status(self, request: Request) -> Response:
        resident = sorted(self.rt.resident())
        return JSONResponse({
            "url": self.state.url, "pid": self.state.pid, "home": self.rt.config.home,
            "started_at": self.state.started_at,
            "uptime_s": round(time.time() - self.state.started_at, 3),
            "workers_resident": len(resident), "resident": resident,
            "evicted_total": self.rt.evicted_total,
            "idle_timeout_s": self.state.idle_timeout, "max_memory": self.state.max_memory,
            "stopping": self.state.stopping.is_set()})

    def _oplog_rows(self, wid: str, start: int, end: int | None,
                    full: bool) -> list[dict[str, Any]]:
        entries = self.rt.oplog(wid, start, end)
        void = versions.skipped(self.rt, wid)
        return [{"index": i, "name": e.NAME, "entry": e.to_json(),
                 "summary": full_summary(e) if full else clip(e.summary()),
                 "skipped": any(a <= i <= b for a, b in void)} for i, e in entries]

    async def oplog_text(self, request: Request) -> Response:
        wid = self.api._worker_id(request)
        start = self.api._int_param(request, "start", 1, 1, 1 << 62)
        end = self.api._int_param(request, "end", 0, 0, 1 << 62) or None
        full = request.query_params.get("full") == "true"
        return JSONResponse(_jsonable(await self.api._blocking(
            self._oplog_rows, wid, start, end, full)))

    async def revert(self, request: Request) -> Response:
        wid = self.api._worker_id(request)
        body = await self.api._json(request)
        to, last = _opt_int(body, "to_index", 1), _opt_int(body, "last_invocations", 1)
        if (to is None) == (last is None):
            raise ArgumentError("give exactly one of --to-index and --last-invocations")
        r = await self.api._blocking(versions.revert, self.rt, wid, to_index=to,
                                     last_invocations=last)
        return JSONResponse(_jsonable(vars(r)))

    async def fork(self, request: Request) -> Response:
        wid = self.api._worker_id(request)
        body = await self.api._json(request)
        new = body.get("new")
        if not isinstance(new, str) or not new:
            raise ArgumentError("body needs \"new\": the new worker's id")
        f = await self.api._blocking(versions.fork, self.rt, wid, new, _opt_int(body, "at", 1))
        return JSONResponse(_jsonable(vars(f)), status_code=201)

    async def update(self, request: Request) -> Response:
        wid = self.api._worker_id(request)
        body = await self.api._json(request)
        version, mode = _opt_int(body, "version"), body.get("mode", "auto")
        if version is None or mode not in ("auto", "manual"):
            raise ArgumentError("body needs \"version\" (an integer) and \"mode\" "
                                "(auto or manual)")
        r = await self.api._blocking(versions.update, self.rt, wid, version, mode)
        return JSONResponse(_jsonable(vars(r)))

    def _component_version(self, request: Request) -> tuple[str, int]:
        text = request.path_params["version"]
        if not text.isdigit():
            raise ArgumentError(f"version {text!r} should be a number")
        return request.path_params["name"], int(text)

    async def delete_component(self, request: Request) -> Response:
        name, version = self._component_version(request)
        await self.api._blocking(versions.delete_component, self.rt, name, version)
        return JSONResponse({"deleted": name, "version": version})

    async def component_config(self, request: Request) -> Response:
        body = await self.api._json(request)
        meta = await self.api._blocking(
            self.rt.configure_component, request.path_params["name"],
            _opt_int(body, "version"), allow_http=_strings(body, "allow_http"),
            deny_http=_strings(body, "deny_http"))
        return JSONResponse(_jsonable(meta))


def _jsonable(obj: Any) -> Any:
    from .app import _jsonable as j
    return j(obj)


def manage_routes(api: Api, state: ServerState) -> list[Route]:
    from .app import _guarded
    m = Manage(api, state)
    follow = logs.Logs(api, state)
    w = "/workers/{component}/{name}"
    c = "/components/{name}/versions/{version}"
    return [
        Route("/server", _guarded(m.status), methods=["GET"]),
        Route(w + "/logs", _guarded(follow.logs), methods=["GET"]),
        Route(w + "/oplog/text", _guarded(m.oplog_text), methods=["GET"]),
        Route(w + "/revert", _guarded(m.revert), methods=["POST"]),
        Route(w + "/fork", _guarded(m.fork), methods=["POST"]),
        Route(w + "/update", _guarded(m.update), methods=["POST"]),
        Route("/components/{name}/config", _guarded(m.component_config), methods=["POST"]),
        Route(c, _guarded(m.delete_component), methods=["DELETE"]),
    ]
