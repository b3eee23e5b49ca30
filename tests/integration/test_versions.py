"""Versions and time travel on a real RocksDB store: revert, fork and update workers."""

from __future__ import annotations

import threading
import time

import pytest

from golemish.oplog import EffectBegin, InvokeStart, Revert, Update, UpdateFailed
from golemish.runtime import invocation, versions
from golemish.runtime.errors import ArgumentError, UpdateError
from golemish.runtime.journal import effect_key


def ints(res):
    return [v for _, v in res.results]


def bank(make_runtime, guests, *versions_):
    rt = make_runtime()
    for v in versions_ or (1,):
        rt.deploy(guests[f"bank_v{v}"].read_bytes(), "bank")
    return rt


def call(rt, w, fn, *args):
    return ints(rt.invoke(w, fn, [str(a) for a in args]))[0]


def starts(rt, w):
    return [i for i, e in rt.oplog(w) if isinstance(e, InvokeStart)]


# -- revert ------------------------------------------------------------------------------
def test_revert_by_index_then_recover_after_a_restart(make_runtime, guests):
    rt = bank(make_runtime, guests)
    for n in (5, 7, 11):
        call(rt, "bank/a", "deposit", n)
    second_end = [i for i, e in rt.oplog("bank/a") if e.NAME == "return"][1]
    r = versions.revert(rt, "bank/a", to_index=second_end)
    assert (r.target, r.undone, r.effects) == (second_end, 1, [])
    assert call(rt, "bank/a", "balance") == 12
    assert call(rt, "bank/a", "deposit", 1) == 13
    rt.close()

    for recovery in ("auto", "replay"):  # the snapshot after the revert, and full replay
        rt2 = make_runtime(recovery=recovery)
        assert call(rt2, "bank/a", "balance") == 13
        assert call(rt2, "bank/a", "ops") == 3
        rt2.close()
    rt3 = make_runtime()
    entries = rt3.oplog("bank/a")
    assert any(isinstance(e, Revert) for _, e in entries)  # nothing was deleted
    skipped = versions.skipped(rt3, "bank/a")
    assert skipped and skipped[0][0] == second_end + 1


def test_revert_by_invocations_ignores_snapshots_it_voided(make_runtime, guests):
    rt = bank(make_runtime, guests)
    call(rt, "bank/a", "deposit", 5)
    rt.snapshot("bank/a")
    for n in (7, 11):
        call(rt, "bank/a", "deposit", n)
        rt.snapshot("bank/a")  # snapshots of states the revert abandons
    r = versions.revert(rt, "bank/a", last_invocations=2)
    assert r.undone == 2
    assert r.recovery is not None and r.recovery.snapshot_index < r.target + 1
    assert call(rt, "bank/a", "balance") == 5
    rt.close()
    rt2 = make_runtime()
    assert call(rt2, "bank/a", "balance") == 5
    # Later reverts count only invocations still in effect (reads are invocations too).
    call(rt2, "bank/a", "deposit", 2)
    versions.revert(rt2, "bank/a", last_invocations=1)
    assert call(rt2, "bank/a", "balance") == 5
    versions.revert(rt2, "bank/a", to_index=1)  # back to the freshly created worker
    assert call(rt2, "bank/a", "balance") == 0
    with pytest.raises(ArgumentError, match="has 1 invocation"):
        versions.revert(rt2, "bank/a", last_invocations=2)


def test_revert_refuses_an_index_inside_an_invocation(make_runtime, guests):
    rt = bank(make_runtime, guests)
    call(rt, "bank/a", "deposit", 5)
    inside = starts(rt, "bank/a")[0] + 1
    with pytest.raises(ArgumentError, match="inside the invocation"):
        versions.revert(rt, "bank/a", to_index=inside)
    assert call(rt, "bank/a", "balance") == 5


def test_revert_frees_idempotency_keys_of_undone_invocations(make_runtime, guests):
    rt = bank(make_runtime, guests)
    assert ints(rt.invoke("bank/a", "deposit", ["5"], idempotency_key="k1")) == [5]
    assert ints(rt.invoke("bank/a", "deposit", ["5"], idempotency_key="k2")) == [10]
    versions.revert(rt, "bank/a", last_invocations=1)
    assert ints(rt.invoke("bank/a", "deposit", ["5"], idempotency_key="k1")) == [5]  # kept
    assert ints(rt.invoke("bank/a", "deposit", ["3"], idempotency_key="k2")) == [8]  # ran


