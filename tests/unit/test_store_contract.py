"""The contract every storage backend must pass, and the Store laid on top of it.

Every test taking ``backend`` (or ``store``) runs once per backend, like litestream's
RunWithReplicaClient. A new backend joins by adding its name to ``BACKENDS`` and a
branch to :func:`open_backend`.

The Backend contract (see ``golemish/oplog/backends/base.py``):

* Tables are independent ordered maps from bytes to bytes. A missing key reads as None.
  Empty keys and empty values are ordinary keys and values.
* ``write(ops)`` applies puts and deletes (value None) as one unit, in order, so a later
  op on the same key wins. A batch that cannot be applied changes nothing.
* ``get_many(table, keys)`` is ``[get(table, k) for k in keys]`` in one call.
* ``scan(table, start, end)`` yields ``start <= key < end`` in unsigned byte order
  (``end=None``: no upper bound); ``reverse=True`` yields the same set descending.
  Scans are lazy: nothing is read, and nothing is checked, until the first item is asked for.
* Writing while a scan is being iterated is allowed. The scan's key set is fixed when
  its first item is taken: it never crashes, never repeats or reorders keys and never
  yields a key that was added later. A key that was there at the start and is left
  alone is always yielded. Any other yielded value is either the value at the start or
  one written since. Whether a key deleted mid-scan is still yielded is left open:
  RocksDB iterates a snapshot (it is), the memory backend re-reads each value (it isn't).
* After ``close()``, get/put/write and (newly started) scans raise StoreClosedError,
  and ``close()`` itself may be called again.
* RocksDB only: one process owns a path at a time; a second open raises
  StoreInUseError naming the owner's pid, and the kernel frees the lock if the
  owner dies, even by SIGKILL. Data written before a crash (or close) is intact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golemish.oplog import (
    Create, CorruptionError, HostCall, InvokeEnd, InvokeStart, Log, Store, StoreClosedError,
    StoreError, StoreInUseError, content_hash, open_store,
)
from golemish.oplog.errors import NoStoreError, ReadOnlyStoreError
from golemish.oplog.backends.memory import MemoryBackend
from golemish.oplog.backends.postgres import PostgresBackend
from golemish.oplog.backends.rocksdb import RocksBackend

BACKENDS = ["memory", "rocksdb", "postgres"]


def open_backend(kind: str, path: Path, pg=None, *, scratch: bool = False):
    """A new, empty backend; ``pg`` is the Postgres cluster (tests/pg.py) for "postgres",
    ``scratch`` reuses one database emptied each time instead of creating one."""
    if kind == "memory":
        return MemoryBackend()
    if kind == "rocksdb":
        return RocksBackend(str(path), create=True)
    if kind == "postgres":
        return PostgresBackend(pg.scratch_store() if scratch else pg.create_database(),
                               create=True)
    raise ValueError(kind)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path: Path) -> Iterator:
    pg = request.getfixturevalue("postgres_cluster") if request.param == "postgres" else None
    b = open_backend(request.param, tmp_path / "db", pg)
    yield b
    b.close()
    if pg is not None:
        pg.drop_database(b.url)


@pytest.fixture
def store(backend) -> Store:
    return Store(backend)


def reopen(backend):
    """Close ``backend`` and open its data again; memory has nothing to reopen."""
    if isinstance(backend, MemoryBackend):
        pytest.skip("the memory backend keeps nothing after close")
    backend.close()
    if isinstance(backend, PostgresBackend):
        return PostgresBackend(backend.url)
    return RocksBackend(backend.location)


def keys(items) -> list[bytes]:
    return [k for k, _ in items]


# A key set with the awkward cases: empty key, 0x00 and 0xff bytes, a key that is a
# prefix of others (b"a" < b"a\x00" < b"ab"), and multi-byte keys past 0x7f (signed
# comparison would put them first).
AWKWARD = [b"", b"\x00", b"\x00\x00", b"a", b"a\x00", b"ab", b"b", b"\x7f", b"\x80", b"\xff",
           b"\xff\x00", b"\xff\xff"]


@pytest.fixture
def filled(backend):
    for k in reversed(AWKWARD):  # insertion order must not matter
        backend.put("meta", k, b"v" + k)
    return backend


# -- backend: get / put / write ----------------------------------------------------

def test_get_missing_key_is_none(backend):
    assert backend.get("meta", b"nope") is None
    assert backend.get("oplog", b"") is None


def test_put_then_get(backend):
    backend.put("meta", b"k", b"v1")
    assert backend.get("meta", b"k") == b"v1"
    backend.put("meta", b"k", b"v2")
    assert backend.get("meta", b"k") == b"v2"


def test_get_many_reads_keys_in_order_with_none_for_missing(backend):
    backend.write([("cpages", b"a", b"1"), ("cpages", b"c", b"3"), ("cpages", b"", b"")])
    for bulk in (False, True):
        assert backend.get_many("cpages", [b"c", b"b", b"a", b"", b"c"], bulk=bulk) == \
            [b"3", None, b"1", b"", b"3"]
    assert backend.get_many("cpages", []) == []


def test_empty_key_and_value_are_ordinary(backend):
    backend.put("meta", b"", b"")
    assert backend.get("meta", b"") == b""
    assert list(backend.scan("meta", b"")) == [(b"", b"")]


def test_write_applies_puts_and_deletes_together(backend):
    backend.put("meta", b"old", b"1")
    backend.put("workers", b"w", b"2")
    backend.write([
        ("meta", b"new", b"3"),
        ("meta", b"old", None),
        ("workers", b"w", None),
        ("oplog", b"e", b"4"),
    ])
    assert backend.get("meta", b"old") is None
    assert backend.get("meta", b"new") == b"3"
    assert backend.get("workers", b"w") is None
    assert backend.get("oplog", b"e") == b"4"


def test_write_later_op_on_same_key_wins(backend):
    backend.write([("meta", b"k", b"1"), ("meta", b"k", None), ("meta", b"k", b"3"),
                   ("meta", b"j", b"1"), ("meta", b"j", None)])
    assert backend.get("meta", b"k") == b"3"
    assert backend.get("meta", b"j") is None


def test_write_empty_batch_is_a_no_op(backend):
    backend.write([])
    assert list(backend.scan("meta", b"")) == []


def test_delete_of_missing_key_is_harmless(backend):
    backend.write([("meta", b"ghost", None)])
    assert backend.get("meta", b"ghost") is None


def test_bad_batch_changes_nothing(backend):
    backend.put("meta", b"k", b"before")
    with pytest.raises((KeyError, StoreError)):
        backend.write([("meta", b"k", b"after"), ("no-such-table", b"x", b"y")])
    assert backend.get("meta", b"k") == b"before"


def test_tables_are_independent(backend):
    backend.put("meta", b"k", b"meta")
    backend.put("oplog", b"k", b"oplog")
    backend.put("oplog", b"only-oplog", b"x")
    assert backend.get("meta", b"k") == b"meta"
    assert backend.get("workers", b"k") is None
    assert keys(backend.scan("meta", b"")) == [b"k"]
    backend.write([("oplog", b"k", None)])
    assert backend.get("meta", b"k") == b"meta"
    assert keys(backend.scan("oplog", b"")) == [b"only-oplog"]
    assert list(backend.scan("workers", b"")) == []


# -- backend: scan -----------------------------------------------------------------

def test_scan_all_is_unsigned_byte_order(filled):
    assert keys(filled.scan("meta", b"")) == sorted(AWKWARD)
    assert [v for _, v in filled.scan("meta", b"")] == [b"v" + k for k in sorted(AWKWARD)]


def test_scan_range_is_half_open(filled):
    assert keys(filled.scan("meta", b"a", b"b")) == [b"a", b"a\x00", b"ab"]
    assert keys(filled.scan("meta", b"a\x00", b"ab")) == [b"a\x00"]
    assert keys(filled.scan("meta", b"\x00", b"\x00\x00")) == [b"\x00"]
    assert keys(filled.scan("meta", b"\xff", b"\xff\xff")) == [b"\xff", b"\xff\x00"]


def test_scan_prefix_range_excludes_longer_neighbour(filled):
    # The store's "id \\0 .. id \\1" idiom: b"a" as a prefix must not pull in b"ab".
    assert keys(filled.scan("meta", b"a\x00", b"a\x01")) == [b"a\x00"]


def test_scan_end_none_is_unbounded(filled):
    assert keys(filled.scan("meta", b"b")) == [b"b", b"\x7f", b"\x80", b"\xff", b"\xff\x00",
                                               b"\xff\xff"]
    assert keys(filled.scan("meta", b"\xff\xff")) == [b"\xff\xff"]
    assert keys(filled.scan("meta", b"\xff\xff\x00")) == []


def test_scan_start_between_keys(filled):
    assert keys(filled.scan("meta", b"a\x00\x00", b"b")) == [b"ab"]


def test_scan_empty_and_inverted_ranges(filled):
    assert list(filled.scan("meta", b"a", b"a")) == []
    assert list(filled.scan("meta", b"b", b"a")) == []
    assert list(filled.scan("meta", b"b", b"a", reverse=True)) == []
    assert list(filled.scan("meta", b"", b"")) == []
    assert list(filled.scan("meta", b"", b"", reverse=True)) == []


def test_reverse_scan_all_is_descending(filled):
    assert keys(filled.scan("meta", b"", reverse=True)) == sorted(AWKWARD, reverse=True)


@pytest.mark.parametrize(("start", "end"), [
    (b"a", b"b"),              # end is an existing key: excluded
    (b"a", b"a\x00\x00"),      # end between keys
    (b"\x00", b"\xff"),
    (b"", b"\x00"),            # only the empty key
    (b"\x80", None),           # unbounded above
    (b"\xff\xff", None),       # the very last key
    (b"", b"\xff\xff\xff"),    # end past every key
])
def test_reverse_scan_is_forward_scan_reversed(filled, start, end):
    forward = list(filled.scan("meta", start, end))
    assert forward, "each case should select something"
    assert list(filled.scan("meta", start, end, reverse=True)) == forward[::-1]


def test_reverse_scan_first_item_is_last_in_range(filled):
    # WorkerOplog finds its last index this way.
    assert next(filled.scan("meta", b"a", b"a\x01", reverse=True)) == (b"a\x00", b"va\x00")
    assert next(filled.scan("meta", b"\xff", None, reverse=True))[0] == b"\xff\xff"


def test_scan_survives_writes_during_iteration(filled):
    before = {k: b"v" + k for k in AWKWARD}
    touched = {b"a", b"ab", b"\x80"}
    it = filled.scan("meta", b"")
    seen = [next(it)]
    filled.put("meta", b"a", b"changed")
    filled.put("meta", b"aa", b"added")
    filled.put("meta", b"\xff\xff\xff", b"added")
    filled.write([("meta", b"ab", None), ("meta", b"\x80", None), ("meta", b"zz", b"added")])
    seen += list(it)

    ks = keys(seen)
    assert ks == sorted(set(ks)), "in order, no repeats"
    assert set(ks) <= set(before), "nothing added during the scan shows up"
    assert set(before) - touched <= set(ks), "untouched keys are all there"
    for k, v in seen:
        assert v in (before[k], b"changed")
    # Afterwards a new scan sees the writes.
    now = dict(filled.scan("meta", b""))
    assert now[b"a"] == b"changed" and b"ab" not in now and now[b"aa"] == b"added"


def test_reverse_scan_survives_writes_during_iteration(filled):
    it = filled.scan("meta", b"", reverse=True)
    seen = [next(it)]
    filled.put("meta", b"\x00\x00\x00", b"added")
    filled.write([("meta", b"", None)])
    seen += list(it)
    ks = keys(seen)
    assert ks == sorted(set(ks), reverse=True)
    assert set(ks) <= set(AWKWARD)
    assert set(AWKWARD) - {b""} <= set(ks)


# -- backend: close ----------------------------------------------------------------

def test_use_after_close_raises(backend):
    backend.put("meta", b"k", b"v")
    backend.close()
    with pytest.raises(StoreClosedError):
        backend.get("meta", b"k")
    with pytest.raises(StoreClosedError):
        backend.get_many("meta", [b"k"])
    with pytest.raises(StoreClosedError):
        backend.put("meta", b"k", b"v")
    with pytest.raises(StoreClosedError):
        backend.write([("meta", b"k", None)])
    with pytest.raises(StoreClosedError):
        list(backend.scan("meta", b""))
    with pytest.raises(StoreClosedError):
        list(backend.scan("meta", b"", reverse=True))
    backend.close()  # a second close is harmless


def test_store_closed_error_is_a_store_error(backend):
    backend.close()
    with pytest.raises(StoreError):
        backend.get("meta", b"k")


# -- store: components ---------------------------------------------------------------

WASM_1 = b"\0asm\x01\0\0\0 version one"
WASM_2 = b"\0asm\x01\0\0\0 version two"


def component(name: str, version: int, wasm: bytes) -> dict:
    return {"name": name, "version": version, "hash": content_hash(wasm)}


def test_component_versions_latest_specific_missing(store):
    store.add_component(component("counter", 2, WASM_1), WASM_1)
    store.add_component(component("counter", 10, WASM_2), WASM_2)  # 10 > 2 numerically
    assert [c["version"] for c in store.component_versions("counter")] == [2, 10]
    assert store.get_component("counter") == component("counter", 10, WASM_2)
    assert store.get_component("counter", 2) == component("counter", 2, WASM_1)
    assert store.get_component("counter", 3) is None
    assert store.get_component("nope") is None
    assert store.component_versions("nope") == []


def test_component_names_that_are_prefixes_stay_apart(store):
    store.add_component(component("c", 1, WASM_1), WASM_1)
    store.add_component(component("cc", 1, WASM_2), WASM_2)
    assert store.component_versions("c") == [component("c", 1, WASM_1)]
    assert store.get_component("c")["hash"] == content_hash(WASM_1)


def test_list_components(store):
    assert store.list_components() == []
    store.add_component(component("b", 1, WASM_1), WASM_1)
    store.add_component(component("a", 1, WASM_1), WASM_1)
    store.add_component(component("a", 2, WASM_2), WASM_2)
    assert [(c["name"], c["version"]) for c in store.list_components()] == [
        ("a", 1), ("a", 2), ("b", 1)]


def test_get_wasm_returns_verified_bytes(store):
    store.add_component(component("c", 1, WASM_1), WASM_1)
    assert store.get_wasm(content_hash(WASM_1)) == WASM_1


def test_get_wasm_detects_corrupt_bytes(store):
    digest = content_hash(WASM_1)
    store.add_component(component("c", 1, WASM_1), WASM_1)
    store.backend.put("wasm", digest.encode(), WASM_1[:-1] + b"X")
    with pytest.raises(CorruptionError, match="content hash mismatch"):
        store.get_wasm(digest)


def test_get_wasm_missing_is_corruption(store):
    with pytest.raises(CorruptionError, match="missing"):
        store.get_wasm(content_hash(b"never stored"))


def test_corrupt_component_metadata_is_detected(store):
    store.add_component(component("c", 1, WASM_1), WASM_1)
    (key, raw), = store.backend.scan("components", b"")
    store.backend.put("components", key, raw[:-2] + b"0}")
    with pytest.raises(CorruptionError, match="checksum"):
        store.get_component("c")


# -- store: workers and oplogs -------------------------------------------------------

CREATE = Create("counter", 1, "ab" * 32, args=("x",), env=(("K", "V"),), timestamp_ns=5)
ENTRIES = [
    InvokeStart("inc", (("i32", 1),), idempotency_key="k1", timestamp_ns=6),
    HostCall("clock", b"\x01", b"\x00" * 8),
    Log(1, b"hello\n"),
    InvokeEnd((("i64", 2),), duration_ns=7),
]


def worker(worker_id: str) -> dict:
    return {"id": worker_id, "component": "counter", "version": 1}


def make_worker(store: Store, worker_id: str, n_more: int = len(ENTRIES)):
    log = store.create_worker(worker(worker_id), CREATE)
    for e in ENTRIES[:n_more]:
        log.append(e)
    return log


class Recording:
    """A real backend that also remembers which writes it was asked to make."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.location = inner.location
        self.calls: list[tuple] = []

    def get(self, *a, **kw):
        return self.inner.get(*a, **kw)

    def scan(self, *a, **kw):
        return self.inner.scan(*a, **kw)

    def put(self, table, key, value):
        self.calls.append(("put", table, key))
        self.inner.put(table, key, value)

    def write(self, ops):
        self.calls.append(("write", [(t, k) for t, k, _ in ops]))
        self.inner.write(ops)

    def close(self):
        self.inner.close()


