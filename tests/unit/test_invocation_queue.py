"""The durable invocation queue (oplog/invocations.py) and schedule parsing."""

from __future__ import annotations

import pytest

from golemish.oplog import open_store
from golemish.runtime.errors import ArgumentError
from golemish.runtime.invocations import parse_at, parse_delay
from golemish.runtime.server.scheduler import by_worker


def _rec(worker: str, due: int, key: str | None = None) -> dict:
    return {"worker": worker, "function": "f", "args": [], "env": [],
            "idempotency_key": key, "due_ns": due, "created_ns": 0}


def test_pending_invocations_come_in_due_then_arrival_order():
    q = open_store("memory://").invocations
    a, _ = q.enqueue(_rec("c/a", 30))
    b, _ = q.enqueue(_rec("c/b", 10))
    c, _ = q.enqueue(_rec("c/a", 10))
    assert [r["id"] for r in q.pending()] == [b["id"], c["id"], a["id"]]
    assert [r["id"] for r in q.pending(due_by_ns=20)] == [b["id"], c["id"]]
    assert {w: [r["id"] for r in rs] for w, rs in by_worker(list(q.pending())).items()} == {
        "c/b": [b["id"]], "c/a": [c["id"], a["id"]]}
    assert q.pending_count() == 3


def test_finishing_removes_it_from_the_queue_and_keeps_the_record():
    q = open_store("memory://").invocations
    rec, created = q.enqueue(_rec("c/a", 5))
    assert created and rec["state"] == "queued" and rec["key"].endswith(rec["id"])
    q.finish({**rec, "state": "ok", "results": []})
    assert list(q.pending()) == [] and q.get(rec["id"])["state"] == "ok"
    assert [r["id"] for r in q.records()] == [rec["id"]]


def test_an_idempotency_key_enqueues_once_per_worker():
    q = open_store("memory://").invocations
    first, created = q.enqueue(_rec("c/a", 5, key="k"))
    again, created_again = q.enqueue(_rec("c/a", 9, key="k"))
    other, created_other = q.enqueue(_rec("c/b", 5, key="k"))
    assert created and not created_again and again["id"] == first["id"]
    assert created_other and other["id"] != first["id"] and other["key"] == "k"


def test_the_queue_survives_reopening_the_store(tmp_path):
    store = open_store(str(tmp_path / "s"), create=True)
    rec, _ = store.invocations.enqueue(_rec("c/a", 5))
    store.close()
    store = open_store(str(tmp_path / "s"))
    try:
        assert [r["id"] for r in store.invocations.pending()] == [rec["id"]]
        nxt, _ = store.invocations.enqueue(_rec("c/a", 5))
        assert nxt["seq"] == rec["seq"] + 1  # the counter is stored with each enqueue
    finally:
        store.close()


@pytest.mark.parametrize("text,seconds", [
    ("10m", 600), ("1h30m", 5400), ("2.5s", 2.5), ("500ms", 0.5), ("45", 45), ("1d", 86400)])
def test_delays_parse(text, seconds):
    assert parse_delay(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "10x", "-5", "m10", "", "400d"])
def test_bad_delays_are_refused_with_one_line(text):
    with pytest.raises(ArgumentError, match="--in"):
        parse_delay(text)


def test_times_parse():
    assert parse_at("2026-12-03T18:00:00+00:00") == 1796320800.0
    assert parse_at("2026-12-03T18:00:00Z") == 1796320800.0
    assert parse_at("1796320800") == 1796320800.0
    with pytest.raises(ArgumentError, match="ISO 8601"):
        parse_at("tomorrow")


def test_store_check_reports_a_damaged_invocation_record():
    from golemish.oplog.check import check_store
    store = open_store("memory://")
    rec, _ = store.invocations.enqueue(_rec("c/a", 5))
    assert check_store(store)[0] == []
    key = b"r\0" + rec["id"].encode()
    raw = bytearray(store.backend.get("invocations", key))
    raw[-2] ^= 0xFF
    store.backend.put("invocations", key, bytes(raw))
    problems = [str(p) for p in check_store(store)[0]]
    assert len(problems) == 1 and problems[0].startswith(f"invocation {rec['id']}: ")
    assert "checksum" in problems[0]
