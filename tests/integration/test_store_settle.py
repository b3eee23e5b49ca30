"""What a closing writer waits for: RocksDB's compaction, only while there is one to wait for.

Every close flushes one table file per table written, and waits (RocksBackend._settle)
for the compaction RocksDB then schedules. It used to wait until "compaction-pending"
was 0, which universal compaction leaves at 1 when a table sits at exactly its trigger
of sorted runs with nothing to pick: every later command then waited the whole
COMPACTION_WAIT_S (10 s, measured in the fault campaign). These tests build that state
in a real RocksDB store, and a damaged one, through the real backend.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from golemish.oplog.backends.rocksdb import (
    COMPACTION_TRIGGER,
    L0_LIMIT,
    RocksBackend,
    compaction_settled,
)
from golemish.oplog.errors import CorruptionError


def one_process(home: str, first: int, count: int) -> None:
    """A short-lived writer: ``count`` oplog entries of its own, then close (one table file)."""
    b = RocksBackend(home, create=True)
    b.write([("oplog", b"w\0" + (first + i).to_bytes(8, "big"), b"x" * 200)
             for i in range(count)])
    b.close()


def oplog_state(home: str) -> dict[str, int]:
    b = RocksBackend(home, readonly=True)
    try:
        cf = b._cf["oplog"]
        return {p: cf.property_int_value(f"rocksdb.{p}") or 0
                for p in ("num-files-at-level0", "compaction-pending",
                          "num-running-compactions")} | {"settled": compaction_settled(cf)}
    finally:
        b.close()


def runs_at_the_trigger(home: str) -> int:
    """Oplog table files of shrinking size, as many as COMPACTION_TRIGGER: universal
    compaction's size ratio merges none of them, and at exactly the trigger it forces
    nothing either. Returns the number of entries written."""
    first = 0
    for count in (2000, 200, 20, 2)[:COMPACTION_TRIGGER]:
        one_process(home, first, count)
        first += count
    return first


def test_a_table_left_at_its_trigger_with_compaction_pending_is_settled(home):
    first = runs_at_the_trigger(home)
    state = oplog_state(home)
    # The state that made every close wait its whole timeout: pending, nothing running.
    assert state["num-files-at-level0"] == COMPACTION_TRIGGER < L0_LIMIT, state
    assert state["compaction-pending"] == 1 and state["num-running-compactions"] == 0, state
    assert state["settled"], state
    # One more process: past the trigger RocksDB compacts, and the close waits for it.
    one_process(home, first, 1)
    state = oplog_state(home)
    assert state["num-files-at-level0"] < L0_LIMIT, state
    assert state["settled"], state
    b = RocksBackend(home, readonly=True)
    try:
        assert len(list(b.scan("oplog", b"w\0"))) == first + 1
    finally:
        b.close()


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def test_a_compaction_that_meets_a_damaged_table_is_reported_on_close(home):
    runs_at_the_trigger(home)
    b = RocksBackend(home, readonly=True)
    try:  # the newest oplog table (two entries): the next compaction reads it
        newest = max((f for f in b._db.live_files() if f["start_key"].startswith(b"w\0")),
                     key=lambda f: int(f["name"].lstrip("/").split(".")[0]))
    finally:
        b.close()
    damaged = Path(home) / newest["name"].lstrip("/")
    flip(damaged, 20)  # inside its one data block
    # This writer's table file brings level 0 past the limit: the close flushes it, and
    # RocksDB's compaction reads the damaged file. The close must say so, not wait.
    b = RocksBackend(home)
    b.write([("oplog", b"w\0" + (10_000).to_bytes(8, "big"), b"y")])
    with pytest.raises(CorruptionError) as e:
        b.close()
    assert damaged.name in str(e.value) and "table file" in str(e.value)
    with pytest.raises(Exception):
        b.get("oplog", b"w\0")  # closed all the same: the store was released
    # ...and the next writer can open it (the damage stays for `store check` to report).
    with pytest.raises(CorruptionError):
        b2 = RocksBackend(home)
        try:
            list(b2.scan("oplog", b"w\0"))
        finally:
            b2.close()
