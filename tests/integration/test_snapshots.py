"""Snapshots: both trackers agree, recovery uses snapshot + tail, and falls back cleanly."""

from __future__ import annotations

import hashlib

import pytest
import wasmtime

from golemish.oplog import Snapshot
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy
from golemish.runtime.snapshot.capture import SnapshotConfig


def ints(res):
    return [v for _, v in res.results]


def kv_runtime(home, policy="off", tracker="auto", **kw):
    return Runtime(RuntimeConfig(home=home, snapshot_policy=SnapshotPolicy.parse(policy),
                                 snapshots=SnapshotConfig(tracker=tracker, **kw)))


def state_of(rt, worker_id):
    """(memory sha256, globals) of a live worker."""
    w = rt.worker(worker_id)
    inst = w.instance
    mem = hashlib.sha256(inst.read(0, inst.memory_size())).hexdigest()
    return mem, tuple(inst.get_global(n) for n in w.layout.globals)


KV_OPS = [("fill", [2]), ("put", [7, 100]), ("put", [8, 9000]), ("touch", [50]),
          ("del", [7]), ("fill", [1]), ("put", [7, 40000]), ("touch", [5])]


def test_uffd_and_hash_trackers_give_identical_manifests(tmp_path, guests):
    from golemish.runtime.snapshot.dirty import UffdTracker
    if not UffdTracker.available():
        pytest.skip("userfaultfd write-protect tracking needs Linux >= 6.7")
    manifests = {}
    for tracker in ("uffd", "hash"):
        with kv_runtime(str(tmp_path / tracker), tracker=tracker) as rt:
            rt.deploy(guests["kv"].read_bytes(), "kv")
            rt.invoke("kv/a", "count")
            rt.snapshot("kv/a")
            seq = []
            for fn, args in KV_OPS:
                rt.invoke("kv/a", fn, [str(a) for a in args])
                entry = rt.snapshot("kv/a")
                assert entry is not None and entry.tracker == tracker
                index = rt.store.oplog("kv/a").last_index
                m = rt.store.snapshots.manifest("kv/a", index)
                seq.append((m.pages, m.globals, m.memory_size, entry.changed_pages))
            manifests[tracker] = seq
    assert manifests["uffd"] == manifests["hash"]
    assert any(changed < 50 for *_, changed in manifests["uffd"])  # really incremental


def test_recovery_restores_the_latest_snapshot_and_replays_only_the_tail(tmp_path, guests):
    home = str(tmp_path / "s")
    with kv_runtime(home, policy="every:4") as rt:
        rt.deploy(guests["counter"].read_bytes(), "counter")
        for i in range(1, 11):
            rt.invoke("counter/a", "add", [str(i)])
        want = ints(rt.invoke("counter/a", "checksum"))
    with kv_runtime(home) as rt:
        report = rt.resume("counter/a")
        assert report.mode == "snapshot" and report.fallbacks == []
        assert report.replayed_invocations == 3  # add 9, add 10, checksum
        assert ints(rt.invoke("counter/a", "get")) == [55]
        assert ints(rt.invoke("counter/a", "checksum")) == want
    with kv_runtime(home) as rt:
        rt.config.recovery = "replay"
        report = rt.resume("counter/a")
        assert report.mode == "replay" and report.replayed_invocations == 13
        assert ints(rt.invoke("counter/a", "checksum")) == want