def test_create_worker_writes_meta_and_entry_1_in_one_batch(store):
    spy = Recording(store.backend)
    log = Store(spy).create_worker(worker("w"), CREATE)
    entry_1 = b"w\x00" + (1).to_bytes(8, "big")
    assert spy.calls == [("write", [("workers", b"w"), ("oplog", entry_1), ("meta", b"head\0w")])]
    assert log.last_index == 1
    assert store.get_worker("w") == worker("w")
    assert store.oplog("w").get(1) == CREATE


def test_create_worker_twice_is_refused(store):
    make_worker(store, "w", 1)
    with pytest.raises(StoreError, match="already"):
        store.create_worker({**worker("w"), "version": 2}, CREATE)
    assert store.get_worker("w") == worker("w")
    assert store.oplog("w").last_index == 2


def test_append_read_get_kinds(store):
    log = store.create_worker(worker("w"), CREATE)
    assert [log.append(e) for e in ENTRIES] == [2, 3, 4, 5]
    assert log.last_index == 5
    assert list(log.read()) == list(enumerate([CREATE, *ENTRIES], start=1))
    assert log.get(3) == ENTRIES[1]
    assert log.get(6) is None
    assert log.get(0) is None
    assert list(log.kinds()) == [(i, e.KIND) for i, e in enumerate([CREATE, *ENTRIES], 1)]


