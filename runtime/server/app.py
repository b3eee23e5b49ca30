"""The HTTP API of `golemish serve`: one explicit route table over one Runtime.

Handlers are thin: they parse the request, call the same Runtime methods the
in-process CLI calls, and shape JSON. Guest code and store access never run on
the event loop: every Runtime call goes to a worker thread (``_blocking``), so
invocations of different workers run in parallel while the Runtime keeps one
worker's invocations in arrival order.

Errors are ``{"error": {"code", "message"}}`` with the CLI's one-line message
and a 4xx status for anything the caller can fix; never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from golemish.oplog import GolemishError
from golemish.oplog.errors import StoreError

from .. import versions
from ..cluster import NotOwner
from ..errors import (
    ArgumentError, ClosedError, ComponentError, DivergenceError, ExistsError, InvocationFailed,
    NotFoundError, PromiseError, Suspended, UpdateError, WorkerFailedError,
    WorkerSuspendedError,
)
from ..executor import Deferred, parse_worker_id, Runtime
from ..typed.values import typed_json
from . import invocations as invocation_routes, worker_routes
from .console_api import console_routes, PUBLIC_PATHS
from .docs import docs_page
from .manage import manage_routes, ServerState
from .metrics import CONTENT_TYPE as METRICS_TYPE, Metrics
from .openapi import openapi_document
from .oplog_page import oplog_page
from .threads import ThreadHop
from .wrappers import BearerAuth, error_response, Handler, InvokeFastPath

#: Largest JSON request body; component uploads use the runtime's module limit.
MAX_JSON_BYTES = 1 << 20


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _classify(e: BaseException) -> tuple[int, str]:
    """HTTP status and stable error code for an exception from the runtime."""
    table: list[tuple[type[BaseException], int, str]] = [
        (NotFoundError, 404, "not-found"),
        (ExistsError, 409, "exists"),
        (ArgumentError, 400, "bad-argument"),
        (ComponentError, 400, "bad-component"),
        (WorkerSuspendedError, 409, "worker-suspended"),
        (WorkerFailedError, 409, "worker-failed"),
        (DivergenceError, 409, "divergence"),
        (UpdateError, 409, "update-refused"),
        (PromiseError, 409, "promise"),
        (ClosedError, 503, "shutting-down"),
        (NotOwner, 503, "not-owner"),  # another executor has it (server/routing.py)
        (StoreError, 500, "store"),
    ]
    if isinstance(e, InvocationFailed):
        return 422, f"invocation-failed:{e.reason}"
    for cls, status, code in table:
        if isinstance(e, cls):
            return status, code
    if isinstance(e, GolemishError):
        return 400, "refused"
    return 500, "internal"


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    if isinstance(e, WorkerSuspendedError):  # as the CLI says it
        return (f"{text}; complete what it waits for, or abandon its pending invocation "
                f"with `golemish worker interrupt {e.worker_id}`")
    if isinstance(e, GolemishError):
        return text
    return f"internal error: {type(e).__name__}: {text}"


def classify_error(e: BaseException) -> tuple[int, str, str]:
    """(status, code, one-line message) of an exception, as a response would carry."""
    return (*_classify(e), _one_line(e))


def _default(v: Any) -> Any:
    return v.hex() if isinstance(v, (bytes, bytearray)) else str(v)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_default))


class _JsonBody(JSONResponse):
    """A JSONResponse of ``obj`` as ``JSONResponse(_jsonable(obj))`` would give it, in one
    encoding instead of three (bytes as hex, anything else unknown as its str)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                          separators=(",", ":"), default=_default).encode("utf-8")