# -- fork ----------------------------------------------------------------------------------
def test_fork_then_divergent_invocations_on_both(make_runtime, guests):
    rt = bank(make_runtime, guests)
    for n in (5, 7):
        call(rt, "bank/a", "deposit", n)
    rt.snapshot("bank/a")
    call(rt, "bank/a", "deposit", 11)
    f = versions.fork(rt, "bank/a", "bank/b")
    assert f.snapshot > 0
    call(rt, "bank/a", "withdraw", 3)
    call(rt, "bank/b", "deposit", 100)
    assert (call(rt, "bank/a", "balance"), call(rt, "bank/b", "balance")) == (20, 123)
    # A fork at an earlier index: the state of the parent there.
    early = [i for i, e in rt.oplog("bank/a") if e.NAME == "return"][0]
    versions.fork(rt, "bank/a", "bank/c", at=early)
    assert call(rt, "bank/c", "balance") == 5
    rt.close()
    rt2 = make_runtime()
    assert [call(rt2, w, "balance") for w in ("bank/a", "bank/b", "bank/c")] == [20, 123, 5]
    assert rt2.worker_info("bank/b")["forked_from"].startswith("bank/a@")


def test_fork_survives_pruning_and_deletion_of_its_parent(make_runtime, guests):
    rt = bank(make_runtime, guests)
    call(rt, "bank/a", "deposit", 5)
    rt.snapshot("bank/a")
    pages = sorted(k for k, _ in rt.store.backend.scan("cpages", b""))
    versions.fork(rt, "bank/a", "bank/b")
    # The fork gets a copy of the manifest (16 bytes per page) and a reference on each
    # of its pages in the shared store: no page is copied.
    assert sorted(k for k, _ in rt.store.backend.scan("cpages", b"")) == pages
    for n in range(6):  # the parent prunes the snapshot the fork starts from
        call(rt, "bank/a", "deposit", 1)
        rt.snapshot("bank/a")
    rt.delete_worker("bank/a")
    rt.close()
    rt2 = make_runtime()
    assert call(rt2, "bank/b", "balance") == 5
    rep = rt2._workers["bank/b"].last_recovery
    assert rep is not None and rep.mode == "snapshot" and not rep.fallbacks
    from golemish.oplog.check import check_store
    problems, _ = check_store(rt2.store)
    assert problems == []


def test_fork_must_stay_in_its_component_and_not_exist(make_runtime, guests):
    rt = bank(make_runtime, guests)
    call(rt, "bank/a", "deposit", 5)
    with pytest.raises(ArgumentError, match="same component"):
        versions.fork(rt, "bank/a", "other/b")
    versions.fork(rt, "bank/a", "bank/b")
    with pytest.raises(ArgumentError, match="exists"):
        versions.fork(rt, "bank/a", "bank/b")


def test_effect_keys_of_a_fork_differ_from_its_parent():
    # Effects are keyed by worker id and oplog index: the same position in a fork and
    # in its parent gives different keys, so a receiver never merges their effects.
    assert effect_key("bank/a", 9) != effect_key("bank/b", 9)
    assert effect_key("bank/a", 9) == effect_key("bank/a", 9)


# -- auto update ---------------------------------------------------------------------------
def test_auto_update_with_a_bug_fix_replays_and_continues(make_runtime, guests):
    rt = bank(make_runtime, guests, 1, 2)
    _create_on(rt, "bank/a", 0)  # component versions count from 0
    for n in (50, 7):
        call(rt, "bank/a", "deposit", n)
    call(rt, "bank/a", "withdraw", 20)
    assert rt.worker_info("bank/a")["version"] == 0  # (asking the guest would diverge)
    r = versions.update(rt, "bank/a", 1)
    assert (r.from_version, r.version, r.mode) == (0, 1, "auto")
    assert call(rt, "bank/a", "version") == 2
    assert call(rt, "bank/a", "balance") == 37
    assert call(rt, "bank/a", "withdraw", 100) == -1  # the fix works
    rt.close()
    rt2 = make_runtime()
    assert call(rt2, "bank/a", "version") == 2 and call(rt2, "bank/a", "balance") == 37
    rep = rt2._workers["bank/a"].last_recovery
    assert rep is not None and rep.mode == "snapshot"  # the new version's snapshot
    hist = versions.version_history(rt2, "bank/a")
    assert [(h["kind"], h["version"]) for h in hist] == [("create", 0), ("update", 1)]
    rt2.close()
    rt3 = make_runtime(recovery="replay")  # full replay after the update: on v2
    assert call(rt3, "bank/a", "balance") == 37 and call(rt3, "bank/a", "version") == 2


