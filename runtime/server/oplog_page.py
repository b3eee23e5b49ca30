"""A filtered page of a worker's oplog, for ``GET .../oplog``.

Without a filter a page is entries start..start+limit-1. With ``kind`` (entry
kind names, comma-separated) or ``q`` (text looked for, case-insensitively, in the
entry's JSON form), entries are read from ``start`` until ``limit`` match or
:data:`SCAN_LIMIT` have been read, so that one request stays bounded on a long
oplog; ``next_start`` says where to continue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from golemish.oplog.entries import ENTRY_TYPES

from ..errors import ArgumentError
from ..executor import Runtime

SCAN_LIMIT = 10_000
KINDS = tuple(sorted(t.NAME for t in ENTRY_TYPES.values()))


@dataclass
class Page:
    entries: list[dict[str, Any]]
    next_start: int | None


def _encode(v: Any) -> Any:
    return v.hex() if isinstance(v, (bytes, bytearray)) else str(v)


def parse_kinds(text: str | None) -> set[str] | None:
    if text is None:
        return None
    kinds = {k.strip() for k in text.split(",") if k.strip()}
    bad = sorted(kinds - set(KINDS))
    if bad or not kinds:
        raise ArgumentError(f"kind={text!r}: unknown entry kind(s) {', '.join(bad) or '(none)'}"
                            f"; kinds are {', '.join(KINDS)}")
    return kinds


def oplog_page(rt: Runtime, wid: str, start: int, limit: int, kind: str | None,
               q: str | None) -> Page:
    kinds = parse_kinds(kind)
    needle = q.lower() if q else None
    if kinds is None and needle is None:
        rows = rt.oplog(wid, start, start + limit - 1)
        entries = [json.loads(json.dumps({"index": i, **e.to_json()}, default=_encode))
                   for i, e in rows]
        return Page(entries, None)
    rt.oplog(wid, 1, 0)  # NotFoundError for an unknown worker
    out: list[dict[str, Any]] = []
    last = rt.store.oplog(wid).last_index
    end = min(last, start + SCAN_LIMIT - 1)
    i = start - 1
    for i, e in rt.store.oplog(wid).read(start, end):
        if kinds is not None and e.NAME not in kinds:
            continue
        text = json.dumps({"index": i, **e.to_json()}, default=_encode)
        if needle is not None and needle not in text.lower():
            continue
        out.append(json.loads(text))
        if len(out) == limit:
            break
    nxt = i + 1 if i < last else None
    return Page(out, nxt)
