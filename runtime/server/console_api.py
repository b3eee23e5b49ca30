"""The web console: its static pages and the few JSON routes it needs beyond the API.

Pages (``console/``: index.html, app.js, style.css; no build step) are served at ``/``
and ``/console/assets/NAME``. They hold no data and are the same on every install, so
they load without the bearer token (a browser cannot send an Authorization header on
navigation); the page then asks for the token, keeps it in sessionStorage and sends it
on every call, and every route below, like the rest of the API, refuses a call
without it (401). Pages are sent with a strict Content-Security-Policy: guest output
and oplog text are shown as text, never as markup, and no script but ours runs.

Routes under ``/console/api`` (JSON); for everything else (live output, snapshot,
revert, invoke, …) the pages call the API's own routes:

- ``GET  residency``: loaded workers and their last recovery (mode, when, how long);
- ``GET  summary``: counts computed from the store (workers by status, oplog entries,
  snapshots and their bytes, promises), shown beside the Prometheus metrics;
- ``GET  components/{name}/functions?version=N``: callable functions and signatures;
- ``GET  workers/{c}/{n}/oplog?start&limit&kind&q``: a page of entries, filtered by
  kind and searched for text, each with its one-line summary;
- ``GET  workers/{c}/{n}/snapshots``: every Snapshot entry, and whether it is kept;
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from golemish.oplog import Snapshot

from ..errors import NotFoundError
from ..typed.wit_types import format_type
from .oplog_page import parse_kinds, scan

if TYPE_CHECKING:
    from .app import Api, Handler

ASSETS = Path(__file__).resolve().parent / "console"
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
#: Paths that need no token: the static shell (GET only; see BearerAuth).
PUBLIC_PATHS = ("/", "/console/assets/")


def asset_names() -> dict[str, Path]:
    return {p.name: p for p in ASSETS.iterdir()
            if p.suffix in _CONTENT_TYPES and re.fullmatch(r"[a-z0-9_.-]+", p.name)}


class Console:
    """Console routes over the API's handlers (same runtime, threads and errors)."""

    def __init__(self, api: Api, stopping: threading.Event) -> None:
        self.api, self.rt, self.stopping = api, api.rt, stopping
        self.assets = asset_names()

    # -- static pages -------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        return self._asset("index.html")

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.assets:
            return JSONResponse({"error": {"code": "no-route",
                                           "message": f"no console asset {name!r}"}}, 404)
        return self._asset(name)

    def _asset(self, name: str) -> Response:
        path = self.assets[name]
        return Response(path.read_bytes(), media_type=_CONTENT_TYPES[path.suffix],
                        headers=_HEADERS)

    # -- JSON ----------------------------------------------------------------------
    def _residency(self) -> dict[str, Any]:
        out = {}
        for wid, (report, at_ns) in self.rt.resident().items():
            out[wid] = {"resident": True, "recovery": None if report is None else {
                "mode": report.mode, "at": at_ns / 1e9, "seconds": report.seconds,
                "entries": report.entries, "snapshot_index": report.snapshot_index,
                "replayed_invocations": report.replayed_invocations,
                "fallbacks": report.fallbacks, "describe": report.describe()}}
        return out

    async def residency(self, request: Request) -> Response:
        return JSONResponse(await self.api._blocking(self._residency))

    def _summary(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        entries = snapshots = stored = 0
        for wid in self.rt.worker_ids():
            try:
                info = self.rt.worker_info(wid)
            except NotFoundError:  # deleted meanwhile
                continue
            by_status[info["status"]] = by_status.get(info["status"], 0) + 1
            entries += info["oplog_length"]
            snapshots += info["snapshots"]
            stored += info.get("snapshot_stored_bytes") or 0
        promises: dict[str, int] = {}
        for p in self.rt.list_promises():
            promises[p["state"]] = promises.get(p["state"], 0) + 1
        return {"workers": sum(by_status.values()), "workers_by_status": by_status,
                "resident": len(self.rt.resident()), "oplog_entries": entries,
                "snapshots_kept": snapshots, "snapshot_stored_bytes": stored,
                "promises": promises, "components": len(self.rt.list_components())}

    async def summary(self, request: Request) -> Response:
        return JSONResponse(await self.api._blocking(self._summary))

    def _functions(self, name: str, version: int | None) -> dict[str, Any]:
        meta = self.rt.component(name, version)
        iface = self.rt.modules.interface(meta)
        funcs = []
        if iface is not None:
            for f in iface.wit.functions.values():
                funcs.append({"name": f.name, "signature": str(f), "typed": True,
                              "params": [{"name": n, "type": format_type(t)}
                                         for n, t in f.params],
                              "result": None if f.result is None else format_type(f.result)})
        else:
            for fname, sig in sorted(self.rt.modules.signatures(meta).items()):
                if fname.startswith("_initialize") or fname == "cabi_realloc":
                    continue
                funcs.append({"name": fname, "signature": f"{fname}{sig}", "typed": False,
                              "params": [{"name": f"arg{i}", "type": t}
                                         for i, t in enumerate(sig.params)],
                              "result": ", ".join(sig.results) or None})
        return {"component": meta["name"], "version": meta["version"], "functions": funcs}

    async def functions(self, request: Request) -> Response:
        version = self.api._int_param(request, "version", -1, 0, 1 << 31)
        body = await self.api._blocking(self._functions, request.path_params["name"],
                                        None if version == -1 else version)
        return JSONResponse(body)

    def _oplog(self, wid: str, start: int, limit: int, kinds: str | None,
               query: str | None) -> dict[str, Any]:
        found = scan(self.rt, wid, start, limit, parse_kinds(kinds), query)
        entries = [{**item, "summary": e.summary()} for _, e, item in found.rows]
        return {"entries": entries, "last_index": found.last_index, "next": found.next_start}

    async def oplog(self, request: Request) -> Response:
        wid = self.api._worker_id(request)
        start = self.api._int_param(request, "start", 1, 1, 1 << 62)
        limit = self.api._int_param(request, "limit", 50, 1, 1000)
        kinds = request.query_params.get("kind") or None
        query = request.query_params.get("q", "").strip().lower() or None
        body = await self.api._blocking(self._oplog, wid, start, limit, kinds, query)
        return JSONResponse(json.loads(json.dumps(body, default=str)))

    def _snapshots(self, wid: str) -> list[dict[str, Any]]:
        if self.rt.store.get_worker(wid) is None:
            raise NotFoundError(f"no worker {wid}")
        log = self.rt.store.oplog(wid)
        kept = set(self.rt.store.snapshots.indexes(wid))
        out = []
        for index, kind in log.kinds():
            if kind != Snapshot.KIND:
                continue
            e = log.get(index)
            out.append({"index": index, "memory_size": e.memory_size,
                        "changed_pages": e.changed_pages, "stored_bytes": e.stored_bytes,
                        "tracker": e.tracker, "duration_ms": e.duration_ns / 1e6,
                        "kept": index in kept})
        return out

    async def snapshots(self, request: Request) -> Response:
        wid = self.api._worker_id(request)
        return JSONResponse(await self.api._blocking(self._snapshots, wid))


def console_routes(api: Api, stopping: threading.Event, guarded: Any) -> list[Route]:
    c = Console(api, stopping)
    g: Any = guarded
    w = "/console/api/workers/{component}/{name}"
    table: list[tuple[str, Handler, str]] = [
        ("/", c.index, "GET"),
        ("/console/assets/{name}", c.asset, "GET"),
        ("/console/api/residency", c.residency, "GET"),
        ("/console/api/summary", c.summary, "GET"),
        ("/console/api/components/{name}/functions", c.functions, "GET"),
        (w + "/oplog", c.oplog, "GET"),
        (w + "/snapshots", c.snapshots, "GET"),
    ]
    return [Route(path, g(fn), methods=[m]) for path, fn, m in table]
