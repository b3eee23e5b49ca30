"""Bad modules and bad arguments end in one-line errors, never a crash or a traceback."""

from __future__ import annotations

import pytest
import wasmtime

from golemish.runtime.errors import ComponentError, GuestTrap
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.snapshot.policy import SnapshotPolicy


def wat(text: str) -> bytes:
    return wasmtime.wat2wasm(text)


COUNTER = """(module (memory (export "memory") 1)
  (func (export "add") (param i32) (result i32)
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (local.get 0)))
    (i32.load (i32.const 0))))"""

# No memory at all: the state is one mutable global, which snapshots capture.
NO_MEMORY = """(module (global $g (mut i64) (i64.const 0))
  (func (export "add") (param i64) (result i64)
    (global.set $g (i64.add (global.get $g) (local.get 0))) (global.get $g)))"""


def one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def test_a_trapping_start_function_fails_the_creating_invocation_cleanly(make_runtime):
    rt = make_runtime()
    rt.deploy(wat("""(module (memory (export "memory") 1)
      (func $boom unreachable) (start $boom)
      (func (export "f") (result i32) (i32.const 1)))"""), "boom")
    with pytest.raises(GuestTrap) as e:
        rt.invoke("boom/w", "f")
    assert "unreachable" in one_line(e.value)
    assert rt.store.get_worker("boom/w") is None  # nothing half-created is left behind
    with pytest.raises(GuestTrap):  # and the next attempt fails the same way
        rt.invoke("boom/w", "f")


@pytest.mark.parametrize("policy", ["every:1", "off"])
def test_a_module_without_memory_records_snapshots_and_recovers(home, policy):
    cfg = dict(home=home, snapshot_policy=SnapshotPolicy.parse(policy))
    with Runtime(RuntimeConfig(**cfg)) as rt:
        rt.deploy(wat(NO_MEMORY), "nomem")
        assert rt.invoke("nomem/w", "add", ["5"]).results == [("i64", 5)]
        assert rt.invoke("nomem/w", "add", ["7"]).results == [("i64", 12)]
        snaps = rt.worker_info("nomem/w")["snapshots"]
        assert (snaps > 0) == (policy == "every:1")
    for recovery in ("auto", "replay"):
        with Runtime(RuntimeConfig(**cfg, recovery=recovery)) as rt:
            assert rt.invoke("nomem/w", "add", ["0"]).results == [("i64", 12)]


@pytest.mark.parametrize("module, named", [
    ('(func (export "simd") (param v128) (result i32) (i32.const 1))', "simd"),
    ('(func (export "vec") (result v128) (v128.const i64x2 0 0))', "vec"),
    ('(func (export "ref") (param externref) (result i32) (i32.const 1))', "ref"),
    ('(func (export "fref") (result funcref) (ref.null func))', "fref"),
    ('(global (export "g") v128 (v128.const i64x2 0 0))', "g"),
    ('(global $m (mut v128) (v128.const i64x2 0 0))', "global 0"),
    ('(import "golemish" "oplog_index" (func (param v128)))', "golemish.oplog_index"),
])
def test_unsupported_value_types_are_refused_at_deploy_naming_the_export(make_runtime,
                                                                         module, named):
    rt = make_runtime()
    wasm = wat(f'(module {module} (memory (export "memory") 1)'
               '(func (export "ok") (result i32) (i32.const 1)))')
    with pytest.raises(ComponentError) as e:
        rt.deploy(wasm, "bad")
    msg = one_line(e.value)
    assert named in msg and ("v128" in msg or "ref" in msg)
    assert rt.list_components() == []


@pytest.mark.parametrize("module, why", [
    ('(memory 1)', "export it as 'memory'"),
    ('(memory (export "mem") 1)', "export it as 'memory'"),
    ('(memory (export "memory") 1) (memory 1)', "2 memories"),
])
def test_memories_snapshots_cannot_see_are_refused(make_runtime, module, why):
    rt = make_runtime()
    with pytest.raises(ComponentError, match=why):
        rt.deploy(wat(f'(module {module} (func (export "f") (result i32) (i32.const 1)))'), "m")


def test_deploy_refusals_are_one_line_on_the_command_line(cli, tmp_path):
    path = tmp_path / "simd.wasm"
    path.write_bytes(wat('(module (func (export "simd") (param v128)))'))
    proc = cli("deploy", str(path))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "simd" in proc.stderr and "v128" in proc.stderr


def custom_section(size: int) -> bytes:
    """A valid module whose bulk is one custom section."""
    payload = b"\x04junk" + bytes(size)
    n, leb = len(payload), bytearray()
    while True:
        leb.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    return wat(COUNTER) + b"\x00" + bytes(leb) + payload


def test_deploy_refuses_a_module_above_the_configured_size():
    wasm = custom_section(3 << 20)
    with Runtime(RuntimeConfig(home="memory://", max_component_bytes=2 << 20)) as rt:
        with pytest.raises(ComponentError, match=r"3\.0 MiB, above the deploy limit of 2 MiB"):
            rt.deploy(wasm, "big")
        assert rt.list_components() == []
    with Runtime(RuntimeConfig(home="memory://", max_component_bytes=4 << 20)) as rt:
        assert rt.deploy(wasm, "big").created


def test_the_cli_refuses_a_huge_file_without_reading_it(cli, tmp_path):
    import resource
    path = tmp_path / "huge.wasm"
    with open(path, "wb") as f:  # sparse: 1 GiB that costs no disk
        f.write(wat(COUNTER))
        f.truncate(1 << 30)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = cli("deploy", str(path))
    assert proc.returncode == 1
    assert "1024.0 MiB, above the deploy limit of 128 MiB" in proc.stderr
    assert proc.stderr.count("\n") == 1
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak_kib < 300 << 10 or peak_kib == before  # nowhere near the file's size
    small = tmp_path / "big.wasm"
    small.write_bytes(custom_section(3 << 20))
    assert "above the deploy limit of 2 MiB" in cli("deploy", str(small), "--max-size", "2").stderr
    assert cli("deploy", str(small), "--max-size", "4").returncode == 0
    proc = cli("deploy", str(small), env={"GOLEMISH_MAX_COMPONENT_MIB": "1"})
    assert "above the deploy limit of 1 MiB" in proc.stderr
