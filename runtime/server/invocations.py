"""Routes of enqueued and scheduled invocations (the queue is runtime/invocations.py).

``POST /workers/{component}/{name}/invocations`` checks the call, stores it and
answers 202 with the invocation's record (its id, state ``queued``); the server's
scheduler runs it when due. ``GET /invocations/{id}`` gives its state and, once
finished, its result or error. An ``Idempotency-Key`` enqueues at most once per
worker (a repeat answers 200 with the first record) and the invocation runs under
that key, so it also deduplicates against direct invocations with the same key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import invocations
from ..errors import ArgumentError, NotFoundError

if TYPE_CHECKING:
    from .app import Api

STATES = ("queued", "running", "suspended", "ok", "failed")


def public(rec: dict[str, Any]) -> dict[str, Any]:
    """A record as the API shows it: times in unix seconds."""
    out = {k: v for k, v in rec.items() if not k.endswith("_ns") and k != "seq"}
    for k in ("due", "created", "started", "finished", "until"):
        if rec.get(f"{k}_ns") is not None:
            out[f"{k}_at"] = rec[f"{k}_ns"] / 1e9
    out["env"] = {k: v for k, v in rec.get("env", [])}
    return out


def _due_ns(body: dict[str, Any], now_s: float) -> int | None:
    at, delay = body.get("at"), body.get("delay_s")
    if at is not None and delay is not None:
        raise ArgumentError("give \"at\" or \"delay_s\", not both")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) \
                or not 0 <= delay <= invocations.MAX_DELAY_S:
            raise ArgumentError("\"delay_s\" should be a number of seconds, 0 to a year")
        return invocations.check_due(now_s + delay, now_s)
    if at is None:
        return None
    if isinstance(at, str):
        return invocations.check_due(invocations.parse_at(at), now_s)
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        raise ArgumentError("\"at\" should be an ISO 8601 time or unix seconds")
    return invocations.check_due(float(at), now_s)


def routes(api: Api, poke: Callable[[], None]) -> list[tuple[str, Any, list[str]]]:
    """(path, handler, methods) for build_app; ``poke`` wakes the scheduler."""

    async def enqueue(request: Request) -> Response:
        wid = api._worker_id(request)
        body = await api._json(request)
        function, args, env = api.call_fields(body)
        due = _due_ns(body, api.rt.clock.time_ns() / 1e9)
        rec, created = await api._blocking(
            invocations.enqueue, api.rt, wid, function, args, env=env, due_ns=due,
            idempotency_key=request.headers.get("idempotency-key"))
        poke()
        return JSONResponse(public(rec), status_code=202 if created else 200)

    async def show(request: Request) -> Response:
        inv_id = request.path_params["id"]
        rec = await api._blocking(api.rt.store.invocations.get, inv_id)
        if rec is None:
            raise NotFoundError(f"no invocation {inv_id!r}")
        return JSONResponse(public(rec))

    async def listing(request: Request) -> Response:
        q = request.query_params
        worker, state = q.get("worker"), q.get("state")
        if state is not None and state not in STATES:
            raise ArgumentError(f"state={state!r}: expected one of {', '.join(STATES)}")
        limit = api._int_param(request, "limit", 100, 1, 1000)

        def select() -> list[dict[str, Any]]:
            out = []
            for rec in api.rt.store.invocations.records():
                if (worker and rec["worker"] != worker) or (state and rec["state"] != state):
                    continue
                out.append(public(rec))
            return out[-limit:]
        return JSONResponse(await api._blocking(select))

    w = "/workers/{component}/{name}"
    return [(w + "/invocations", enqueue, ["POST"]),
            ("/invocations", listing, ["GET"]),
            ("/invocations/{id}", show, ["GET"])]