def test_auto_update_that_diverges_fails_and_leaves_the_worker_alone(make_runtime, guests):
    rt = bank(make_runtime, guests, 1, 2, 3)
    _create_on(rt, "bank/a", 0)  # component versions count from 0
    for n in (500, 7):
        call(rt, "bank/a", "deposit", n)
    before = rt.oplog("bank/a")
    with pytest.raises(UpdateError, match="diverged .* stays on v0"):
        versions.update(rt, "bank/a", 2)
    after = rt.oplog("bank/a")
    assert [e for _, e in after[:len(before)]] == [e for _, e in before]
    assert isinstance(after[-1][1], UpdateFailed) and "diverged" in after[-1][1].message
    assert call(rt, "bank/a", "version") == 1 and call(rt, "bank/a", "balance") == 507
    rt.close()
    rt2 = make_runtime()
    assert call(rt2, "bank/a", "version") == 1 and call(rt2, "bank/a", "balance") == 507
    assert rt2.worker_info("bank/a")["version"] == 0


def test_an_invocation_in_flight_finishes_on_the_old_version(make_runtime, guests,
                                                            monkeypatch):
    rt = bank(make_runtime, guests, 1, 2)
    _create_on(rt, "bank/a", 0)  # component versions count from 0
    started, go = threading.Event(), threading.Event()
    real = invocation.run

    def slow(w, function, params, *rest):
        started.set()
        go.wait(5)
        return real(w, function, params, *rest)

    monkeypatch.setattr(invocation, "run", slow)  # the body of a running invocation
    t = threading.Thread(target=lambda: rt.invoke("bank/a", "deposit", ["4"]))
    t.start()
    started.wait(5)
    done: list = []
    u = threading.Thread(target=lambda: done.append(versions.update(rt, "bank/a", 1)))
    u.start()
    time.sleep(0.2)
    assert not done  # waits for the invocation
    go.set()
    t.join(5)
    u.join(10)
    entries = rt.oplog("bank/a")
    upd = next(i for i, e in entries if isinstance(e, Update))
    prior = [e.NAME for i, e in entries if i < upd and e.NAME != "snapshot"]
    assert prior[-1] == "return"  # the invocation ended before the update began
    assert done and call(rt, "bank/a", "version") == 2


def test_deploy_updates_idle_workers(make_runtime, guests):
    rt = bank(make_runtime, guests, 1)
    call(rt, "bank/a", "deposit", 5)
    call(rt, "bank/b", "deposit", 6)
    v2 = rt.deploy(guests["bank_v2"].read_bytes(), "bank").meta["version"]
    out = dict(versions.update_idle(rt, "bank", v2))
    assert out == {"bank/a": "updated v0 -> v1", "bank/b": "updated v0 -> v1"}
    assert call(rt, "bank/a", "version") == 2 and call(rt, "bank/b", "balance") == 6


def _create_on(rt, worker_id, version):
    """Create a worker on an older version than the latest (as if made before a deploy)."""
    meta = rt.component("bank", version)
    from golemish.oplog import Create
    comp = worker_id.split("/")[0]
    m = {"id": worker_id, "component": comp, "version": version, "created_at": time.time(),
         "status": "idle", "memory_limit": rt.config.memory_limit,
         "time_limit": rt.config.time_limit, "durable": True}
    rt.store.create_worker(m, Create(comp, version, meta["hash"], (), (), time.time_ns()))


