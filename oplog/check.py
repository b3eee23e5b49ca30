"""`golemish store check`: find every inconsistency in a store, with its location.

Checks, per worker: metadata decodes; the oplog (live and archived) is dense
from 1 with a Create entry first, every entry passes its checksum, and it ends
exactly at the recorded length (its head, written with every append); each
idempotency key points at an InvokeStart; each snapshot manifest decodes,
sits at a Snapshot entry of its worker's oplog, and every page it names is
present (with ``deep``, also decompresses to its content hash). Store-wide:
components and their module bytes verify, nothing (oplog, manifest, page,
key, promise) belongs to a worker that does not exist, and every table reads
whole (the module and compiled-code tables with ``deep``). The shared page
store (pagestore.py): every reference count equals the references recounted
from the stored manifests and bases, every stored page is referenced, every
base decodes and names only stored pages.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .entries import Create, InvokeStart, Snapshot, decode_entry
from .errors import CorruptionError
from .pagestore import BASE_REF, is_page_key
from .manifest import HASH_SIZE, Manifest
from .store import Store, _unpack_json
from .worker_oplog import HEAD_PREFIX, length_mismatch

_U64 = struct.Struct(">Q")


@dataclass(frozen=True)
class Problem:
    where: str   # e.g. "counter/alice oplog index 12"
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def _owner(key: bytes) -> str:
    return key.split(b"\0", 1)[0].decode(errors="replace")


def check_store(store: Store, *, deep: bool = False) -> tuple[list[Problem], dict[str, int]]:
    """All problems found, and counts of what was checked."""
    problems: list[Problem] = []
    counts = {"workers": 0, "entries": 0, "snapshots": 0, "pages": 0, "components": 0,
              "bases": 0, "shared_pages": 0}
    try:
        _check(store, deep, problems, counts)
    except CorruptionError as e:  # a table RocksDB cannot read past: the rest is unknown
        problems.append(Problem(f"{e.what} of {e.key}", f"{e.detail} (checking stopped here)"))
    _check_readable(store, deep, problems)
    return problems, counts


#: Tables the checks above read only in part (by key), read whole here: a damaged block
#: under a key no check asks for would otherwise go unseen until a command needs it
#: (a flipped byte in the compiled-code table failed every invocation of a component
#: while the check said ok). Module and compiled code can be large: with ``deep`` only.
WHOLE_TABLES = ("meta", "pagespaces")
WHOLE_TABLES_DEEP = ("wasm", "compiled")


def _check_readable(store: Store, deep: bool, problems: list[Problem]) -> None:
    for table in WHOLE_TABLES + (WHOLE_TABLES_DEEP if deep else ()):
        try:
            for _ in store.backend.scan(table, b""):
                pass
        except CorruptionError as e:
            problems.append(Problem(f"{table} table" + (f" at {e.key}" if e.key else ""),
                                    e.detail))


def _check(store: Store, deep: bool, problems: list[Problem], counts: dict[str, int]) -> None:
    b = store.backend

    for k, v in b.scan("components", b""):
        counts["components"] += 1
        name = _owner(k)
        try:
            meta = _unpack_json(v, "component", name)
            if not meta.get("deleted"):  # a deleted version's tombstone has no bytes
                store.get_wasm(meta["hash"])
        except CorruptionError as e:
            problems.append(Problem(f"component {name}", str(e)))

    workers: dict[str, dict] = {}
    for k, v in b.scan("workers", b""):
        wid = k.decode(errors="replace")
        try:
            workers[wid] = _unpack_json(v, "worker", wid)
        except CorruptionError as e:
            problems.append(Problem(f"worker {wid}", str(e)))
            workers[wid] = {}
    counts["workers"] = len(workers)

    for table in ("oplog", "archive", "snapshots", "pages", "idempotency"):
        seen: set[str] = set()
        try:
            for k, _ in b.scan(table, b""):
                owner = _owner(k)
                if table == "pages" and any(m in workers
                                            for m in store.snapshots.members(owner)):
                    continue  # a page space that forks still share
                if owner not in workers and owner not in seen:
                    seen.add(owner)
                    problems.append(Problem(f"{table} of {owner}", "belongs to no worker"))
        except CorruptionError as e:
            # A worker's own damage is reported with the worker, but its pages are read
            # there by content hash, past RocksDB's block checksums: a damaged block that
            # holds no page a manifest names (pruned ones, say) shows only here.
            if e.key not in workers or table == "pages":
                problems.append(Problem(f"{table} of {e.key}", e.detail))
    for k, _ in b.scan("meta", HEAD_PREFIX, HEAD_PREFIX[:-1] + b"\1"):
        owner = k[len(HEAD_PREFIX):].decode(errors="replace")
        if owner not in workers:
            problems.append(Problem(f"oplog head of {owner}", "belongs to no worker"))
    for k, v in b.scan("promises", b""):
        try:
            p = _unpack_json(v, "promise", k.decode(errors="replace"))
        except CorruptionError as e:
            problems.append(Problem(f"promise {k.decode(errors='replace')}", str(e)))
            continue
        if p.get("worker") not in workers:
            problems.append(Problem(f"promise {p.get('id')}", "belongs to no worker"))
    for k, v in b.scan("invocations", b"r\0", b"r\1"):  # enqueued/scheduled: each verified
        try:
            _unpack_json(v, "invocation", k[2:].decode(errors="replace"))
        except CorruptionError as e:
            problems.append(Problem(f"invocation {k[2:].decode(errors='replace')}", str(e)))

    refs: list[tuple[str, Manifest]] = []
    for wid, meta in workers.items():
        log = store.oplog(wid)
        snapshot_entries: set[int] = set()
        starts: set[int] = set()
        expected = 1
        try:
            for index, raw in log.raw(check_length=False):
                if index != expected:
                    problems.append(Problem(f"{wid} oplog index {expected}",
                                            f"missing (next present: {index})"))
                expected = index + 1
                counts["entries"] += 1
                try:
                    entry = decode_entry(raw, key=wid, index=index)
                except CorruptionError as e:
                    problems.append(Problem(f"{wid} oplog index {index}", e.detail))
                    continue
                if index == 1 and not isinstance(entry, Create):
                    problems.append(Problem(f"{wid} oplog index 1", "is not a create entry"))
                if isinstance(entry, Snapshot):
                    snapshot_entries.add(index)
                elif isinstance(entry, InvokeStart):
                    starts.add(index)
        except CorruptionError as e:  # an undecodable archive chunk, an unreadable block
            where = f"{wid} oplog index {e.index}" if e.index is not None else f"{wid} oplog"
            problems.append(Problem(where, e.detail))
        if log.recorded_last is None and log.damage is not None:
            problems.append(Problem(f"{wid} oplog head", log.damage.detail))
        elif log.recorded_last is not None and expected - 1 != log.recorded_last:
            problems.append(Problem(f"{wid} oplog",
                                    length_mismatch(wid, log.recorded_last, expected - 1).detail))
        if expected == 1 and meta:
            problems.append(Problem(f"{wid} oplog", "is empty"))

        prefix, end = wid.encode() + b"\0", wid.encode() + b"\1"
        for k, v in b.scan("idempotency", prefix, end):
            if _U64.unpack(v)[0] not in starts:
                problems.append(Problem(f"{wid} idempotency key {k[len(prefix):].decode()!r}",
                                        f"points at index {_U64.unpack(v)[0]}, "
                                        "which is no invocation"))
        for index in store.snapshots.indexes(wid):
            counts["snapshots"] += 1
            where = f"{wid} snapshot at index {index}"
            try:
                m = store.snapshots.manifest(wid, index)
            except CorruptionError as e:
                problems.append(Problem(where, e.detail))
                continue
            if index not in snapshot_entries:
                problems.append(Problem(where, "has no Snapshot entry in the oplog"))
            hashes = m.nonzero()
            if m.shared:
                table, pages_prefix = "cpages", b""
                own = store.snapshots._own_manifest(wid, index)
                if own is not None:
                    refs.append((where, own))
            else:
                table, pages_prefix = "pages", store.snapshots.space(wid).encode() + b"\0"
            counts["pages"] += len(hashes)
            for h in sorted(hashes):
                if b.get(table, pages_prefix + h) is None:
                    problems.append(Problem(where, f"names missing page {h.hex()}"))
                elif deep:
                    try:
                        if m.shared:
                            list(store.snapshots.pages_for(wid, m)({h}))
                        else:
                            store.snapshots.load_pages(wid, [h])
                    except CorruptionError as e:
                        problems.append(Problem(where, f"page {h.hex()}: {e.detail}"))
            if len(m.pages) % HASH_SIZE:
                problems.append(Problem(where, "page list is not whole"))
    _check_shared(store, deep, refs, problems, counts)


def _check_shared(store: Store, deep: bool, refs: list[tuple[str, Manifest]],
                  problems: list[Problem], counts: dict[str, int]) -> None:
    """Recount the shared store's references from the manifests that hold them."""
    b, pages = store.backend, store.snapshots.pages
    expected: dict[bytes, int] = {}
    for k, blob in b.scan("bases", b""):
        bid = k.decode(errors="replace")
        counts["bases"] += 1
        try:
            base = Manifest.decode(blob, key=f"base {bid}")
        except CorruptionError as e:
            problems.append(Problem(f"snapshot base {bid}", e.detail))
            continue
        for h in sorted(base.nonzero()):
            expected[h] = expected.get(h, 0) + 1
            if b.get("cpages", h) is None:
                problems.append(Problem(f"snapshot base {bid}", f"names missing page {h.hex()}"))
    for where, m in refs:
        try:
            held = pages.refs(m)
        except CorruptionError:
            problems.append(Problem(where, f"names missing base {m.base}"))
            continue
        for k in held:
            expected[k] = expected.get(k, 0) + 1
    actual = {k: struct.unpack(">Q", v)[0] for k, v in b.scan("pagerefs", b"")}
    for k in sorted(set(expected) | set(actual)):
        want, have = expected.get(k, 0), actual.get(k, 0)
        if want != have:
            what = (f"page {k.hex()}" if is_page_key(k)
                    else f"base {k[len(BASE_REF):].decode(errors='replace')}")
            problems.append(Problem(f"reference count of {what}",
                                    f"is {have}, but {want} manifest(s) reference it"))
    dctx = store.snapshots._dctx
    for k, z in b.scan("cpages", b""):
        counts["shared_pages"] += 1
        if k not in expected:
            problems.append(Problem(f"stored page {k.hex()}", "no manifest references it"))
        elif deep:
            try:
                store.snapshots._verified("shared store", k, z, dctx)
            except CorruptionError as e:
                problems.append(Problem(f"stored page {k.hex()}", e.detail))
