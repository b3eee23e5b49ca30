"""Deploy-time instrumentation: hidden globals and tables become reachable exports,
and nothing but the export section changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from golemish.runtime.snapshot.instrument import (
    GLOBAL_PREFIX, TABLE_PREFIX, GlobalInfo, InstrumentError, TableInfo, instrument,
)

# --- an independent, minimal section splitter (not the code under test) -------


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def _enc(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def split(wasm: bytes) -> list[tuple[int, bytes]]:
    """(id, payload) of every section, in order."""
    assert wasm[:8] == b"\x00asm\x01\x00\x00\x00"
    out, pos = [], 8
    while pos < len(wasm):
        sid = wasm[pos]
        size, start = _uleb(wasm, pos + 1)
        out.append((sid, wasm[start:start + size]))
        pos = start + size
    assert pos == len(wasm)
    return out


def join(sections: list[tuple[int, bytes]]) -> bytes:
    return b"\x00asm\x01\x00\x00\x00" + b"".join(
        bytes([sid]) + _enc(len(p)) + p for sid, p in sections)


def custom(name: str, payload: bytes) -> tuple[int, bytes]:
    return (0, _enc(len(name)) + name.encode() + payload)


def with_customs(wasm: bytes) -> bytes:
    """The module with custom sections first, in the middle and last."""
    secs = split(wasm)
    mid = len(secs) // 2
    return join([custom("first", b"\x01\x02\x03")] + secs[:mid]
                + [custom("middle", bytes(range(40)))] + secs[mid:]
                + [custom("last", b"tail bytes")])


# --- the modules -----------------------------------------------------------------

NUMBERS = """
(module
  (import "env" "g" (global $imp (mut i32)))
  (global $a (mut i32) (i32.const 11))
  (global $b (mut i64) (i64.const -22))
  (global $c (mut f32) (f32.const 1.5))
  (global $d (mut f64) (f64.const 2.25))
  (global $k i32 (i32.const 55))
  (global $vis (export "visible") (mut i32) (i32.const 66))
  (func (export "get_a") (result i32) global.get $a)
  (func (export "get_b") (result i64) global.get $b)
  (func (export "get_c") (result f32) global.get $c)
  (func (export "get_d") (result f64) global.get $d)
  (func (export "get_vis") (result i32) global.get $vis)
  (func (export "get_k") (result i32) global.get $k)
  (func (export "bump")
    (global.set $a (i32.add (global.get $a) (global.get $imp)))
    (global.set $b (i64.mul (global.get $b) (i64.const 3)))
    (global.set $c (f32.neg (global.get $c)))
    (global.set $d (f64.add (global.get $d) (f64.const 0.5)))
    (global.set $vis (i32.const 77)))
)
"""

COUNTER = """
(module
  (global $n (mut i64) (i64.const 0))
  (func (export "incr") (result i64)
    (global.set $n (i64.add (global.get $n) (i64.const 1)))
    global.get $n)
  (func (export "get") (result i64) global.get $n)
)
"""

# No export section at all: one must be inserted before the start/elem/code/data sections.
NO_EXPORTS = """
(module
  (memory 1)
  (global $g (mut i32) (i32.const 7))
  (func $init (global.set $g (i32.add (global.get $g) (i32.const 1))))
  (start $init)
  (data (i32.const 0) "hello")
)
"""

NO_EXPORTS_NOTHING_AFTER = "(module (global (mut i64) (i64.const 9)))"

TABLES = """
(module
  (import "env" "t" (table 1 funcref))
  (table $own 3 10 funcref)
  (elem (table $own) (i32.const 0) func $f $g)
  (func $f (result i32) i32.const 100)
  (func $g (result i32) i32.const 200)
  (func (export "call") (param i32) (result i32)
    (call_indirect $own (result i32) (local.get 0)))
)
"""

# Reference-typed and v128 globals, extended-const and global.get initialisers,
# and a table with an explicit initialiser (the newer 0x40 0x00 encoding).
EXOTIC = """
(module
  (import "env" "base" (global $base i32))
  (global $x i32 (i32.add (i32.const 1) (global.get $base)))
  (global $y (mut i64) (i64.sub (i64.const 5) (i64.mul (i64.const 2) (i64.const 3))))
  (global $v (mut v128) (v128.const i32x4 1 2 3 4))
  (global $r (mut funcref) (ref.null func))
  (global $rf funcref (ref.func $f))
  (global $ex (mut externref) (ref.null extern))
  (table $t 2 funcref (ref.func $f))
  (func $f)
)
"""

NOTHING_TO_ADD = """
(module
  (global $k (export "k") i32 (i32.const 1))
  (func (export "f") (result i32) global.get $k)
)
"""

WAT_MODULES = {
    "numbers": NUMBERS, "counter": COUNTER, "no_exports": NO_EXPORTS,
    "no_exports_nothing_after": NO_EXPORTS_NOTHING_AFTER, "tables": TABLES,
    "exotic": EXOTIC, "nothing_to_add": NOTHING_TO_ADD,
}


def wat(text: str) -> bytes:
    return wasmtime.wat2wasm(text)


def all_modules(guests: dict[str, Path]) -> dict[str, bytes]:
    mods = {name: wat(text) for name, text in WAT_MODULES.items()}
    mods.update({f"{n}+customs": with_customs(w) for n, w in list(mods.items())})
    for name in ("counter", "journal"):
        mods[f"guest_{name}"] = guests[name].read_bytes()
    return mods


ALL_NAMES = [*WAT_MODULES, *(f"{n}+customs" for n in WAT_MODULES), "guest_counter",
             "guest_journal"]


# --- the property: only the export section changes --------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_only_the_export_section_changes(name: str, guests: dict[str, Path]) -> None:
    wasm = all_modules(guests)[name]
    out = instrument(wasm)
    before, after = split(wasm), split(out.wasm)
    assert [s for s in before if s[0] != 7] == [s for s in after if s[0] != 7]
    # Old export entries are kept verbatim, ours follow them.
    old = [p for sid, p in before if sid == 7]
    new = [p for sid, p in after if sid == 7]
    added = len(out.globals) + len(out.tables)
    if added == 0:
        assert out.wasm == wasm
    else:
        assert len(new) == 1
        old_count, old_start = _uleb(old[0], 0) if old else (0, 0)
        new_count, new_start = _uleb(new[0], 0)
        assert new_count == old_count + added
        assert new[0][new_start:].startswith(old[0][old_start:] if old else b"")
    # The result is still a valid module, exporting what we said it would.
    module = wasmtime.Module(wasmtime.Engine(), out.wasm)
    names = [e.name for e in module.exports]
    assert names[len(names) - added:] == [g.export_name for g in out.globals] + [
        t.export_name for t in out.tables]
    # Exactly the reserved names were added; nothing else.
    before_names = [e.name for e in wasmtime.Module(wasmtime.Engine(), wasm).exports]
    assert names[:len(names) - added] == before_names


def test_export_section_is_inserted_in_order() -> None:
    ids = [sid for sid, _ in split(instrument(wat(NO_EXPORTS)).wasm)]
    assert ids.index(7) == ids.index(6) + 1 and ids.index(7) < ids.index(8)
    ids = [sid for sid, _ in split(instrument(wat(NO_EXPORTS_NOTHING_AFTER)).wasm)]
    assert ids[ids.index(6) + 1] == 7


def test_nothing_to_add_returns_the_input() -> None:
    wasm = wat(NOTHING_TO_ADD)
    out = instrument(wasm)
    assert out.wasm == wasm and out.globals == () and out.tables == ()


# --- globals -------------------------------------------------------------------------


def _instantiate(wasm: bytes, imported: int = 100) -> tuple[wasmtime.Store, dict]:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    g = wasmtime.Global(store, wasmtime.GlobalType(wasmtime.ValType.i32(), True),
                        wasmtime.Val.i32(imported))
    linker.define(store, "env", "g", g)
    inst = linker.instantiate(store, wasmtime.Module(engine, wasm))
    return store, inst.exports(store)


def test_number_globals_are_found_with_imports_counted_first() -> None:
    out = instrument(wat(NUMBERS))
    assert out.globals == (
        GlobalInfo(1, f"{GLOBAL_PREFIX}1", "i32", True, None),
        GlobalInfo(2, f"{GLOBAL_PREFIX}2", "i64", True, None),
        GlobalInfo(3, f"{GLOBAL_PREFIX}3", "f32", True, None),
        GlobalInfo(4, f"{GLOBAL_PREFIX}4", "f64", True, None),
        # global 5 is immutable: not ours to export
        GlobalInfo(6, f"{GLOBAL_PREFIX}6", "i32", True, "visible"),
    )
    assert out.tables == ()


def test_exported_globals_match_the_modules_own_view() -> None:
    store, ex = _instantiate(instrument(wat(NUMBERS)).wasm)
    getters = {1: "get_a", 2: "get_b", 3: "get_c", 4: "get_d", 6: "get_vis"}

    def check() -> None:
        for index, getter in getters.items():
            assert ex[f"{GLOBAL_PREFIX}{index}"].value(store) == ex[getter](store)

    check()
    assert [ex[f"{GLOBAL_PREFIX}{i}"].value(store) for i in getters] == [11, -22, 1.5, 2.25, 66]
    ex["bump"](store)
    check()
    assert ex[f"{GLOBAL_PREFIX}1"].value(store) == 111  # 11 + the imported global's 100
    assert ex[f"{GLOBAL_PREFIX}6"].value(store) == ex["visible"].value(store) == 77
    assert f"{GLOBAL_PREFIX}0" not in ex and f"{GLOBAL_PREFIX}5" not in ex


def test_setting_through_our_export_is_seen_by_the_module() -> None:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, instrument(wat(COUNTER)).wasm), [])
    ex = inst.exports(store)
    hidden = ex[f"{GLOBAL_PREFIX}0"]
    assert ex["incr"](store) == 1
    hidden.set_value(store, 41)
    assert ex["get"](store) == 41
    assert ex["incr"](store) == 42
    assert hidden.value(store) == 42


def test_exotic_globals_and_initialisers() -> None:
    out = instrument(wat(EXOTIC))
    assert [(g.index, g.valtype) for g in out.globals] == [
        (2, "i64"), (3, "v128"), (4, "funcref"), (6, "externref")]
    assert out.tables == (TableInfo(0, f"{TABLE_PREFIX}0", "funcref", 2, None),)
    wasmtime.Module(wasmtime.Engine(), out.wasm)  # still valid


def test_no_export_section_global_is_readable() -> None:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, instrument(wat(NO_EXPORTS)).wasm), [])
    assert inst.exports(store)[f"{GLOBAL_PREFIX}0"].value(store) == 8  # start ran once


# --- tables ---------------------------------------------------------------------------


def test_tables_use_the_table_index_space() -> None:
    out = instrument(wat(TABLES))
    assert out.globals == ()
    assert out.tables == (TableInfo(1, f"{TABLE_PREFIX}1", "funcref", 3, 10),)
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    imported = wasmtime.Table(store, wasmtime.TableType(wasmtime.ValType.funcref(),
                                                        wasmtime.Limits(1, None)), None)
    linker.define(store, "env", "t", imported)
    ex = linker.instantiate(store, wasmtime.Module(engine, out.wasm)).exports(store)
    table = ex[f"{TABLE_PREFIX}1"]
    assert table.size(store) == 3  # the module's own table, not the imported one (size 1)
    assert ex["call"](store, 0) == 100 and ex["call"](store, 1) == 200
    table.grow(store, 2, None)
    assert table.size(store) == 5


# --- the C guests -----------------------------------------------------------------------


def _wasi_instance(engine: wasmtime.Engine, wasm: bytes) -> tuple[wasmtime.Store, dict]:
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    ex = linker.instantiate(store, wasmtime.Module(engine, wasm)).exports(store)
    ex["_initialize"](store)
    return store, ex


@pytest.mark.parametrize("name", ["counter", "journal"])
def test_guest_stack_pointer_and_table(name: str, guests: dict[str, Path]) -> None:
    out = instrument(guests[name].read_bytes())
    # zig/clang: one mutable global (__stack_pointer, global 0), one funcref table.
    assert out.globals == (GlobalInfo(0, f"{GLOBAL_PREFIX}0", "i32", True, None),)
    assert [(t.index, t.elem_type) for t in out.tables] == [(0, "funcref")]
    store, ex = _wasi_instance(wasmtime.Engine(), out.wasm)
    sp = ex[f"{GLOBAL_PREFIX}0"].value(store)
    assert 0 < sp <= ex["memory"].data_len(store) and sp % 16 == 0
    assert ex[f"{TABLE_PREFIX}0"].size(store) == out.tables[0].initial


def test_guest_behaves_the_same_instrumented(guests: dict[str, Path]) -> None:
    wasm = guests["counter"].read_bytes()
    out = instrument(wasm)
    engine = wasmtime.Engine()
    results = []
    for module in (wasm, out.wasm):
        store, ex = _wasi_instance(engine, module)
        results.append([ex["add"](store, 5), ex["add"](store, 7), ex["get"](store),
                        ex["history_len"](store), ex["f64_scale"](store, 1.5, 2.0)])
    assert results[0] == results[1] == [5, 12, 12, 2, 3.0]

    store, ex = _wasi_instance(engine, out.wasm)
    sp = ex[f"{GLOBAL_PREFIX}0"]
    before = sp.value(store)
    ex["add"](store, 3)
    assert sp.value(store) == before  # calls leave the shadow stack balanced


# --- errors ---------------------------------------------------------------------------------

HEADER = b"\x00asm\x01\x00\x00\x00"


def global_section(entry: bytes) -> bytes:
    payload = b"\x01" + entry
    return HEADER + b"\x06" + _enc(len(payload)) + payload


@pytest.mark.parametrize("wasm, message", [
    (b"\x00asx\x01\x00\x00\x00", "bad magic"),
    (b"", "bad magic"),
    (b"\x00asm\x0d\x00\x01\x00", "unsupported binary version"),
    (HEADER + b"\x06\x10\x01\x7f", "truncated section 6"),
    (HEADER + b"\x06", "truncated"),
    (HEADER + b"\x0e\x00", "unknown section id 14"),
    (global_section(b"\x7f\x01"), "truncated data in global section"),
    (global_section(b"\x7f\x01\x20\x00\x0b"), "unsupported instruction 0x20"),
    (global_section(b"\x55\x01\x41\x00\x0b"), "unknown value type 0x55"),
    (global_section(b"\x7f\x02\x41\x00\x0b"), "mutability"),
    (global_section(b"\x7f\x01\x41\x00\x0b\x00"), "trailing bytes"),
    (HEADER + b"\x06\x01\x00\x06\x01\x00", "duplicate section 6"),
])
def test_malformed_modules_are_refused(wasm: bytes, message: str) -> None:
    with pytest.raises(InstrumentError, match=message):
        instrument(wasm)


def test_truncated_real_module_is_refused(guests: dict[str, Path]) -> None:
    with pytest.raises(InstrumentError, match="truncated"):
        instrument(guests["counter"].read_bytes()[:-1])


@pytest.mark.parametrize("name", [f"{GLOBAL_PREFIX}0", f"{TABLE_PREFIX}7", f"{GLOBAL_PREFIX}x"])
def test_reserved_export_names_are_refused(name: str) -> None:
    wasm = wat(f'(module (global (export "{name}") (mut i32) (i32.const 0)))')
    with pytest.raises(InstrumentError, match="reserved name"):
        instrument(wasm)


def test_instrumenting_twice_is_refused() -> None:
    with pytest.raises(InstrumentError, match="reserved name"):
        instrument(instrument(wat(COUNTER)).wasm)
    assert issubclass(InstrumentError, ValueError)
