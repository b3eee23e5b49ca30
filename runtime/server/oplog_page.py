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

from golemish.oplog.entries import ENTRY_TYPES, Entry

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


@dataclass
class Scan:
    """Matching entries (index, entry, JSON form), where to continue (None at the
    end), and the oplog's last index when the scan began."""
    rows: list[tuple[int, Entry, dict[str, Any]]]
    next_start: int | None
    last_index: int


def scan(rt: Runtime, wid: str, start: int, limit: int, kinds: set[str] | None,
         needle: str | None) -> Scan:
    """Up to ``limit`` entries from ``start`` of kind in ``kinds`` whose JSON form
    contains ``needle`` (lower case); None means no filter. A filtered scan reads at
    most :data:`SCAN_LIMIT` entries."""
    rt.oplog(wid, 1, 0)  # NotFoundError for an unknown worker
    log = rt.store.oplog(wid)
    last = log.last_index
    filtered = kinds is not None or needle is not None
    end = min(last, start + (SCAN_LIMIT if filtered else limit) - 1)
    rows: list[tuple[int, Entry, dict[str, Any]]] = []
    i = start - 1
    for i, e in log.read(start, end):
        if kinds is not None and e.NAME not in kinds:
            continue
        text = json.dumps({"index": i, **e.to_json()}, default=_encode)
        if needle is not None and needle not in text.lower():
            continue
        rows.append((i, e, json.loads(text)))
        if len(rows) == limit:
            break
    return Scan(rows, i + 1 if i < last else None, last)


def oplog_page(rt: Runtime, wid: str, start: int, limit: int, kind: str | None,
               q: str | None) -> Page:
    kinds, needle = parse_kinds(kind), q.lower() if q else None
    found = scan(rt, wid, start, limit, kinds, needle)
    filtered = kinds is not None or needle is not None
    return Page([item for _, _, item in found.rows], found.next_start if filtered else None)
