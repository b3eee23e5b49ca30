"""The exported oplog file: a round trip, and every kind of damage refused by name."""

from __future__ import annotations

import struct

import pytest

from golemish.oplog import CorruptionError, Create, HostCall, InvokeEnd, InvokeStart, encode_entry
from golemish.oplog import export

HEADER = {"worker": "counter/a", "component": {"name": "counter", "version": 0, "hash": "ab"}}
ENTRIES = [Create("counter", 0, "ab"), InvokeStart("add", (("i64", 5),)),
           HostCall("clock_time_get", b"\0", b"\1" * 8), InvokeEnd((("i64", 5),), 10)]


def dumped() -> bytes:
    return export.dump(HEADER, [encode_entry(e) for e in ENTRIES])


def test_a_file_round_trips_its_header_and_entries():
    f = export.load(dumped())
    assert f.worker_id == "counter/a" and f.component["hash"] == "ab"
    assert [e for _, e in f.entries()] == ENTRIES
    assert [i for i, _ in f.entries()] == [1, 2, 3, 4]


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"x", "truncated or padded"),
    (lambda b: b"NOTOPLOG" + b[8:], "bad magic"),
    (lambda b: b[:8] + struct.pack("<H", 9) + b[10:], "format version 9"),
    (lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:], "checksum mismatch"),
    (lambda b: b[:-32] + bytes(32), "checksum mismatch"),
    (lambda b: b"", "bad magic"),
])
def test_damage_is_refused_with_what_is_wrong(damage, message):
    with pytest.raises(CorruptionError, match=message):
        export.load(damage(dumped()), "w.oplog")


def test_a_file_that_does_not_start_with_create_is_refused():
    data = export.dump(HEADER, [encode_entry(e) for e in ENTRIES[1:]])
    with pytest.raises(CorruptionError, match="first entry is not a create entry"):
        export.load(data)


def test_a_damaged_entry_inside_a_valid_file_is_caught_when_read():
    raws = [encode_entry(e) for e in ENTRIES]
    raws[2] = raws[2][:-1] + bytes([raws[2][-1] ^ 1])  # the entry's own CRC no longer holds
    f = export.load(export.dump(HEADER, raws))
    with pytest.raises(CorruptionError, match="index 3"):
        f.entries()
