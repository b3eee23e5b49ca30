"""Live logs: a worker's output as it is recorded, as server-sent events.

``GET /workers/{c}/{n}/logs?from=N`` returns the Log entries from oplog index N
on as JSON; with ``follow=1`` it is a ``text/event-stream`` that first sends
those, then each new one as it is appended, until the client goes away or the
server stops. Every event's ``id`` is its oplog index, so a client that lost the
connection resumes with ``from=id+1`` (or the standard ``Last-Event-ID`` header)
and sees every chunk exactly once, in order.

New entries are found by reading the oplog from the next index every
``POLL_S`` on a worker thread (the store is never read on the event loop). That
costs one short read per follower per tick and needs no hook in the journal;
output is in the oplog before the invoking client sees it (record before
reveal), so a follower never shows output that was not recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..errors import ArgumentError, NotFoundError
from ..output_log import read_logs

if TYPE_CHECKING:
    from .app import Api
    from .manage import ServerState

POLL_S = 0.05
HEARTBEAT_S = 15.0
#: Entries read per tick: a follower far behind catches up in steps.
BATCH = 1000


def _sse(event: dict[str, Any]) -> str:
    return f"id: {event['index']}\nevent: log\ndata: {json.dumps(event)}\n\n"


class Logs:
    def __init__(self, api: Api, state: ServerState) -> None:
        self.api, self.rt, self.state = api, api.rt, state

    def _start(self, request: Request) -> int:
        start = self.api._int_param(request, "from", 1, 1, 1 << 62)
        last = request.headers.get("last-event-id")
        if last is not None:
            if not last.strip().isdigit():
                raise ArgumentError(f"Last-Event-ID {last!r} should be an oplog index")
            start = int(last) + 1
        return start

    async def logs(self, request: Request) -> Response:
        wid = self.api._worker_id(request)
        start = self._start(request)
        follow = request.query_params.get("follow", "") in ("1", "true")
        first = await self.api._blocking(read_logs, self.rt, wid, start,
                                         BATCH if follow else None)
        if first is None:
            raise NotFoundError(f"no worker {wid}")
        if not follow:
            return JSONResponse(first[0])
        return StreamingResponse(self._stream(wid, *first), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def _stream(self, wid: str, events: list[dict[str, Any]],
                      nxt: int) -> AsyncIterator[str]:
        yield f": following {wid} from oplog index {nxt if not events else events[0]['index']}\n\n"
        beat = time.monotonic()
        while True:
            for ev in events:
                yield _sse(ev)
            if self.state.stopping.is_set():
                yield "event: end\ndata: {\"reason\": \"server stopping\"}\n\n"
                return
            if time.monotonic() - beat > HEARTBEAT_S:
                beat = time.monotonic()
                yield ": keep-alive\n\n"
            await anyio.sleep(POLL_S)
            got = await self.api._blocking(read_logs, self.rt, wid, nxt, BATCH)
            if got is None:
                yield "event: end\ndata: {\"reason\": \"worker deleted\"}\n\n"
                return
            events, nxt = got