class Api:
    """Route handlers bound to one Runtime."""

    jsonable = staticmethod(_jsonable)

    def __init__(self, rt: Runtime, *, threads: int = 64) -> None:
        self.rt = rt
        self.threads = ThreadHop(threads)

    async def _blocking(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await self.threads.run(fn, *args, **kw)

    # -- helpers ----------------------------------------------------------------
    @staticmethod
    async def _body(request: Request, limit: int) -> bytes:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limit:
            raise ApiError(413, "too-large", f"request body of {int(size):,} bytes is over "
                                             f"the limit of {limit:,}")
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise ApiError(413, "too-large", f"request body is over the limit of {limit:,}")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _json(self, request: Request) -> dict[str, Any]:
        raw = await self._body(request, MAX_JSON_BYTES)
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, "bad-json", f"request body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad-json", "request body should be a JSON object")
        return body

    @staticmethod
    def _worker_id(request: Request) -> str:
        wid = f"{request.path_params['component']}/{request.path_params['name']}"
        try:
            parse_worker_id(wid)
        except (ArgumentError, ComponentError) as e:  # a bad name: the caller's mistake
            raise ApiError(400, "bad-argument", str(e)) from None
        return wid

    @staticmethod
    def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
        text = request.query_params.get(name)
        if text is None:
            return default
        try:
            v = int(text)
        except ValueError:
            v = lo - 1
        if not lo <= v <= hi:
            raise ApiError(400, "bad-argument", f"{name}={text!r}: expected an integer "
                                                f"from {lo} to {hi}")
        return v

    # -- handlers ---------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        # Commit counters (oplog/stats.py): benchmarks read fsyncs per invocation here.
        return JSONResponse({"status": "ok", "home": self.rt.config.home,
                             "commits": self.rt.store.stats.counters()})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def deploy(self, request: Request) -> Response:
        name = request.query_params.get("name")
        if not name:
            raise ApiError(400, "bad-argument", "deploy needs ?name=COMPONENT")
        stackful = request.query_params.get("stackful") == "true"
        wit, allow_http = None, []
        if request.headers.get("content-type", "").startswith("application/json"):
            # {"wasm": base64, "wit": text, "stackful": bool, "allow_http": [host, ...]}
            raw = await self._body(request, self.rt.config.max_component_bytes * 4 // 3 + 4096)
            try:
                body = json.loads(raw)
                wasm = base64.b64decode(body["wasm"], validate=True)
            except (ValueError, KeyError, TypeError, binascii.Error) as e:
                raise ApiError(400, "bad-json", "a JSON deploy needs {\"wasm\": base64, "
                                                f"\"wit\": optional text}}: {e}") from None
            wit, stackful = body.get("wit"), bool(body.get("stackful", stackful))
            allow_http = body.get("allow_http", [])
            if not (wit is None or isinstance(wit, str)) or not isinstance(allow_http, list) \
                    or not all(isinstance(h, str) for h in allow_http):
                raise ApiError(400, "bad-argument", "\"wit\" should be text and "
                                                    "\"allow_http\" a list of hosts")
        else:
            wasm = await self._body(request, self.rt.config.max_component_bytes)
        res = await self._blocking(self.rt.deploy, wasm, name, wit, None, stackful,
                                   http_allow=allow_http)
        return JSONResponse(_jsonable({"created": res.created, **res.meta}),
                            status_code=201 if res.created else 200)

    async def components(self, request: Request) -> Response:
        return JSONResponse(_jsonable(await self._blocking(self.rt.list_components)))

    async def component(self, request: Request) -> Response:
        version = self._int_param(request, "version", -1, 0, 1 << 31)
        meta = await self._blocking(self.rt.component, request.path_params["name"],
                                    None if version == -1 else version)
        return JSONResponse(_jsonable(meta))

    def _worker_infos(self, component: str | None, status: str | None,
                      version: int | None) -> list[Any]:
        # worker_ids applies the component and version filters and the stored status;
        # only idle against interrupted needs each worker's described status.
        infos = []
        for wid in self.rt.worker_ids(component, status, version):
            info = self.rt.worker_info(wid)
            if status and info["status"] != status:
                continue
            infos.append(info)
        return infos

    async def workers(self, request: Request) -> Response:
        q = request.query_params
        version = self._int_param(request, "version", -1, 0, 1 << 31)
        infos = await self._blocking(self._worker_infos, q.get("component"), q.get("status"),
                                     None if version == -1 else version)
        return JSONResponse(_jsonable(infos))

    def _worker_show(self, wid: str) -> dict[str, Any]:
        info = self.rt.worker_info(wid)
        info["version_history"] = versions.version_history(self.rt, wid)
        return info

    async def worker(self, request: Request) -> Response:
        info = await self._blocking(self._worker_show, self._worker_id(request))
        return JSONResponse(_jsonable(info))

    @staticmethod
    def call_fields(body: dict[str, Any]) -> tuple[str, list[str], list[tuple[str, str]]]:
        """(function, args, env) of an invoke or enqueue body, checked."""
        function, args = body.get("function"), body.get("args", [])
        if not isinstance(function, str) or not function:
            raise ApiError(400, "bad-argument", "body needs \"function\": a string")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ApiError(400, "bad-argument",
                           "\"args\" should be a list of strings (as on the command line)")
        env = body.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ApiError(400, "bad-argument", "\"env\" should be an object of strings")
        return function, args, list(env.items())

    async def invoke(self, request: Request) -> Response:
        wid = self._worker_id(request)
        body = await self._json(request)
        function, args, env = self.call_fields(body)
        key = request.headers.get("idempotency-key")
        chunks: list[tuple[int, bytes]] = []
        try:
            res = await self._blocking(
                self.rt.invoke, wid, function, args, idempotency_key=key,
                output=_collect(chunks), env=env,
                durable=not body.get("ephemeral", False))
        except Suspended as s:
            if isinstance(s, WorkerSuspendedError):
                raise
            return JSONResponse({"status": "suspended", "worker": s.worker_id,
                                 "promise": s.promise, "until_ns": s.until_ns,
                                 **_output(chunks)}, status_code=202)
        return _JsonBody({
            "status": "ok", "worker": wid, "function": res.function, "oplog_index": res.index,
            "results": typed_json(res.results),
            **({"value": res.json} if res.json is not None else {}),
            "seconds": res.seconds, "deduplicated": res.deduplicated,
            "recovery": vars(res.recovery) if res.recovery else None, **_output(chunks)})

    async def oplog(self, request: Request) -> Response:
        """A page of entries from ``start``; ``kind`` (comma-separated) and ``q`` (text
        in the entry's JSON, case-insensitive) filter it. With a filter, the header
        X-Next-Start says where the next page begins (absent at the end)."""
        wid = self._worker_id(request)
        start = self._int_param(request, "start", 1, 1, 1 << 62)
        limit = self._int_param(request, "limit", 100, 1, 1000)
        page = await self._blocking(oplog_page, self.rt, wid, start, limit,
                                    request.query_params.get("kind"),
                                    request.query_params.get("q"))
        resp = JSONResponse(page.entries)
        if page.next_start is not None:
            resp.headers["X-Next-Start"] = str(page.next_start)
        return resp

    async def interrupt(self, request: Request) -> Response:
        wid = self._worker_id(request)
        pending = await self._blocking(self.rt.interrupt, wid)
        return JSONResponse({"worker": wid, "abandoned": pending})

    async def resume(self, request: Request) -> Response:
        wid = self._worker_id(request)
        chunks: list[tuple[int, bytes]] = []
        try:
            report = await self._blocking(self.rt.resume, wid,
                                          _collect(chunks))
        except Suspended as s:
            if isinstance(s, WorkerSuspendedError):
                raise
            return JSONResponse({"status": "suspended", "worker": wid, "promise": s.promise,
                                 "until_ns": s.until_ns, **_output(chunks)}, status_code=202)
        return JSONResponse(_jsonable({"status": "ok", "worker": wid,
                                       "recovery": vars(report) if report else None,
                                       **_output(chunks)}))

    async def delete_worker(self, request: Request) -> Response:
        wid = self._worker_id(request)
        await self._blocking(self.rt.delete_worker, wid)
        return JSONResponse({"deleted": wid})

    async def promises(self, request: Request) -> Response:
        return JSONResponse(_jsonable(await self._blocking(self.rt.list_promises)))

    async def complete_promise(self, request: Request) -> Response:
        pid = request.path_params["id"]
        body = await self._json(request)
        data = body.get("data", "")
        if not isinstance(data, str):
            raise ApiError(400, "bad-argument", "\"data\" should be a string")
        if await self._blocking(self.rt.store.get_promise, pid) is None:
            raise ApiError(404, "not-found",
                           f"no promise {pid!r} (see `golemish promise list`)")
        chunks: list[tuple[int, bytes]] = []
        p, outcome = await self._blocking(self.rt.complete_promise, pid, data.encode(),
                                          _collect(chunks))
        if isinstance(outcome, Suspended):
            return JSONResponse({"promise": pid, "worker": p["worker"], "status": "suspended",
                                 "until_ns": outcome.until_ns,
                                 "next_promise": outcome.promise, **_output(chunks)})
        return JSONResponse(_jsonable({
            "promise": pid, "worker": p["worker"], "status": "ok",
            "finished": getattr(outcome, "finished", None), **_output(chunks)}))


def _collect(chunks: list[tuple[int, bytes]]) -> Deferred:
    """Output for the response: shown after the invocation's end has been committed, so
    it needs no commit of its own (see journal.Deferred)."""
    return Deferred(lambda s, d: chunks.append((s, bytes(d))))


def _output(chunks: list[tuple[int, bytes]]) -> dict[str, str]:
    out = {}
    for stream, name in ((1, "stdout"), (2, "stderr")):
        data = b"".join(d for s, d in chunks if s == stream)
        if data:
            out[name] = data.decode("utf-8", "replace")
    return out


def _guarded(fn: Handler) -> Handler:
    """Every failure becomes a JSON error with a one-line message."""
    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except ApiError as e:
            return error_response(e.status, e.code, e.message)
        except Exception as e:  # noqa: BLE001 - classified, never a traceback
            status, code = _classify(e)
            return error_response(status, code, _one_line(e))
    return wrapper


def build_app(rt: Runtime, *, token: str | None = None, threads: int = 64,
              state: ServerState | None = None,
              metrics: Metrics | None = None,
              poke: Callable[[], None] = lambda: None) -> ASGIApp:
    """The ASGI application for ``rt``; with ``token`` every call needs it (but the
    console's static shell). ``state`` (a manage.ServerState) is what `server status`
    reports; its ``stopping`` is set when the server begins to drain: open event
    streams (live logs, the console's) end then, so that they do not hold the drain
    up. ``metrics`` is the observer ``rt`` was opened with (a new one only has the
    scrape-time gauges); ``poke`` wakes the scheduler after an enqueue.
    """
    state = state or ServerState()
    api = Api(rt, threads=threads)
    if metrics is None:
        metrics = Metrics()
        metrics.attach(rt)

    async def scrape(request: Request) -> Response:
        return Response(await api._blocking(metrics.render), media_type=METRICS_TYPE)

    async def docs(request: Request) -> Response:
        return Response(docs_page(), media_type="text/html; charset=utf-8")

    w = "/workers/{component}/{name}"
    routes = [
        Route("/metrics", _guarded(scrape), methods=["GET"]),
        Route("/docs", _guarded(docs), methods=["GET"]),
        *(Route(path, _guarded(fn), methods=m) for path, fn, m in
          [*worker_routes.routes(api), *invocation_routes.routes(api, poke)]),
        Route("/health", _guarded(api.health), methods=["GET"]),
        Route("/openapi.json", _guarded(api.openapi), methods=["GET"]),
        Route("/components", _guarded(api.deploy), methods=["POST"]),
        Route("/components", _guarded(api.components), methods=["GET"]),
        Route("/components/{name}", _guarded(api.component), methods=["GET"]),
        Route("/workers", _guarded(api.workers), methods=["GET"]),
        Route(w, _guarded(api.worker), methods=["GET"]),
        Route(w, _guarded(api.delete_worker), methods=["DELETE"]),
        Route(w + "/invoke", _guarded(api.invoke), methods=["POST"]),
        Route(w + "/oplog", _guarded(api.oplog), methods=["GET"]),
        Route(w + "/interrupt", _guarded(api.interrupt), methods=["POST"]),
        Route(w + "/resume", _guarded(api.resume), methods=["POST"]),
        Route("/promises", _guarded(api.promises), methods=["GET"]),
        Route("/promises/{id:path}/complete", _guarded(api.complete_promise), methods=["POST"]),
        *manage_routes(api, state),
        *console_routes(api, state.stopping, _guarded),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "no-route", 405: "method-not-allowed"}.get(exc.status_code, "http")
        msg = {404: f"no route {request.method} {request.url.path} (see /openapi.json)",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(
            exc.status_code, str(exc.detail))
        return error_response(exc.status_code, code, msg)

    async def internal(request: Request, exc: Exception) -> Response:
        return error_response(500, "internal", _one_line(exc))

    app: ASGIApp = Starlette(routes=routes, exception_handlers={
        HTTPException: http_error, Exception: internal})
    app = InvokeFastPath(app, _guarded(api.invoke))
    if token:
        app = BearerAuth(app, token, PUBLIC_PATHS)
    return app
