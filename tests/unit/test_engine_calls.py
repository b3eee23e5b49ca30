"""Calls across the wasm boundary through wasmtime's raw-value entry points."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap

import pytest
import wasmtime

from golemish.runtime.engine import Engine, FuncSig, HostFunc
from golemish.runtime.errors import GuestTrap

# Each export passes its arguments through a host function of the same signature.
WAT = """(module
  (import "h" "i" (func $i (param i32 i64) (result i64)))
  (import "h" "f" (func $f (param f32 f64) (result f64)))
  (import "h" "n" (func $n))
  (func (export "ints") (param i32 i64) (result i64) local.get 0 local.get 1 call $i)
  (func (export "floats") (param f32 f64) (result f64) local.get 0 local.get 1 call $f)
  (func (export "none") call $n)
  (func (export "pair") (param i32) (result i32 i32) local.get 0 local.get 0 i32.const 1
        i32.add))"""


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


@pytest.fixture
def inst():
    seen: list[tuple] = []
    host = [HostFunc("h", "i", FuncSig(("i32", "i64"), ("i64",)),
                     lambda a, b: seen.append(("i", a, b)) or a + b),
            HostFunc("h", "f", FuncSig(("f32", "f64"), ("f64",)),
                     lambda a, b: seen.append(("f", a, b)) or a * b),
            HostFunc("h", "n", FuncSig((), ()), lambda: seen.append(("n",)))]
    engine = Engine()
    i = engine.instantiate(engine.compile(wasmtime.wat2wasm(WAT)), host, memory_limit=1 << 24)
    i.seen = seen
    return i


def test_numbers_cross_both_ways_with_their_signs_and_widths(inst):
    assert inst.call("ints", [-5, 2**40], time_limit=10) == [2**40 - 5]
    # u32 and u64 bit patterns go in as the signed values the guest sees.
    assert inst.call("ints", [0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF], time_limit=10) == [-2]
    assert inst.call("floats", [1.5, -2.25], time_limit=10) == [-3.375]
    assert inst.call("floats", [0.1, 3.0], time_limit=10) == [_f32(0.1) * 3.0]
    inst.call("none", [], time_limit=10)
    assert inst.call("pair", [41], time_limit=10) == [41, 42]
    assert inst.seen == [("i", -5, 2**40), ("i", -1, -1), ("f", 1.5, -2.25),
                         ("f", _f32(0.1), 3.0), ("n",)]


def test_a_wrong_number_of_arguments_is_refused_before_the_guest_runs(inst):
    with pytest.raises(GuestTrap, match="too few parameters"):
        inst.call("ints", [1], time_limit=10)
    with pytest.raises(GuestTrap, match="too many parameters"):
        inst.call("ints", [1, 2, 3], time_limit=10)
    assert inst.seen == []


def test_stores_freed_after_the_module_let_go_of_its_thunks_exit_cleanly(tmp_path):
    # At interpreter exit a module's globals can be cleared before the last store is
    # freed; wasmtime then still calls the host finalizer it was given.
    script = tmp_path / "late.py"
    script.write_text(textwrap.dedent(f"""
        import ctypes, gc
        import wasmtime
        from golemish.runtime import engine_calls
        from golemish.runtime.engine import Engine, FuncSig, HostFunc
        e = Engine()
        mod = e.compile(wasmtime.wat2wasm({WAT!r}))
        host = [HostFunc("h", "i", FuncSig(("i32", "i64"), ("i64",)), lambda a, b: a + b),
                HostFunc("h", "f", FuncSig(("f32", "f64"), ("f64",)), lambda a, b: a),
                HostFunc("h", "n", FuncSig((), ()), lambda: None)]
        keep = [e.instantiate(mod, host, memory_limit=1 << 24) for _ in range(20)]
        engine_calls._finalize = engine_calls._trampoline = None
        gc.collect()
        junk = [ctypes.create_string_buffer(64) for _ in range(20000)]
        assert keep[0].call("ints", [1, 2], time_limit=10) == [3]
        del keep[:]
        gc.collect()
        print("freed")
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "freed"), proc.stderr[-2000:]
