"""Worker routes beyond show/list/invoke: create, snapshot, config.

``POST /workers`` creates a worker without invoking it, with the WASI arguments,
environment and limits that its Create entry fixes for its life (the CLI sets
env and limits on the first `invoke`; arguments only this way).
``POST .../snapshot`` takes a snapshot now (`worker snapshot`); ``GET`` and
``PUT .../config`` read and change the snapshot policy and HTTP allow-list
(`worker config`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from golemish.oplog import GolemishError

from ..errors import ArgumentError, ComponentError
from ..executor import parse_worker_id
from ..snapshot.policy import SnapshotPolicy

if TYPE_CHECKING:
    from .app import Api

#: The largest memory cap a worker may ask for (the engine's 32-bit address space).
MAX_MEMORY_LIMIT = 4 << 30


def _strings(body: dict[str, Any], name: str) -> list[str]:
    v = body.get(name, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ArgumentError(f"\"{name}\" should be a list of strings")
    return v


def _number(body: dict[str, Any], name: str, lo: float, hi: float, integer: bool) -> Any:
    v = body.get(name)
    if v is None:
        return None
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or not lo <= v <= hi:
        raise ArgumentError(f"\"{name}\" should be {'an integer' if integer else 'a number'} "
                            f"from {lo:g} to {hi:g}")
    return v


def config_of(info: dict[str, Any]) -> dict[str, Any]:
    return {"worker": info["id"], "snapshot_policy": info["snapshot_policy"],
            "http_allow": info.get("http_allow", []),
            "memory_limit": info["memory_limit"], "time_limit": info["time_limit"]}


def routes(api: Api) -> list[tuple[str, Any, list[str]]]:
    rt = api.rt

    async def create(request: Request) -> Response:
        body = await api._json(request)
        comp, name = body.get("component"), body.get("name")
        if not isinstance(comp, str) or not isinstance(name, str):
            raise ArgumentError("body needs \"component\" and \"name\": strings")
        wid = f"{comp}/{name}"
        try:
            parse_worker_id(wid)
        except ComponentError as e:  # a bad name is the caller's mistake, as elsewhere
            raise ArgumentError(str(e)) from None
        args = _strings(body, "args")
        env = body.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ArgumentError("\"env\" should be an object of strings")
        ephemeral = body.get("ephemeral", False)
        if not isinstance(ephemeral, bool):
            raise ArgumentError("\"ephemeral\" should be true or false")
        memory = _number(body, "memory_limit", 1 << 16, MAX_MEMORY_LIMIT, True)
        time_limit = _number(body, "time_limit", 0.01, 86400, False)

        def run() -> dict[str, Any]:
            rt.create_worker(wid, args=args, env=list(env.items()), durable=not ephemeral,
                             memory_limit=memory, time_limit=time_limit)
            return api._worker_show(wid)
        return JSONResponse(api.jsonable(await api._blocking(run)), status_code=201)

    async def snapshot(request: Request) -> Response:
        wid = api._worker_id(request)
        body = await api._json(request)
        full = body.get("full", False)
        if not isinstance(full, bool):
            raise ArgumentError("\"full\" should be true or false")

        def run() -> dict[str, Any]:
            entry = rt.snapshot(wid, full=full)
            meta = rt.store.get_worker(wid) or {}
            if entry is None:
                raise GolemishError(f"worker {wid} cannot be snapshotted: "
                                    f"{meta.get('snapshots_disabled', 'it is ephemeral')}")
            return {"worker": wid, "index": rt.store.oplog(wid).last_index, **entry.to_json(),
                    "summary": entry.summary()}
        return JSONResponse(api.jsonable(await api._blocking(run)), status_code=201)

    async def get_config(request: Request) -> Response:
        wid = api._worker_id(request)
        return JSONResponse(api.jsonable(config_of(await api._blocking(rt.worker_info, wid))))

    async def put_config(request: Request) -> Response:
        wid = api._worker_id(request)
        body = await api._json(request)
        unknown = set(body) - {"snapshot_policy", "http_allow", "allow_http", "deny_http"}
        if unknown:
            raise ArgumentError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        text = body.get("snapshot_policy")
        if text is not None and not isinstance(text, str):
            raise ArgumentError("\"snapshot_policy\" should be text, e.g. every:10")
        policy = SnapshotPolicy.parse(text) if text is not None else None
        allow, deny = _strings(body, "allow_http"), _strings(body, "deny_http")
        replace = body.get("http_allow")

        def run() -> dict[str, Any]:
            a, d = list(allow), list(deny)
            if replace is not None:  # the whole list: take off what is not in it
                new = _strings(body, "http_allow")
                current = rt.worker_info(wid).get("http_allow", [])
                d += [r for r in current if r not in new]
                a += new
            rt.configure(wid, snapshot_policy=policy, allow_http=a, deny_http=d)
            return config_of(rt.worker_info(wid))
        return JSONResponse(api.jsonable(await api._blocking(run)))

    w = "/workers/{component}/{name}"
    return [("/workers", create, ["POST"]),
            (w + "/snapshot", snapshot, ["POST"]),
            (w + "/config", get_config, ["GET"]),
            (w + "/config", put_config, ["PUT"])]