def test_append_host_call_matches_append(store):
    log = store.create_worker(worker("w"), CREATE)
    i = log.append_host_call(b"clock", b"\x01", b"\x00" * 8)
    assert (i, log.get(i)) == (2, HostCall("clock", b"\x01", b"\x00" * 8))


def test_buffered_host_calls_are_stored_as_appended_entries_are(store):
    # The journal's hot path (a str name, a cached head, responses changing length)
    # writes, on commit, the very bytes append() of the entry would.
    log = store.create_worker(worker("w"), CREATE)
    calls = [("clock_time_get", b"\x01", bytes(8)), ("clock_time_get", b"\x01", b"\x07" * 8),
             ("random_get", b"\x10", b"r" * 16), ("random_get", b"\x10", b"r" * 200),
             ("clock_time_get", b"\x00", b""), ("random_get", b"\x10", b"s" * 16)]
    for name, request, response in calls:
        log.buffer_host_call(name, request, response)
    assert log.commit() == len(calls)
    other = store.create_worker(worker("v"), CREATE)
    for name, request, response in calls:
        other.append(HostCall(name, request, response))
    got = [raw for _, raw in store.oplog("w").raw(2)]
    assert got == [raw for _, raw in store.oplog("v").raw(2)]
    assert [e for _, e in store.oplog("w").read(2)] == [HostCall(*c) for c in calls]


