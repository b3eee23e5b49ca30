"""`golemish store check` finds each kind of damage and names where it is."""

from __future__ import annotations

import json

import pytest

from golemish.oplog import open_store


@pytest.fixture
def populated(cli, guests):
    cli("deploy", str(guests["kv"]), check=True)
    for k in range(3):
        cli("--snapshot-policy", "every:1", "invoke", "kv/a", "put", str(k), "5000", check=True)
    cli("invoke", "kv/a", "count", "-k", "once", check=True)
    return cli


def check(cli, *flags):
    proc = cli("--json", "store", "check", *flags)
    return proc.returncode, json.loads(proc.stdout)


def test_a_healthy_store_passes(populated):
    rc, out = check(populated, "--deep")
    assert rc == 0 and out["ok"] and out["checked"]["snapshots"] == 3
    assert out["checked"]["entries"] > 10


def damage(home, table, key, how="flip"):
    with open_store(home) as st:
        if how == "delete":
            st.backend.write([(table, key, None)])
        else:
            raw = bytearray(st.backend.get(table, key))
            raw[len(raw) // 2] ^= 0x01
            st.backend.put(table, key, bytes(raw))


def test_each_kind_of_damage_is_reported_with_its_place(populated, home):
    idx = (5).to_bytes(8, "big")
    damage(home, "oplog", b"kv/a\0" + idx)
    damage(home, "oplog", b"kv/a\0" + (3).to_bytes(8, "big"), "delete")
    with open_store(home) as st:
        snaps = st.snapshots.indexes("kv/a")
        page = sorted(st.snapshots.manifest("kv/a", snaps[0]).nonzero())[0]
        st.backend.put("oplog", b"ghost/x\0" + idx, b"x")
    damage(home, "cpages", page, "delete")
    damage(home, "snapshots", b"kv/a\0" + snaps[-1].to_bytes(8, "big"))
    rc, out = check(populated)
    assert rc == 1 and not out["ok"]
    found = {(p["where"], p["what"].split(" (")[0]) for p in out["problems"]}
    assert ("kv/a oplog index 5", "checksum mismatch") in found
    assert ("kv/a oplog index 3", "missing") in found
    assert ("oplog of ghost/x", "belongs to no worker") in found
    assert (f"kv/a snapshot at index {snaps[0]}", f"names missing page {page.hex()}") in found
    assert (f"kv/a snapshot at index {snaps[-1]}", "checksum mismatch") in found
    text = populated("store", "check")
    assert text.returncode == 1 and "problem: kv/a oplog index 5: checksum mismatch" in text.stdout


def test_an_unreadable_compiled_code_block_is_reported_by_a_deep_check(populated, home):
    # The compiled-code table is read by key only when a component loads: a damaged
    # block there failed every invocation of kv while `store check --deep` said ok
    # (fault campaign seed 1, fault 352).
    from pathlib import Path

    from golemish.oplog.backends.rocksdb import RocksBackend

    b = RocksBackend(home, readonly=True)
    try:
        table = max((f for f in b._db.live_files() if b":wasmtime-" in f["start_key"]),
                    key=lambda f: f["size"])
    finally:
        b.close()
    path = Path(home) / table["name"].lstrip("/")
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x5A  # inside the compiled code's data blocks
    path.write_bytes(bytes(data))

    invoke = populated("invoke", "kv/a", "count")  # (reads the code from cache/ if there)
    assert invoke.returncode == 0 and invoke.stdout.strip() == "3" \
        or "corrupt compiled" in invoke.stderr, (invoke.stdout, invoke.stderr)
    rc, out = check(populated, "--deep")
    assert rc == 1 and not out["ok"]
    assert any(p["where"] == "compiled table" and "checksum mismatch" in p["what"]
               and path.name in p["what"] for p in out["problems"]), out["problems"]
