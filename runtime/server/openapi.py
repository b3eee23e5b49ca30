"""The OpenAPI 3 document of the server's routes, kept by hand next to app.py.

tests/integration/test_server.py checks that it names exactly the routes the
application serves, and tests/integration/test_server_fuzz.py fuzzes the server
against it with schemathesis (no 5xx, responses match these schemas).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

_OBJ: dict[str, Any] = {"type": "object", "additionalProperties": True}
_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}
_NUM = {"type": "number"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props,
            "additionalProperties": True, **extra}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_OUTPUT = {"stdout": _STR, "stderr": _STR}
_TYPED = _obj(["type", "value"], {"type": _STR, "value": {}})
#: One server-sent event (an event stream's schema describes each event).
_SSE_EVENT = _obj([], {"event": _STR, "data": _STR, "id": _STR, "retry": _INT})

SCHEMAS: dict[str, Any] = {
    "Error": _obj(["error"], {"error": _obj(["code", "message"], {
        "code": {**_STR, "description": "stable, e.g. not-found, bad-argument, exists, "
                                        "invocation-failed:trap"},
        "message": {**_STR, "description": "the one-line message the CLI prints"}})}),
    "Component": _obj(["name", "version", "hash"], {
        "name": _STR, "version": _INT, "hash": _STR, "size": _INT, "model": _STR,
        "wit": _nullable({**_STR, "description": "the WIT world, if deployed with one"}),
        "exports": {"type": "array", "items": {"type": "array"}},
        "imports": {"type": "array", "items": {"type": "array"}},
        "http_allow": _STRS}),
    "Deployed": {"allOf": [_ref("Component"), _obj(["created"], {"created": _BOOL})]},
    "Worker": _obj(["id", "component", "version", "status"], {
        "id": _STR, "component": _STR, "version": _INT,
        "status": {**_STR, "description": "idle, interrupted, suspended or failed"},
        "oplog_length": _INT, "invocations": _INT, "snapshot_policy": _STR,
        "memory_limit": _INT, "time_limit": _NUM, "snapshots": _INT,
        "http_allow": _STRS, "version_history": {"type": "array"}}),
    "WorkerCreate": _obj(["component", "name"], {
        "component": _STR, "name": _STR,
        "args": {**_STRS, "description": "WASI arguments (argv), fixed for the worker's life"},
        "env": {"type": "object", "additionalProperties": _STR,
                "description": "WASI environment, fixed for the worker's life"},
        "memory_limit": {**_INT, "minimum": 65536, "maximum": 4 << 30,
                         "description": "bytes"},
        "time_limit": {**_NUM, "minimum": 0.01, "maximum": 86400,
                       "description": "seconds per invocation"},
        "ephemeral": {**_BOOL, "description": "no oplog: nothing recorded or recovered"}},
        additionalProperties=False),
    "Call": _obj(["function"], {
        "function": _STR,
        "args": {**_STRS, "description": "as on the command line: numbers, or WAVE values"},
        "env": {"type": "object", "additionalProperties": _STR,
                "description": "environment of a worker this call creates"},
        "ephemeral": _BOOL}),
    "Enqueue": {"allOf": [_ref("Call"), {"type": "object", "properties": {
        "at": {"oneOf": [_STR, _NUM], "description": "when: ISO 8601 time or unix seconds"},
        "delay_s": {**_NUM, "minimum": 0, "description": "when: seconds from now"}}}]},
    "InvokeResult": _obj(["status", "worker", "results", "oplog_index"], {
        "status": {"type": "string", "enum": ["ok"]}, "worker": _STR, "function": _STR,
        "oplog_index": _INT, "results": {"type": "array", "items": _TYPED}, "value": {},
        "seconds": _NUM, "deduplicated": _BOOL, "recovery": _nullable(_OBJ), **_OUTPUT}),
    "Suspended": _obj(["status", "worker"], {
        "status": {"type": "string", "enum": ["suspended"]}, "worker": _STR,
        "promise": _nullable(_STR), "until_ns": _nullable(_INT), **_OUTPUT}),
    "Invocation": _obj(["id", "worker", "function", "args", "state", "key"], {
        "id": _STR, "worker": _STR, "function": _STR, "args": _STRS,
        "env": {"type": "object", "additionalProperties": _STR},
        "state": {"type": "string",
                  "enum": ["queued", "running", "suspended", "ok", "failed"]},
        "idempotency_key": _nullable(_STR),
        "key": {**_STR, "description": "the key it runs under (given, or derived from id)"},
        "due_at": _NUM, "created_at": _NUM, "started_at": _NUM, "finished_at": _NUM,
        "results": {"type": "array", "items": _TYPED}, "value": {},
        "error": _obj(["code", "message"], {"code": _STR, "message": _STR})}),
    "OplogEntry": _obj(["index", "kind"], {"index": _INT, "kind": _STR}),
    "Config": _obj(["worker", "snapshot_policy", "http_allow"], {
        "worker": _STR, "snapshot_policy": _STR, "http_allow": _STRS,
        "memory_limit": _INT, "time_limit": _NUM}),
    "ConfigChange": _obj([], {
        "snapshot_policy": {**_STR, "description": "adaptive[:S], every:N, interval:S, off"},
        "http_allow": {**_STRS, "description": "the whole allow-list (replaces it)"},
        "allow_http": {**_STRS, "description": "hosts to add"},
        "deny_http": {**_STRS, "description": "hosts to take off"}},
        additionalProperties=False),
    "Snapshot": _obj(["worker", "index", "kind"], {"worker": _STR, "index": _INT,
                                                  "kind": _STR}),
    "Promise": _obj(["id", "worker", "state"], {"id": _STR, "worker": _STR, "state": _STR}),
    "PromiseCompleted": _obj(["promise", "worker", "status"], {
        "promise": _STR, "worker": _STR,
        "status": {"type": "string", "enum": ["ok", "suspended"]}, **_OUTPUT}),
    "Resumed": _obj(["status", "worker"], {
        "status": {"type": "string", "enum": ["ok"]}, "worker": _STR,
        "recovery": _nullable(_OBJ), **_OUTPUT}),
}


def _json(schema: dict[str, Any], description: str = "success") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(op_id: str, tag: str, summary: str, ok: dict[str, Any], *,
        params: list[dict[str, Any]] | None = None, body: Any = None,
        errors: tuple[str, ...] = ("400", "404"), extra: dict[str, Any] | None = None,
        description: str | None = None) -> dict[str, Any]:
    responses = {**ok, **(extra or {})}
    for code in (*errors, "401", "503"):
        responses.setdefault(code, {"$ref": "#/components/responses/Error"})
    op: dict[str, Any] = {"operationId": op_id, "tags": [tag], "summary": summary,
                          "responses": responses}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = body
    return op


def _path(name: str, description: str = "", example: str | None = None) -> dict[str, Any]:
    p = {"name": name, "in": "path", "required": True, "description": description,
         "schema": {"type": "string", "minLength": 1}}
    if example is not None:
        p["example"] = example
    return p


def _query(name: str, schema: dict[str, Any], description: str = "", *,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_W = [_path("component", example="counter"), _path("name", "the worker's name", "a")]
_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
        "schema": {"type": "string"},
        "description": "run at most once per key on this worker"}
def _list(name: str) -> dict[str, Any]:
    return {"200": _json({"type": "array", "items": _ref(name)})}
_RUN_ERRORS = ("400", "404", "409", "413", "422")


@functools.lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    w = "/workers/{component}/{name}"
    return {
        "openapi": "3.0.3",
        "info": {"title": "golemish", "version": "0.1.0",
                 "description": "Durable WebAssembly workers: the API of `golemish serve`."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
            "responses": {"Error": _json(_ref("Error"), "error (JSON, one-line message)")}},
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": _op("health", "server", "Liveness", {"200": _json(_obj(
                ["status"], {"status": _STR, "home": _STR}))}, errors=())},
            "/openapi.json": {"get": _op("openapi", "server", "This document",
                                         {"200": _json(_OBJ)}, errors=())},
            "/docs": {"get": _op("docs", "server", "This document as an HTML page", {
                "200": {"description": "HTML", "content": {"text/html": {"schema": _STR}}}},
                errors=())},
            "/metrics": {"get": _op("metrics", "server", "Prometheus metrics (text format)", {
                "200": {"description": "Prometheus text exposition",
                        "content": {"text/plain": {"schema": _STR}}}}, errors=())},
            "/components": {
                "get": _op("listComponents", "components", "List components",
                           _list("Component"), errors=()),
                "post": _op(
                    "deploy", "components", "Deploy a component version",
                    {"201": _json(_ref("Deployed"), "a new version"),
                     "200": _json(_ref("Deployed"), "these bytes were deployed before")},
                    params=[_query("name", {"type": "string", "minLength": 1},
                                   "component name", required=True),
                            _query("stackful", {"type": "boolean"})],
                    body={"required": True, "content": {
                        "application/wasm": {"schema": {"type": "string", "format": "binary"}},
                        "application/json": {"schema": _obj(["wasm"], {
                            "wasm": {"type": "string", "format": "byte"},
                            "wit": _STR, "stackful": _BOOL, "allow_http": _STRS})}}},
                    errors=("400", "413"))},
            "/components/{name}": {"get": _op(
                "showComponent", "components", "Show a component version (exports, imports, WIT)",
                {"200": _json(_ref("Component"))},
                params=[_path("name"), _query("version", {"type": "integer", "minimum": 0},
                                              "default: the latest")])},
            "/workers": {
                "get": _op("listWorkers", "workers", "List workers", _list("Worker"),
                           params=[_query("component", _STR), _query("status", _STR),
                                   _query("version", {"type": "integer", "minimum": 0})],
                           errors=("400",)),
                "post": _op("createWorker", "workers", "Create a worker without invoking it",
                            {"201": _json(_ref("Worker"))}, body=_body(_ref("WorkerCreate")),
                            errors=("400", "404", "409", "413", "422"))},
            w: {"get": _op("showWorker", "workers", "Show a worker", {"200": _json(_ref("Worker"))},
                           params=_W),
                "delete": _op("deleteWorker", "workers", "Delete a worker and its oplog",
                              {"200": _json(_obj(["deleted"], {"deleted": _STR}))}, params=_W)},
            w + "/invoke": {"post": _op(
                "invoke", "invocations", "Invoke a function and wait (creates the worker)",
                {"200": _json(_ref("InvokeResult")),
                 "202": _json(_ref("Suspended"), "the invocation waits (sleep, promise)")},
                params=[*_W, _KEY], body=_body(_ref("Call")), errors=_RUN_ERRORS)},
            w + "/invocations": {"post": _op(
                "enqueue", "invocations", "Enqueue or schedule an invocation",
                {"202": _json(_ref("Invocation"), "stored; runs when due"),
                 "200": _json(_ref("Invocation"), "this Idempotency-Key was enqueued before")},
                params=[*_W, _KEY], body=_body(_ref("Enqueue")), errors=("400", "404", "413"),
                description="Checked now (function, arguments), run by the server when due, "
                            "in due then arrival order per worker, exactly once.")},
            "/invocations": {"get": _op(
                "listInvocations", "invocations", "Enqueued and scheduled invocations",
                _list("Invocation"),
                params=[_query("worker", _STR), _query("state", {"type": "string", "enum": [
                    "queued", "running", "suspended", "ok", "failed"]}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})],
                errors=("400",))},
            "/invocations/{id}": {"get": _op(
                "showInvocation", "invocations", "An enqueued invocation's state and result",
                {"200": _json(_ref("Invocation"))}, params=[_path("id")], errors=("404",))},
            w + "/oplog": {"get": _op(
                "oplog", "workers", "A page of the worker's oplog",
                {"200": {**_json({"type": "array", "items": _ref("OplogEntry")}),
                         "headers": {"X-Next-Start": {"schema": _INT, "description":
                                                 "with a filter: where the next page starts"}}}},
                params=[*_W,
                        _query("start", {"type": "integer", "minimum": 1}, "first index"),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                        _query("kind", _STR, "entry kinds, comma-separated (invoke, host-call, "
                                             "log, snapshot, ...)"),
                        _query("q", _STR, "text to find in the entry (case-insensitive)")])},
            w + "/interrupt": {"post": _op(
                "interrupt", "workers", "Abandon the pending invocation",
                {"200": _json(_obj(["worker", "abandoned"], {
                    "worker": _STR, "abandoned": _nullable(_STR)}))}, params=_W)},
            w + "/resume": {"post": _op(
                "resume", "workers", "Recover the worker, finishing a cut-off invocation",
                {"200": _json(_ref("Resumed")), "202": _json(_ref("Suspended"))},
                params=_W, errors=("400", "404", "409", "422"))},
            w + "/snapshot": {"post": _op(
                "snapshot", "workers", "Take a snapshot now", {"201": _json(_ref("Snapshot"))},
                params=_W, body=_body(_obj([], {"full": _BOOL}), required=False),
                errors=("400", "404", "409", "413", "422"))},
            w + "/config": {
                "get": _op("getConfig", "workers", "The worker's settings",
                           {"200": _json(_ref("Config"))}, params=_W),
                "put": _op("putConfig", "workers", "Change the worker's settings",
                           {"200": _json(_ref("Config"))}, params=_W,
                           body=_body(_ref("ConfigChange")), errors=("400", "404", "413"))},
            "/promises": {"get": _op("listPromises", "promises", "List promises",
                                     _list("Promise"), errors=())},
            "/promises/{id}/complete": {"post": _op(  # id may contain /
                "completePromise", "promises", "Complete a promise and resume its worker",
                {"200": _json(_ref("PromiseCompleted"))}, params=[_path("id")],
                body=_body(_obj([], {"data": _STR}), required=False),
                errors=("400", "404", "409", "413", "422"))},
            **manage_paths(),
            **console_paths(),
        },
    }


def openapi_document() -> dict[str, Any]:
    return copy.deepcopy(_document())


def manage_paths() -> dict[str, Any]:
    """What the CLI does through a server besides the routes above (server/manage.py,
    server/logs.py): server status, live logs, the oplog as the CLI prints it,
    versions (revert, fork, update), component config and deletion."""
    w = "/workers/{component}/{name}"
    c = "/components/{name}/versions/{version}"
    cv = [_path("name"), _path("version", "a version number", "0")]
    event = _obj(["index", "stream", "text", "b64"], {
        "index": _INT, "stream": {"type": "string", "enum": ["stdout", "stderr"]},
        "text": _STR, "b64": {**_STR, "format": "byte"}})
    http_lists = {"allow_http": {**_STRS, "description": "hosts to add"},
                  "deny_http": {**_STRS, "description": "hosts to take off"}}
    return {
        "/server": {"get": _op("serverStatus", "server", "Server status: pid, uptime, "
                               "resident workers, eviction settings", {"200": _json(_obj(
                                   ["pid", "url", "workers_resident"], {
                                       "url": _STR, "pid": _INT, "home": _STR,
                                       "started_at": _NUM, "uptime_s": _NUM,
                                       "workers_resident": _INT, "resident": _STRS,
                                       "evicted_total": _INT,
                                       "idle_timeout_s": _nullable(_NUM),
                                       "max_memory": _nullable(_INT), "stopping": _BOOL}))},
                               errors=())},
        w + "/logs": {"get": _op(
            "logs", "workers", "The worker's output, or with follow a live event stream of it",
            {"200": {"description": "JSON output events; with follow=true an event stream "
                                    "(event 'log', id = oplog index)",
                     "content": {"application/json": {"schema": {"type": "array",
                                                                  "items": event}},
                                 "text/event-stream": {"schema": _SSE_EVENT}}}},
            params=[*_W, _query("from", {"type": "integer", "minimum": 1}, "first index"),
                    _query("follow", _BOOL, "keep the stream open for new output"),
                    {"name": "Last-Event-ID", "in": "header", "required": False,
                     "schema": {"type": "string", "pattern": "^[0-9]+$"},
                     "description": "resume after this oplog index"}])},
        w + "/oplog/text": {"get": _op(
            "oplogText", "workers", "Oplog entries as the CLI prints them",
            {"200": _json({"type": "array", "items": _obj(
                ["index", "name", "summary", "skipped"], {
                    "index": _INT, "name": _STR, "entry": _OBJ, "summary": _STR,
                    "skipped": _BOOL})})},
            params=[*_W, _query("start", {"type": "integer", "minimum": 1}, "first index"),
                    _query("end", {"type": "integer", "minimum": 0}, "last index (0: the end)"),
                    _query("full", _BOOL, "summaries not cut")])},
        w + "/revert": {"post": _op(
            "revert", "versions", "Revert the worker to an earlier state", {"200": _json(_OBJ)},
            params=_W, body=_body(_obj([], {
                "to_index": {"type": "integer", "minimum": 1},
                "last_invocations": {"type": "integer", "minimum": 1}})),
            errors=_RUN_ERRORS, description="Exactly one of to_index and last_invocations.")},
        w + "/fork": {"post": _op(
            "fork", "versions", "Fork the worker (at an oplog index) into a new worker",
            {"201": _json(_OBJ)}, params=_W, body=_body(_obj(["new"], {
                "new": {**_STR, "description": "the new worker's id, COMPONENT/NAME"},
                "at": {"type": "integer", "minimum": 1}})),
            errors=_RUN_ERRORS)},
        w + "/update": {"post": _op(
            "update", "versions", "Move the worker to another component version",
            {"200": _json(_OBJ)}, params=_W, body=_body(_obj(["version"], {
                "version": {"type": "integer", "minimum": 0},
                "mode": {"type": "string", "enum": ["auto", "manual"]}})),
            errors=_RUN_ERRORS)},
        "/components/{name}/config": {"post": _op(
            "configureComponent", "components", "Change a component version's HTTP allow-list",
            {"200": _json(_ref("Component"))}, params=[_path("name")],
            body=_body(_obj([], {"version": {"type": "integer", "minimum": 0}, **http_lists}),
                       required=False),
            errors=("400", "404", "413"))},
        c: {"delete": _op(
            "deleteComponentVersion", "components",
            "Delete one component version (refused while workers use it)",
            {"200": _json(_obj(["deleted", "version"], {"deleted": _STR, "version": _INT}))},
            params=cv, errors=("400", "404", "409"))},
    }


def console_paths() -> dict[str, Any]:
    """The web console's pages (no token) and its JSON routes (runtime/server/console_api.py)."""
    w = "/console/api/workers/{component}/{name}"
    page = {"description": "a page of the console", "content": {"text/html": {
        "schema": _STR}}}
    start = _query("start", {"type": "integer", "minimum": 1}, "first index")
    limit = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})
    return {
        "/": {"get": {"operationId": "console", "tags": ["console"],
                      "summary": "The web console (static; asks for the token itself)",
                      "security": [], "responses": {"200": page}}},
        "/console/assets/{name}": {"get": {
            "operationId": "consoleAsset", "tags": ["console"],
            "summary": "A static file of the console", "security": [],
            "parameters": [_path("name")],
            "responses": {"200": {"description": "the file", "content": {
                t: {"schema": _STR} for t in ("text/html", "text/javascript", "text/css",
                                              "image/svg+xml")}},
                "404": {"$ref": "#/components/responses/Error"}}}},
        "/console/api/residency": {"get": _op(
            "consoleResidency", "console",
            "Workers loaded in this server and their last recovery",
            {"200": _json(_OBJ)}, errors=())},
        "/console/api/summary": {"get": _op(
            "consoleSummary", "console", "Counts computed from the store",
            {"200": _json(_OBJ)}, errors=())},
        "/console/api/components/{name}/functions": {"get": _op(
            "consoleFunctions", "console",
            "Callable functions and their signatures (WIT or core)",
            {"200": _json(_obj(["component", "version", "functions"], {
                "component": _STR, "version": _INT,
                "functions": {"type": "array", "items": _OBJ}}))},
            params=[_path("name"), _query("version", {"type": "integer", "minimum": 0})])},
        w + "/oplog": {"get": _op(
            "consoleOplog", "console", "A page of the oplog, filtered by kind and searched",
            {"200": _json(_obj(["entries", "last_index", "next"], {
                "entries": {"type": "array", "items": _ref("OplogEntry")},
                "last_index": _INT, "next": _nullable(_INT)}))},
            params=[*_W, start, limit, _query("kind", _STR), _query("q", _STR)])},
        w + "/snapshots": {"get": _op(
            "consoleSnapshots", "console", "Every snapshot entry and whether it is kept",
            {"200": _json({"type": "array", "items": _OBJ})}, params=_W)},
    }