def test_revert_warns_about_effects_it_does_not_undo(make_runtime):
    # An HTTP effect is recorded as EffectBegin + answer; the revert reports it.
    import wasmtime
    rt = make_runtime()
    rt.deploy(wasmtime.wat2wasm('(module (memory (export "memory") 1)'
                                '(func (export "f") (result i32) (i32.const 1)))'), "fx")
    rt.invoke("fx/a", "f")
    w = rt.worker("fx/a")
    w.journal.append(InvokeStart("f", (), None, 0))
    w.journal.append(EffectBegin("http_request", b"", "k"))
    from golemish.oplog import HostCall, InvokeEnd
    w.journal.append(HostCall("http_request", b"", b""))
    w.journal.append(InvokeEnd((("i32", 1),), 0))
    r = versions.revert(rt, "fx/a", last_invocations=1)
    assert r.effects and r.effects[0].startswith("http_request at")


# -- manual update -------------------------------------------------------------------------
def test_manual_update_carries_state_across_a_layout_change(make_runtime, guests):
    rt = bank(make_runtime, guests, 1, 4)  # component versions 0 (bank_v1) and 1 (bank_v4)
    _create_on(rt, "bank/a", 0)
    for n in (5, 7):
        call(rt, "bank/a", "deposit", n)
    call(rt, "bank/a", "withdraw", 2)
    r = versions.update(rt, "bank/a", 1, "manual")
    assert (r.from_version, r.version, r.mode) == (0, 1, "manual")
    assert call(rt, "bank/a", "version") == 4
    assert (call(rt, "bank/a", "balance"), call(rt, "bank/a", "ops")) == (10, 3)
    assert call(rt, "bank/a", "deposit", 1) == 11
    rt.close()
    for recovery in ("auto", "replay"):  # the snapshot, or the saved state in the entry
        rt2 = make_runtime(recovery=recovery)
        assert (call(rt2, "bank/a", "balance"), call(rt2, "bank/a", "ops")) == (11, 4)
        rep = rt2._workers["bank/a"].last_recovery
        assert rep is not None
        assert rep.mode == ("snapshot" if recovery == "auto" else "manual update")
        rt2.close()
    rt3 = make_runtime()
    upd = [e for _, e in rt3.oplog("bank/a") if isinstance(e, Update)]
    assert upd and upd[0].mode == "manual" and len(upd[0].state) == 16


def test_manual_update_without_the_exports_is_refused_and_recorded(make_runtime, guests):
    rt = bank(make_runtime, guests, 1, 2)
    _create_on(rt, "bank/a", 0)
    call(rt, "bank/a", "deposit", 5)
    with pytest.raises(UpdateError, match="does not export golemish_load"):
        versions.update(rt, "bank/a", 1, "manual")
    assert isinstance(rt.oplog("bank/a")[-1][1], UpdateFailed)
    assert call(rt, "bank/a", "balance") == 5 and call(rt, "bank/a", "version") == 1


def test_reverting_past_a_manual_update_returns_to_the_old_version(make_runtime, guests):
    rt = bank(make_runtime, guests, 1, 4)
    _create_on(rt, "bank/a", 0)
    call(rt, "bank/a", "deposit", 5)
    end = rt.store.oplog("bank/a").last_index
    versions.update(rt, "bank/a", 1, "manual")
    call(rt, "bank/a", "deposit", 1)
    r = versions.revert(rt, "bank/a", to_index=end)
    assert r.version == 0
    assert call(rt, "bank/a", "version") == 1 and call(rt, "bank/a", "balance") == 5


def test_a_fork_of_a_fork_outlives_both_ancestors(make_runtime, guests):
    rt = bank(make_runtime, guests)
    call(rt, "bank/a", "deposit", 5)
    rt.snapshot("bank/a")
    versions.fork(rt, "bank/a", "bank/b")
    versions.fork(rt, "bank/b", "bank/c")  # links to b's link to a's manifest
    rt.delete_worker("bank/a")  # still linked: b gets a copy in the same batch
    rt.delete_worker("bank/b")
    rt.close()
    rt2 = make_runtime()
    assert call(rt2, "bank/c", "balance") == 5
    rep = rt2._workers["bank/c"].last_recovery
    assert rep is not None and rep.mode == "snapshot" and not rep.fallbacks
    from golemish.oplog.check import check_store
    assert check_store(rt2.store)[0] == []
    rt2.delete_worker("bank/c")  # the last one: its pages go, the component's base stays
    assert not list(rt2.store.backend.scan("pages", b""))
    assert not [k for k, _ in rt2.store.backend.scan("pagerefs", b"") if k.startswith(b"b")]
    assert check_store(rt2.store)[0] == []
