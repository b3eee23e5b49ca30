"""ASGI wrappers around the API's Starlette app: the bearer token in front of every
route, and the hot invoke route's short cut past the Starlette stack; plus the one
shape of a JSON error both they and the routes answer with."""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class BearerAuth:
    """Refuse every request without ``Authorization: Bearer TOKEN`` (401).

    ``public`` paths (exact, or a prefix when they end in ``/``) are let through for
    GET and HEAD: the console's static shell, which holds no data (console_api.py).
    """

    def __init__(self, app: ASGIApp, token: str, public: tuple[str, ...] = ()) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()
        self.public = public

    def _is_public(self, scope: Scope) -> bool:
        if scope.get("method") not in ("GET", "HEAD"):
            return False
        path = scope.get("path", "")
        return any(path == p or (p.endswith("/") and p != "/" and path.startswith(p))
                   for p in self.public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._is_public(scope):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                resp = error_response(401, "unauthorized",
                                      "missing or wrong bearer token (Authorization header)")
                resp.headers["WWW-Authenticate"] = "Bearer"
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


#: ``POST /workers/{component}/{name}/invoke`` as Starlette's router matches it.
_INVOKE_PATH = re.compile(r"^/workers/(?P<component>[^/]+)/(?P<name>[^/]+)/invoke$")


class InvokeFastPath:
    """The hot route without the Starlette stack in front of it.

    ``POST .../invoke`` goes straight to its handler (the same ``_guarded(api.invoke)``
    the route table holds, with the same path parameters), skipping the error and
    exception middleware, the router's scan of every route and the request/response
    wrappers: about a fifth of the event loop's time per invocation under load. The
    handler turns every exception into a JSON error itself, so those layers had
    nothing to do for it. Anything else goes to ``app`` as before.
    """

    def __init__(self, app: ASGIApp, invoke: Handler) -> None:
        self.app, self.invoke = app, invoke

    @property
    def routes(self) -> Any:
        """The route table (the invoke route among them), as Starlette's."""
        return self.app.routes  # type: ignore[attr-defined]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" \
                and not scope.get("root_path"):
            m = _INVOKE_PATH.match(scope["path"])
            if m is not None:
                scope["path_params"] = m.groupdict()
                response = await self.invoke(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