def test_read_ranges(store):
    log = make_worker(store, "w")
    every = list(enumerate([CREATE, *ENTRIES], start=1))
    assert list(log.read(2, 4)) == every[1:4]
    assert list(log.read(3)) == every[2:]
    assert list(log.read(end=1)) == every[:1]
    assert list(log.read(5, 5)) == every[4:5]
    assert list(log.read(4, 100)) == every[3:]
    assert list(log.read(6)) == []
    assert list(log.read(3, 2)) == []
    assert [i for i, _ in log.raw(2, 3)] == [2, 3]


def test_worker_ids_that_are_prefixes_stay_apart(store):
    a = make_worker(store, "c/a", 2)
    ab = make_worker(store, "c/ab", 4)
    c = make_worker(store, "c", 1)
    assert (a.last_index, ab.last_index, c.last_index) == (3, 5, 2)
    # Fresh oplogs find their own last index, not a neighbour's.
    assert store.oplog("c/a").last_index == 3
    assert store.oplog("c/ab").last_index == 5
    assert store.oplog("c").last_index == 2
    assert store.oplog("c/").last_index == 0
    assert [i for i, _ in store.oplog("c/a").read()] == [1, 2, 3]
    assert len(list(store.oplog("c/ab").kinds())) == 5
    a.append(Log(2, b"only a"))
    assert store.oplog("c/ab").get(4) == ENTRIES[2]
    assert store.oplog("c/a").get(4) == Log(2, b"only a")


