"""A worker's recorded output (the Log entries of its oplog) as JSON-ready events.

Used by `worker logs` in-process and by the server's /logs route (server/logs.py);
no HTTP stack here, so the CLI can import it cheaply.
"""

from __future__ import annotations

import base64
from typing import Any

from golemish.oplog import Log


def log_event(index: int, e: Log) -> dict[str, Any]:
    """One chunk of output: its oplog index, stream, text, and its exact bytes (b64)."""
    return {"index": index, "stream": "stdout" if e.stream == 1 else "stderr",
            "text": e.data.decode("utf-8", "replace"),
            "b64": base64.b64encode(e.data).decode()}


def read_logs(rt: Any, wid: str, start: int,
              limit: int | None = None) -> tuple[list[dict[str, Any]], int] | None:
    """(Output events from oplog index ``start`` on, reading at most ``limit`` entries;
    the next index to read). None if there is no such worker."""
    if rt.store.get_worker(wid) is None:
        return None
    out, nxt = [], start
    end = None if limit is None else start + limit - 1
    for i, e in rt.store.oplog(wid).read(start, end):
        nxt = i + 1
        if isinstance(e, Log):
            out.append(log_event(i, e))
    return out, nxt