def _corrupt(rt, table, key):
    raw = bytearray(rt.store.backend.get(table, key))
    raw[len(raw) // 2] ^= 0x5A
    rt.store.backend.put(table, key, bytes(raw))


def test_a_corrupt_page_falls_back_to_the_previous_snapshot(tmp_path, guests):
    home = str(tmp_path / "s")
    with kv_runtime(home) as rt:
        rt.deploy(guests["kv"].read_bytes(), "kv")
        rt.invoke("kv/a", "fill", ["1"])
        rt.snapshot("kv/a")
        older = rt.store.oplog("kv/a").last_index
        rt.invoke("kv/a", "put", ["900", "5000"])
        rt.snapshot("kv/a")
        newest = rt.store.oplog("kv/a").last_index
        want = state_of(rt, "kv/a")
        # Damage a page only the newest snapshot references.
        snaps = rt.store.snapshots
        only_new = (snaps.manifest("kv/a", newest).nonzero()
                    - snaps.manifest("kv/a", older).nonzero())
        _corrupt(rt, "cpages", sorted(only_new)[0])
    with kv_runtime(home) as rt:
        report = rt.resume("kv/a")
        assert report.mode == "snapshot" and report.snapshot_index == older
        assert f"index {newest}" in report.fallbacks[0]
        assert "content hash mismatch" in report.fallbacks[0]
        assert report.replayed_invocations == 1  # the put after the older snapshot
        assert state_of(rt, "kv/a") == want


def test_corrupt_manifests_fall_back_to_full_replay(tmp_path, guests):
    home = str(tmp_path / "s")
    with kv_runtime(home, policy="every:1") as rt:
        rt.deploy(guests["kv"].read_bytes(), "kv")
        for k in range(4):
            rt.invoke("kv/a", "put", [str(k), "3000"])
        want = state_of(rt, "kv/a")
        indexes = rt.store.snapshots.indexes("kv/a")
        assert len(indexes) == 3  # keep=3 pruned the oldest
        for i in indexes:
            _corrupt(rt, "snapshots", b"kv/a\0" + i.to_bytes(8, "big"))
    with kv_runtime(home) as rt:
        report = rt.resume("kv/a")
        assert report.mode == "replay" and len(report.fallbacks) == 3
        assert all("checksum mismatch" in f or "undecodable" in f for f in report.fallbacks)
        assert state_of(rt, "kv/a") == want


def test_restore_does_not_run_initialize_again(tmp_path):
    mod = wasmtime.wat2wasm("""
      (module
        (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 100) "init\\n")
        (global $inits (mut i32) (i32.const 0))
        (func (export "_initialize")
          (global.set $inits (i32.add (global.get $inits) (i32.const 1)))
          (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 5))
          (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
        (func (export "inits") (result i32) (global.get $inits)))""")
    home = str(tmp_path / "s")
    with kv_runtime(home) as rt:
        rt.deploy(mod, "init")
        assert ints(rt.invoke("init/a", "inits")) == [1]
        rt.snapshot("init/a")
    shown = []
    with kv_runtime(home) as rt:
        report = rt.resume("init/a", output=lambda s, d: shown.append(d))
        assert report.mode == "snapshot" and report.replayed_host_calls == 0
        assert ints(rt.invoke("init/a", "inits")) == [1]
    assert shown == []


def test_retention_keeps_the_last_k_and_collects_their_orphaned_pages(tmp_path, guests):
    home = str(tmp_path / "s")
    with kv_runtime(home, keep=2) as rt:
        rt.deploy(guests["kv"].read_bytes(), "kv")
        for k in range(6):
            rt.invoke("kv/a", "put", [str(k % 2), str(20000 + k)])  # rewrites: pages die
            rt.snapshot("kv/a")
        snaps = rt.store.snapshots
        kept = snaps.indexes("kv/a")
        assert len(kept) == 2
        referenced = set().union(*(snaps.manifest("kv/a", i).nonzero() for i in kept))
        base = snaps.pages.base(snaps.manifest("kv/a", kept[0]).base)
        assert base is not None  # the fresh instance's image, stored once per component
        stored = {k for k, _ in rt.store.backend.scan("cpages", b"")}
        assert stored == referenced | base.nonzero()
        # Snapshot entries stay in the oplog as history.
        assert sum(isinstance(e, Snapshot) for _, e in rt.oplog("kv/a")) == 6
        rt.delete_worker("kv/a")
        # Only the component's base is left; no per-worker pages at all.
        assert {k for k, _ in rt.store.backend.scan("cpages", b"")} == base.nonzero()
        assert list(rt.store.backend.scan("pages", b"")) == []
        assert rt.store.snapshots.indexes("kv/a") == []


def test_a_grown_table_disables_snapshots_and_replay_still_works(tmp_path):
    mod = wasmtime.wat2wasm("""
      (module (memory (export "memory") 1) (table 1 funcref)
        (global $n (mut i32) (i32.const 0))
        (func (export "grow") (result i32)
          (global.set $n (i32.add (global.get $n) (i32.const 1)))
          (table.grow (ref.null func) (i32.const 1)))
        (func (export "n") (result i32) (global.get $n)))""")
    home = str(tmp_path / "s")
    with kv_runtime(home) as rt:
        rt.deploy(mod, "tab")
        rt.invoke("tab/a", "grow")
        assert rt.snapshot("tab/a") is None
        assert "table" in rt.store.get_worker("tab/a")["snapshots_disabled"]
    with kv_runtime(home) as rt:
        assert rt.resume("tab/a").mode == "replay"
        assert ints(rt.invoke("tab/a", "n")) == [1]


def test_archived_oplog_stays_readable_and_replayable(tmp_path, guests):
    from golemish.oplog import CorruptionError
    from golemish.oplog.worker_oplog import ARCHIVE_CHUNK

    home = str(tmp_path / "s")
    cfg = dict(snapshot_policy=SnapshotPolicy.parse("every:200"), oplog_retention="archive",
               snapshots=SnapshotConfig(keep=2))
    with Runtime(RuntimeConfig(home=home, **cfg)) as rt:
        rt.deploy(guests["counter"].read_bytes(), "counter")
        for _ in range(1200):
            rt.invoke("counter/a", "add", ["1"])
        log = rt.store.oplog("counter/a")
        lo, hi = log.archive_span()
        assert lo == 2 and hi - lo >= 2 * ARCHIVE_CHUNK  # Create stays live
        assert hi <= min(rt.store.snapshots.indexes("counter/a"))
        entries = rt.oplog("counter/a")
        assert [i for i, _ in entries] == list(range(1, log.last_index + 1))
        assert rt.worker_info("counter/a")["invocations"] == 1200
    with Runtime(RuntimeConfig(home=home, recovery="replay", **cfg)) as rt:
        assert rt.resume("counter/a").replayed_invocations == 1200
        assert ints(rt.invoke("counter/a", "get")) == [1200]
        _corrupt(rt, "archive", b"counter/a\0" + (2).to_bytes(8, "big"))
    with Runtime(RuntimeConfig(home=home, recovery="replay", **cfg)) as rt:
        with pytest.raises(CorruptionError, match="archived oplog chunk"):
            rt.resume("counter/a")
    with Runtime(RuntimeConfig(home=home, **cfg)) as rt:
        # Snapshot recovery never reads the archive.
        assert rt.resume("counter/a").mode == "snapshot"
        assert ints(rt.invoke("counter/a", "get")) == [1200]


def test_a_snapshot_with_unreadable_host_state_falls_back(tmp_path, guests):
    from dataclasses import replace
    from golemish.oplog import codec

    home = str(tmp_path / "s")
    with kv_runtime(home) as rt:
        rt.deploy(guests["counter"].read_bytes(), "counter")
        rt.invoke("counter/a", "add", ["4"])
        rt.snapshot("counter/a")
        index = rt.store.snapshots.indexes("counter/a")[0]
        m = rt.store.snapshots.manifest("counter/a", index)
        old = replace(m, host=codec.encode([1, 100, 2000]))  # an earlier layout
        rt.store.backend.put("snapshots", b"counter/a\0" + index.to_bytes(8, "big"),
                             old.encode())
    with kv_runtime(home) as rt:
        report = rt.resume("counter/a")
        assert report.mode == "replay" and "host state" in report.fallbacks[0]
        assert ints(rt.invoke("counter/a", "get")) == [4]


def test_workers_snapshot_in_parallel_threads(tmp_path, guests):
    """zstd contexts are per thread: sharing one crashed the process (SIGSEGV)."""
    import threading

    home = str(tmp_path / "s")
    with kv_runtime(home, policy="every:1") as rt:
        rt.deploy(guests["kv"].read_bytes(), "kv")
        errors = []

        def work(w):
            try:
                for k in range(40):
                    rt.invoke(w, "put", [str(k), "20000"])
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(f"kv/t{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        want = [ints(rt.invoke(f"kv/t{i}", "checksum")) for i in range(2)]
    with kv_runtime(home) as rt:
        for i in range(2):
            assert rt.resume(f"kv/t{i}").mode == "snapshot"
            assert ints(rt.invoke(f"kv/t{i}", "checksum")) == want[i]