def test_fresh_oplog_finds_last_index(store):
    make_worker(store, "w")
    log = store.oplog("w")
    assert log.last_index == 5
    assert log.append(Log(1, b"more")) == 6
    assert store.oplog("w").last_index == 6
    assert store.oplog("unknown").last_index == 0


def test_gap_in_indexes_is_corruption(store):
    log = make_worker(store, "w")
    key3 = next(k for k, _ in store.backend.scan("oplog", b"w\x00") if k.endswith(b"\x03"))
    store.backend.write([("oplog", key3, None)])
    it = log.read()
    assert [i for i, _ in (next(it), next(it))] == [1, 2]
    with pytest.raises(CorruptionError, match="missing entry 3") as exc:
        next(it)
    assert exc.value.index == 3
    assert exc.value.key == "w"
    assert [i for i, _ in log.read(4)] == [4, 5]  # from past the gap there is none


def test_reading_some_kinds_decodes_those_and_still_finds_a_gap(store):
    log = make_worker(store, "w")  # 1 Create, 2 InvokeStart, 3 HostCall, 4 Log, 5 InvokeEnd
    kinds = frozenset({InvokeStart.KIND, InvokeEnd.KIND})
    assert list(log.read_kinds(kinds)) == [(2, ENTRIES[0]), (5, ENTRIES[3])]
    assert list(log.read_kinds(kinds, 3)) == [(5, ENTRIES[3])]
    key4 = b"w\x00" + (4).to_bytes(8, "big")
    store.backend.write([("oplog", key4, None)])  # a skimmed entry gone is damage too
    with pytest.raises(CorruptionError, match="missing entry 4"):
        list(log.read_kinds(kinds, 3))


def test_missing_first_entry_is_corruption(store):
    log = make_worker(store, "w", 1)
    store.backend.write([("oplog", b"w\x00" + (1).to_bytes(8, "big"), None)])
    with pytest.raises(CorruptionError, match="missing entry 1"):
        list(log.read())


def test_flipped_byte_in_entry_is_corruption(store):
    log = make_worker(store, "w")
    key = b"w\x00" + (4).to_bytes(8, "big")
    raw = bytearray(store.backend.get("oplog", key))
    raw[-1] ^= 0x01
    store.backend.put("oplog", key, bytes(raw))
    with pytest.raises(CorruptionError) as exc:
        list(log.read())
    assert exc.value.index == 4
    assert exc.value.key == "w"
    with pytest.raises(CorruptionError) as exc:
        log.get(4)
    assert exc.value.index == 4
    assert [i for i, _ in log.read(end=3)] == [1, 2, 3]


def test_list_workers(store):
    assert store.list_workers() == []
    for wid in ("w2", "w1", "c/a"):
        make_worker(store, wid, 0)
    assert [w["id"] for w in store.list_workers()] == ["c/a", "w1", "w2"]


def test_delete_worker_removes_meta_and_entries_only(store):
    make_worker(store, "c/a")
    make_worker(store, "c/ab")
    make_worker(store, "c")
    store.delete_worker("c/a")
    assert store.get_worker("c/a") is None
    assert store.oplog("c/a").last_index == 0
    assert list(store.oplog("c/a").read()) == []
    assert not [k for k, _ in store.backend.scan("oplog", b"c/a\x00", b"c/a\x01")]
    assert [w["id"] for w in store.list_workers()] == ["c", "c/ab"]
    for wid in ("c", "c/ab"):
        assert [i for i, _ in store.oplog(wid).read()] == [1, 2, 3, 4, 5]
    # The id can be used again.
    assert store.create_worker(worker("c/a"), CREATE).last_index == 1


def test_delete_unknown_worker_is_harmless(store):
    make_worker(store, "w", 0)
    store.delete_worker("nope")
    assert [w["id"] for w in store.list_workers()] == ["w"]


def test_store_after_close_raises(store):
    log = make_worker(store, "w", 1)
    store.close()
    with pytest.raises(StoreClosedError):
        log.append(Log(1, b"late"))
    with pytest.raises(StoreClosedError):
        list(log.read())
    with pytest.raises(StoreClosedError):
        store.oplog("w")
    with pytest.raises(StoreClosedError):
        store.list_workers()
    assert log.last_index == 2, "a failed append does not advance the index"


