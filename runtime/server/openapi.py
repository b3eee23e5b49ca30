"""The OpenAPI 3 document of the server's routes, kept by hand next to app.py.

tests/integration/test_server.py checks that it names exactly the routes the
application serves.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_OBJ = {"type": "object", "additionalProperties": True}


def _op(summary: str, *, params: list[dict[str, Any]] = (), body: Any = None,  # type: ignore[assignment]
        ok: str = "200", errors: tuple[str, ...] = ("400", "404")) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {
        ok: {"description": "success", "content": {"application/json": {"schema": _OBJ}}},
        **{code: _ERROR for code in (*errors, "401", "500")}}}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = body
    return op


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, type_: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": type_}}


_W = [_path("component"), _path("name")]
_INVOKE_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["function"], "properties": {
        "function": {"type": "string"},
        "args": {"type": "array", "items": {"type": "string"},
                 "description": "as on the command line: numbers, or WAVE values"},
        "env": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "environment of a worker this call creates"},
        "ephemeral": {"type": "boolean"}}}}}}


def openapi_document() -> dict[str, Any]:
    from .manage import OPENAPI_PATHS
    doc = _document()
    doc["paths"].update(OPENAPI_PATHS())
    return doc


def _document() -> dict[str, Any]:
    w = "/workers/{component}/{name}"
    return {
        "openapi": "3.0.3",
        "info": {"title": "golemish", "version": "0.1.0",
                 "description": "Durable WebAssembly workers: the API of `golemish serve`."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {
                "schema": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "object", "required": ["code", "message"],
                              "properties": {"code": {"type": "string"},
                                             "message": {"type": "string"}}}}}}}}}},
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": _op("Liveness", errors=())},
            "/openapi.json": {"get": _op("This document", errors=())},
            "/components": {
                "get": _op("List components", errors=()),
                "post": _op("Deploy a component version (the module's bytes as the body)",
                            params=[{**_query("name"), "required": True},
                                    _query("stackful", "boolean")],
                            body={"required": True, "content": {
                                "application/wasm": {
                                    "schema": {"type": "string", "format": "binary"}},
                                "application/json": {"schema": {
                                    "type": "object", "required": ["wasm"], "properties": {
                                        "wasm": {"type": "string", "format": "byte"},
                                        "wit": {"type": "string"},
                                        "stackful": {"type": "boolean"},
                                        "allow_http": {"type": "array",
                                                       "items": {"type": "string"}}}}}}},
                            ok="201", errors=("400", "413"))},
            "/components/{name}": {"get": _op("Show a component", params=[_path("name")])},
            "/workers": {"get": _op("List workers",
                                    params=[_query("component"), _query("status"),
                                            _query("version", "integer")])},
            w: {"get": _op("Show a worker", params=_W),
                "delete": _op("Delete a worker", params=_W)},
            w + "/invoke": {"post": {
                **_op("Invoke a function (creates the worker on first use)",
                      params=[*_W, {"name": "Idempotency-Key", "in": "header",
                                    "required": False, "schema": {"type": "string"}}],
                      body=_INVOKE_BODY, errors=("400", "404", "409", "413", "422", "503")),
            }},
            w + "/oplog": {"get": _op("A page of the worker's oplog", params=[
                *_W, _query("start", "integer"), _query("limit", "integer")])},
            w + "/interrupt": {"post": _op("Abandon the pending invocation", params=_W)},
            w + "/resume": {"post": _op("Recover the worker, finishing a cut-off invocation",
                                        params=_W, errors=("400", "404", "409", "422"))},
            "/promises": {"get": _op("List promises", errors=())},
            "/promises/{id}/complete": {"post": _op(  # id may contain /
                "Complete a promise and resume its worker", params=[_path("id")],
                body={"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"data": {"type": "string"}}}}}},
                errors=("400", "404", "409"))},
        },
    }
