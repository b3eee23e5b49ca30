"""The shared page store: pages stored once per store, counted references, retention,
restores that write only what differs from a fresh instance, and stores of format 1."""

from __future__ import annotations

import hashlib
import struct

import zstandard

from golemish.oplog.check import check_store
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot import zstd_into
from golemish.runtime.snapshot.capture import SnapshotConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy


def ints(res):
    return [v for _, v in res.results]


def state_of(rt, worker_id):
    """(memory sha256, globals) of a live worker."""
    w = rt.worker(worker_id)
    inst = w.instance
    mem = hashlib.sha256(inst.read(0, inst.memory_size())).hexdigest()
    return mem, tuple(inst.get_global(n) for n in w.layout.globals)


def runtime(home, policy="off", **kw):
    return Runtime(RuntimeConfig(home=home, snapshot_policy=SnapshotPolicy.parse(policy),
                                 snapshots=SnapshotConfig(**kw)))


def keys(rt, table):
    return {k for k, _ in rt.store.backend.scan(table, b"")}


def problems(rt):
    return [str(p) for p in check_store(rt.store, deep=True)[0]]


def test_workers_of_one_component_share_pages_and_their_base(home, guests):
    with runtime(home) as rt:
        rt.deploy(guests["kv"].read_bytes(), "kv")
        first = None
        for w in ("a", "b", "c"):
            rt.invoke(f"kv/{w}", "fill", ["3"])
            entry = rt.snapshot(f"kv/{w}")
            assert entry is not None
            first = first or entry
            if w != "a":  # the same state as worker a's: nothing new to store
                assert entry.stored_bytes == 0
        assert first.stored_bytes > 0
        snaps = rt.store.snapshots
        m = snaps.manifest("kv/b", snaps.indexes("kv/b")[0])
        base = snaps.pages.base(m.base)
        assert base is not None and base.memory_size <= m.memory_size
        # Each page is stored once, and counted once per manifest holding it.
        held = snaps.pages.refs(m)
        page = next(k for k in held if len(k) == 16)
        assert snaps.pages.count(page) == 3
        assert snaps.pages.count(b"b" + m.base.encode()) == 3
        assert problems(rt) == []
        for w in ("a", "b", "c"):
            rt.delete_worker(f"kv/{w}")
        assert keys(rt, "cpages") == base.nonzero()  # the component's base is left
        assert problems(rt) == []
        from golemish.runtime import versions
        versions.delete_component(rt, "kv", 0)  # and with it, its base
        assert keys(rt, "cpages") == keys(rt, "pagerefs") == keys(rt, "bases") == set()


def test_retention_releases_references_and_deletes_pages_at_zero(home, guests):
    with runtime(home, keep=2) as rt:
        rt.deploy(guests["kv"].read_bytes(), "kv")
        for k in range(8):
            for w in ("a", "b"):
                rt.invoke(f"kv/{w}", "put", [str(k % 3), str(30000 + k * 7 + len(w))])
                rt.snapshot(f"kv/{w}")
            assert problems(rt) == []
        snaps = rt.store.snapshots
        live = set()
        for w in ("a", "b"):
            assert len(snaps.indexes(f"kv/{w}")) == 2
            for i in snaps.indexes(f"kv/{w}"):
                live |= snaps.manifest(f"kv/{w}", i).nonzero()
        base = snaps.pages.base(snaps.manifest("kv/a", snaps.indexes("kv/a")[0]).base)
        assert keys(rt, "cpages") == live | base.nonzero()


def test_restore_writes_only_the_pages_that_differ_from_a_fresh_instance(home, guests):
    with runtime(home) as rt:
        rt.deploy(guests["kv"].read_bytes(), "kv")
        rt.invoke("kv/a", "put", ["5", "77"])
        got = ints(rt.invoke("kv/a", "get", ["5"]))
        rt.snapshot("kv/a")
        want = state_of(rt, "kv/a")
        total = rt.store.snapshots.manifest("kv/a", rt.store.oplog("kv/a").last_index).page_count
    with runtime(home) as rt:
        report = rt.resume("kv/a")
        assert report.mode == "snapshot"
        assert 0 < report.restored_pages < total // 2
        assert state_of(rt, "kv/a") == want
        assert ints(rt.invoke("kv/a", "get", ["5"])) == got