def test_reopen_sees_everything(store):
    store.add_component(component("counter", 1, WASM_1), WASM_1)
    make_worker(store, "c/a")
    make_worker(store, "c/ab", 2)
    store.put_compiled("key", b"native")
    again = Store(reopen(store.backend))
    try:
        assert again.get_component("counter") == component("counter", 1, WASM_1)
        assert again.get_wasm(content_hash(WASM_1)) == WASM_1
        assert again.get_compiled("key") == b"native"
        assert [w["id"] for w in again.list_workers()] == ["c/a", "c/ab"]
        log = again.oplog("c/a")
        assert log.last_index == 5
        assert list(log.read()) == list(enumerate([CREATE, *ENTRIES], start=1))
        assert again.oplog("c/ab").last_index == 3
        assert log.append(Log(1, b"after reopen")) == 6
    finally:
        again.close()


def test_open_store_by_url(tmp_path):
    with open_store("memory://") as s:
        assert s.location == "memory://"
    path = str(tmp_path / "s")
    for url in (f"rocksdb://{path}", path):
        with open_store(url, create=True) as s:
            assert s.location == path
    with pytest.raises(StoreError, match="unknown store URL scheme"):
        open_store("s3://bucket")


# -- RocksDB ownership -----------------------------------------------------------------

def test_second_open_in_use_names_our_pid(tmp_path):
    path = str(tmp_path / "db")
    first = open_store(path, create=True)
    try:
        with pytest.raises(StoreInUseError, match=f"in use by pid {os.getpid()}\\b") as exc:
            open_store(path)
        assert exc.value.pid == os.getpid()
        assert exc.value.retryable
    finally:
        first.close()
    with open_store(path) as again:
        assert again.backend.get("meta", b"format") is not None


def test_close_with_unfinished_scan_releases_the_store(tmp_path):
    path = str(tmp_path / "db")
    b = RocksBackend(path, create=True)
    b.put("meta", b"a", b"1")
    b.put("meta", b"b", b"2")
    pending = b.scan("meta", b"")
    next(pending)
    b.close()
    again = RocksBackend(path)
    again.close()
    assert list(pending) == []  # the scan was ended by close()