def test_store_check_reports_wrong_counts_and_unreferenced_pages(home, guests):
    with runtime(home) as rt:
        rt.deploy(guests["kv"].read_bytes(), "kv")
        rt.invoke("kv/a", "put", ["1", "2"])
        rt.snapshot("kv/a")
        snaps = rt.store.snapshots
        m = snaps.manifest("kv/a", snaps.indexes("kv/a")[0])
        page = sorted(k for k in snaps.pages.refs(m) if len(k) == 16)[0]
        b = rt.store.backend
        b.put("pagerefs", page, struct.pack(">Q", 5))
        b.put("cpages", b"\x07" * 16, b"junk")
        found = problems(rt)
        assert f"reference count of page {page.hex()}: is 5, but 1 manifest(s) reference it" \
            in found
        assert f"stored page {'07' * 16}: no manifest references it" in found


def test_a_format_1_store_stays_readable_and_ages_out(home, guests):
    """Snapshots an earlier golemish wrote (pages per worker) restore, prune and check."""
    with runtime(home, keep=2) as rt:
        rt.store.snapshots.shared = False  # write as before the shared store
        rt.deploy(guests["kv"].read_bytes(), "kv")
        for k in range(3):
            rt.invoke("kv/a", "put", [str(k), str(k + 100)])
            rt.snapshot("kv/a")
        from golemish.runtime import versions
        versions.fork(rt, "kv/a", "kv/f")  # a format 1 fork links and shares a space
        assert keys(rt, "pages")
        assert not any(rt.store.snapshots.manifest("kv/a", i).shared
                       for i in rt.store.snapshots.indexes("kv/a"))
        assert problems(rt) == []
        want = state_of(rt, "kv/a")
        want_f = ints(rt.invoke("kv/f", "get", ["2"]))
    with runtime(home, keep=2) as rt:
        report = rt.resume("kv/a")
        assert report.mode == "snapshot" and not report.fallbacks
        assert state_of(rt, "kv/a") == want
        for k in range(3):  # format 2 snapshots push the format 1 ones out
            rt.invoke("kv/a", "put", [str(k), str(k + 200)])
            rt.snapshot("kv/a")
            assert problems(rt) == []
        assert all(rt.store.snapshots.manifest("kv/a", i).shared
                   for i in rt.store.snapshots.indexes("kv/a"))
        assert keys(rt, "pages")  # the fork still uses its format 1 manifests
        assert ints(rt.invoke("kv/f", "get", ["2"])) == want_f
        rt.delete_worker("kv/f")
        assert keys(rt, "pages") == set() and problems(rt) == []
        assert ints(rt.invoke("kv/a", "get", ["2"])) not in ([-1], want_f)


def test_a_grown_restore_decompresses_in_place_as_the_bytes_path_does(home, guests,
                                                                       monkeypatch):
    # 12 MiB of values: memory grows past POPULATE_MIN, so the restore maps it in a
    # thread while it decompresses the pages straight into memory.
    with runtime(home) as rt:
        rt.deploy(guests["kv"].read_bytes(), "kv")
        rt.invoke("kv/a", "fill", ["12"])
        rt.snapshot("kv/a")
        want = state_of(rt, "kv/a")
    assert zstd_into.available()
    with runtime(home) as rt:
        report = rt.resume("kv/a")
        assert report.mode == "snapshot" and report.restored_pages > 12 * 64
        assert state_of(rt, "kv/a") == want
    monkeypatch.setattr(zstd_into, "available", lambda: False)  # no libzstd: bytes path
    with runtime(home) as rt:
        assert rt.resume("kv/a").mode == "snapshot"
        assert state_of(rt, "kv/a") == want


def test_a_page_that_decompresses_to_the_wrong_size_is_damage(home, guests):
    with runtime(home) as rt:
        rt.deploy(guests["kv"].read_bytes(), "kv")
        rt.invoke("kv/a", "put", ["5", "77"])
        rt.snapshot("kv/a")
        want = state_of(rt, "kv/a")
        snaps = rt.store.snapshots
        m = snaps.manifest("kv/a", snaps.indexes("kv/a")[0])
        page = sorted(k for k in snaps.pages.refs(m) if len(k) == 16)[0]
        # A well-formed frame, but of half a page: it must not be taken for the page.
        rt.store.backend.put("cpages", page, zstandard.ZstdCompressor().compress(
            bytes(m.page_size // 2)))
    with runtime(home) as rt:
        report = rt.resume("kv/a")
        assert report.mode == "replay"
        assert "content hash mismatch" in report.fallbacks[0]
        assert page.hex() in report.fallbacks[0]
        assert state_of(rt, "kv/a") == want