CHILD = textwrap.dedent("""
    import sys, time
    from golemish.oplog import Log, open_store
    store = open_store(sys.argv[1])
    store.oplog("w").append(Log(1, b"from the child"))
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.mark.chaos
def test_lock_is_released_when_owner_is_killed(tmp_path):
    path = str(tmp_path / "db")
    with open_store(path, create=True) as s:
        make_worker(s, "w")
    with subprocess.Popen([sys.executable, "-c", CHILD, path], stdout=subprocess.PIPE,
                          text=True) as child:
        try:
            assert child.stdout.readline().strip() == "ready"
            with pytest.raises(StoreInUseError, match=f"in use by pid {child.pid}\\b") as exc:
                open_store(path)
            assert exc.value.pid == child.pid
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL
    with open_store(path) as s:
        log = s.oplog("w")
        assert log.last_index == 6
        assert list(log.read()) == list(enumerate([CREATE, *ENTRIES, Log(1, b"from the child")],
                                                  start=1))


# -- property: every backend behaves like a dict ---------------------------------------

TABLES = ("meta", "oplog")
key_st = st.lists(st.sampled_from([0x00, 0x01, 0x61, 0x62, 0x80, 0xff]), max_size=3).map(bytes)
value_st = st.binary(max_size=8)
op_st = st.tuples(st.sampled_from(TABLES), key_st, st.none() | value_st)
step_st = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(TABLES), key_st, value_st),
    st.tuples(st.just("delete"), op_st.map(lambda op: (op[0], op[1], None))),
    st.tuples(st.just("batch"), st.lists(op_st, max_size=6)),
)
range_st = st.tuples(key_st, st.none() | key_st, st.booleans())


def apply(target, step) -> None:
    """Apply one step to a backend (via its own API) or to a dict-of-dicts model."""
    if step[0] == "put":
        _, table, key, value = step
        ops = [(table, key, value)]
        if not isinstance(target, dict):
            return target.put(table, key, value)
    elif step[0] == "delete":
        ops = [step[1]]
    else:
        ops = step[1]
    if not isinstance(target, dict):
        return target.write(ops)
    for table, key, value in ops:
        if value is None:
            target[table].pop(key, None)
        else:
            target[table][key] = value


def expected_scan(model, table, start, end, reverse):
    items = sorted((k, v) for k, v in model[table].items()
                   if start <= k and (end is None or k < end))
    return items[::-1] if reverse else items


def check_against(b, model, ranges) -> None:
    for table in TABLES:
        assert list(b.scan(table, b"")) == expected_scan(model, table, b"", None, False)
        for start, end, reverse in ranges:
            got = list(b.scan(table, start, end, reverse=reverse))
            assert got == expected_scan(model, table, start, end, reverse), (start, end, reverse)
        for k in {*model[table], b"", b"\xff"}:
            assert b.get(table, k) == model[table].get(k)


@settings(max_examples=50, deadline=None)
@given(steps=st.lists(step_st, max_size=25), ranges=st.lists(range_st, max_size=6))
def test_backends_agree_with_a_dict(postgres_cluster, steps, ranges):
    model: dict[str, dict[bytes, bytes]] = {t: {} for t in TABLES}
    with tempfile.TemporaryDirectory() as tmp:
        backends = [open_backend(kind, Path(tmp) / "db", postgres_cluster, scratch=True)
                    for kind in BACKENDS]
        try:
            for step in steps:
                apply(model, step)
                for b in backends:
                    apply(b, step)
            for b in backends:
                check_against(b, model, ranges)
            # What RocksDB and Postgres wrote survives a close and reopen.
            rocks = backends[BACKENDS.index("rocksdb")]
            rocks.close()
            backends.append(RocksBackend(rocks.location))
            check_against(backends[-1], model, ranges)
            pg = backends[BACKENDS.index("postgres")]
            pg.close()
            backends.append(PostgresBackend(pg.url))
            check_against(backends[-1], model, ranges)
        finally:
            for b in backends:
                b.close()


# -- the recorded oplog length (head) ----------------------------------------------------

def head(store: Store, worker_id: str) -> int | None:
    raw = store.backend.get("meta", b"head\0" + worker_id.encode())
    return None if raw is None else int.from_bytes(raw, "big")


def test_every_append_records_the_oplog_length(store):
    log = make_worker(store, "w", 0)
    assert head(store, "w") == 1
    log.append(Log(1, b"a"))
    log.append_host_call(b"clock", b"\x01", b"\x00" * 8)
    store.append_invocation(log, ENTRIES[0], "key")
    assert head(store, "w") == 3 and log.last_index == 4  # it waits for a commit
    log.commit()
    assert head(store, "w") == log.last_index == 4
    assert store.idempotent_index("w", "key") == 4
    store.delete_worker("w")
    assert head(store, "w") is None


# -- entries waiting in memory for a commit ------------------------------------------------

def test_buffered_entries_are_seen_by_their_oplog_and_by_nobody_else_until_committed(store):
    log = make_worker(store, "w", 0)
    a = log.buffer(ENTRIES[0], [("idempotency", b"w\0k", (2).to_bytes(8, "big"))])
    b = log.buffer_host_call(b"clock", b"\x01", b"\x00" * 8)
    assert (a, b, log.last_index, log.pending, log.durable_index) == (2, 3, 3, 2, 1)
    # The worker's own oplog reads them, in order, after what is stored ...
    assert [i for i, _ in log.read()] == [1, 2, 3]
    assert log.get(3) == HostCall("clock", b"\x01", b"\x00" * 8)
    assert [i for i, _ in log.kinds(2)] == [2, 3]
    # ... another reader sees the store as of the last commit: whole, never a part.
    other = store.oplog("w")
    assert other.last_index == 1 and other.damage is None and len(list(other.read())) == 1
    assert store.idempotent_index("w", "k") is None and head(store, "w") == 1
    assert log.commit() == 2
    assert log.commit() == 0  # nothing waits: nothing is written
    other = store.oplog("w")
    assert other.last_index == head(store, "w") == 3 and other.damage is None
    assert [e for _, e in other.read()] == [e for _, e in log.read()]
    assert store.idempotent_index("w", "k") == 2


def test_every_batch_that_writes_entries_takes_the_waiting_ones_with_it(store):
    log = make_worker(store, "w", 0)
    log.buffer(ENTRIES[0])
    index = store.append_with_worker(log, ENTRIES[1], worker("w"))
    assert index == 3 and log.pending == 0
    assert head(store, "w") == 3 and [i for i, _ in store.oplog("w").read()] == [1, 2, 3]
    log.buffer(ENTRIES[2])
    log.append(Log(1, b"shown"))  # an append that commits writes what waits before it
    assert head(store, "w") == 5 and store.oplog("w").get(4) == ENTRIES[2]


def test_a_commit_counts_its_entries_and_tells_the_observers(store):
    seen = []

    class Observer:
        def on_commit(self, entries, seconds):
            seen.append(entries)

    class Broken:
        def on_commit(self, entries, seconds):
            raise RuntimeError("observer bug")

    store.stats.add_observer(Observer())
    store.stats.add_observer(Broken())
    log = make_worker(store, "w", 0)
    for e in ENTRIES[:3]:
        log.buffer(e)
    log.commit()
    before = store.stats.counters()
    log.append(Log(1, b"x"))
    after = store.stats.counters()
    assert seen == [1, 3, 1]  # Create, the three waiting entries, the Log
    assert after["commits"] - before["commits"] == 1
    assert after["entries"] - before["entries"] == 1
    assert store.stats.observer_errors == 1  # dropped at its first failure, commits went on


def test_an_oplog_shorter_than_recorded_is_corruption_not_history(store):
    make_worker(store, "w")  # entries 1..5
    store.backend.write([("oplog", b"w\x00" + i.to_bytes(8, "big"), None) for i in (4, 5)])
    log = store.oplog("w")
    assert log.last_index == 5, "the recorded length, not what the scan found"
    assert log.damage is not None and "entries 4..5 are lost" in str(log.damage)
    with pytest.raises(CorruptionError, match="entries 4..5 are lost") as exc:
        list(log.read())
    assert exc.value.key == "w"
    with pytest.raises(CorruptionError):
        list(log.kinds(2))
    with pytest.raises(CorruptionError):
        log.append(Log(1, b"after the loss"))  # would leave a gap and hide the loss
    assert store.oplog("w").stored_last == 3
    from golemish.oplog.check import check_store
    problems, _ = check_store(store)
    assert [str(p) for p in problems] == [
        "w oplog: 5 entries were recorded but the stored entries end at index 3: "
        "entries 4..5 are lost"]


def test_an_open_oplog_knows_its_length_from_its_own_appends(store):
    log = make_worker(store, "w")  # opened at length 1, then appended to
    store.backend.write([("oplog", b"w\x00" + (5).to_bytes(8, "big"), None)])
    with pytest.raises(CorruptionError, match="entries 5..5 are lost"):
        list(log.read())
    assert [i for i, _ in log.read(end=4)] == [1, 2, 3, 4]


def test_an_oplog_longer_than_recorded_is_corruption(store):
    make_worker(store, "w", 2)
    store.backend.put("oplog", b"w\x00" + (4).to_bytes(8, "big"), b"x")
    assert "entries up to index 4 are stored" in str(store.oplog("w").damage)


def test_a_format_1_store_gets_its_heads_when_opened_for_writing(backend):
    old = Store(backend)
    make_worker(old, "w")
    backend.write([("meta", b"head\0w", None), ("meta", b"format", b"1")])
    upgraded = Store(backend)
    assert backend.get("meta", b"format") == b"2"
    assert head(upgraded, "w") == 5 and upgraded.oplog("w").damage is None
    backend.write([("meta", b"head\0w", None)])
    assert "not recorded" in str(Store(backend).oplog("w").damage)


def test_compiled_code_is_stored_with_its_sha256(store):
    import hashlib
    store.put_compiled("k", b"native code")
    assert store.get_compiled("k") == b"native code"
    assert store.compiled_digest("k") == hashlib.sha256(b"native code").digest()
    assert store.compiled_digest("other") is None


# -- RocksDB: reads that fail, stores that are not there ------------------------------------

def flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_table_block_that_cannot_be_read_fails_the_scan(tmp_path):
    path = tmp_path / "db"
    with open_store(str(path), create=True) as s:
        log = s.create_worker(worker("c/w"), CREATE)
        for i in range(3000):
            log.append(Log(1, b"line %d of output, long enough to fill blocks" % i))
    ssts = sorted(path.glob("*.sst"), key=lambda p: p.stat().st_size)
    flip(ssts[-1], 0.3)  # the big one is the oplog's; 0.3 is inside its data blocks
    b = RocksBackend(str(path))
    try:
        with pytest.raises(CorruptionError, match="checksum mismatch") as exc:
            list(b.scan("oplog", b""))
        assert exc.value.what == "oplog" and exc.value.key == "c/w"
        assert exc.value.index is not None and 1 < exc.value.index < 3000
        with pytest.raises(CorruptionError) as exc:
            list(Store(b).oplog("c/w").read())
        assert exc.value.key == "c/w"
    finally:
        b.close()


def test_opening_creates_nothing_without_create(tmp_path):
    missing = tmp_path / "typo"
    with pytest.raises(NoStoreError, match=f"no golemish store at {missing}"):
        open_store(str(missing))
    assert not missing.exists()
    missing.mkdir()
    with pytest.raises(NoStoreError):
        open_store(str(missing), readonly=True)
    assert list(missing.iterdir()) == []
    with open_store(str(missing), create=True):
        pass
    ident = json.loads((missing / "golemish-store.json").read_text())
    assert ident["format"] == 1 and len(ident["store_id"]) == 32
    assert (missing.stat().st_mode & 0o777) == 0o700
    assert ((missing / "golemish-store.json").stat().st_mode & 0o777) == 0o600


def test_a_store_without_current_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "db"
    with open_store(str(path), create=True) as s:
        make_worker(s, "w")
    (path / "CURRENT").unlink()
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    for kw in ({}, {"create": True}, {"readonly": True}, {}):
        with pytest.raises(CorruptionError, match="CURRENT file is missing"):
            open_store(str(path), **kw)
    assert {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()} == before


READER_CHILD = textwrap.dedent("""
    import sys, time
    from golemish.oplog import Log, open_store
    store = open_store(sys.argv[1])
    store.oplog("w").append(Log(1, b"acknowledged while the child holds the store"))
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.mark.chaos
def test_a_reader_sees_acknowledged_writes_while_a_writer_holds_the_store(tmp_path):
    path = str(tmp_path / "db")
    with open_store(path, create=True) as s:
        make_worker(s, "w")
    with subprocess.Popen([sys.executable, "-c", READER_CHILD, path], stdout=subprocess.PIPE,
                          text=True) as child:
        try:
            assert child.stdout.readline().strip() == "ready"
            with pytest.raises(StoreInUseError):
                open_store(path)
            for _ in range(2):  # two readers at once are fine too
                with open_store(path, readonly=True) as r, open_store(path, readonly=True):
                    log = r.oplog("w")
                    assert log.last_index == 6 and log.damage is None
                    assert log.get(6) == Log(1, b"acknowledged while the child holds the store")
                    with pytest.raises(ReadOnlyStoreError):
                        log.append(Log(1, b"no"))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
    with open_store(path, readonly=True) as r:  # no writer: read-only open of its own
        assert r.oplog("w").last_index == 6
