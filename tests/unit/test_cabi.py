"""The Canonical ABI against the spec's own test vectors, plus round trips.

Vectors marked "spec" come from design/mvp/canonical-abi/run_tests.py of
WebAssembly/component-model (unions written as variants, as they despecialize).
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from wit_strategies import norm, signatures, typed_values

from golemish.runtime.typed.cabi import (
    BytesMemory, LiftError, LowerError, alignment, check_exports, check_signature, despecialize,
    discriminant_size, flat_signature, flatten_type, invoke, lift_flat, lift_results, load,
    lower_args, lower_flat, needs_realloc, post_return_name, size, store, validate,
)
from golemish.runtime.typed.cabi_layout import flatten
from golemish.runtime.typed.wit import parse_wit
from golemish.runtime.typed.wit_types import (
    BOOL, CHAR, F32, F64, S8, S16, S32, S64, STRING, U8, U16, U32, U64, Enum, Err, Flags,
    FuncDecl, List, Ok, Option, Record, Result, Some, Tuple, Type, Variant,
)


def var(*payloads: Type | None) -> Variant:
    return Variant("v", tuple((chr(ord("a") + i), p) for i, p in enumerate(payloads)))


def flags(n: int) -> Flags:
    return Flags("f", tuple(f"f{i}" for i in range(n)))


def rec(**fields: Type) -> Record:
    return Record("r", tuple(fields.items()))


def lift(t: Type, flat: list, mem: BytesMemory | None = None):
    return lift_flat(list(zip(flatten_type(t), flat)), t, mem or BytesMemory())


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


# -- layout -----------------------------------------------------------------------------

@pytest.mark.parametrize("t, size_, align, flat", [
    (BOOL, 1, 1, ["i32"]), (S16, 2, 2, ["i32"]), (U64, 8, 8, ["i64"]), (F32, 4, 4, ["f32"]),
    (F64, 8, 8, ["f64"]), (CHAR, 4, 4, ["i32"]), (STRING, 8, 4, ["i32", "i32"]),
    (List(U64), 8, 4, ["i32", "i32"]),
    (rec(x=U8, y=U16, z=U32), 8, 4, ["i32", "i32", "i32"]),
    (Tuple((U8, U64, U8)), 24, 8, ["i32", "i64", "i32"]),
    (Tuple((U16, U8)), 4, 2, ["i32", "i32"]),
    (var(U8, F32, None), 8, 4, ["i32", "i32"]),           # f32 joins i32
    (var(U32, U64), 16, 8, ["i32", "i64"]),               # i32 joins i64
    (var(F64, U64), 16, 8, ["i32", "i64"]),
    (var(Tuple((U8, F32)), U64), 16, 8, ["i32", "i64", "f32"]),
    (var(None, U8, Tuple((U8, U16))), 6, 2, ["i32", "i32", "i32"]),
    (Enum("e", ("a", "b")), 1, 1, ["i32"]),
    (Enum("e", tuple(f"c{i}" for i in range(257))), 2, 2, ["i32"]),
    (Option(F32), 8, 4, ["i32", "f32"]),
    (Option(Option(U64)), 24, 8, ["i32", "i32", "i64"]),
    (Result(U8, U32), 8, 4, ["i32", "i32"]),
    (Result(None, None), 1, 1, ["i32"]),
    (Result(STRING, F64), 16, 8, ["i32", "i64", "i32"]),
    (flags(1), 1, 1, ["i32"]), (flags(9), 2, 2, ["i32"]), (flags(17), 4, 4, ["i32"]),
    (flags(32), 4, 4, ["i32"]),
])
def test_size_alignment_flattening(t, size_, align, flat):
    assert (size(t), alignment(t), flatten_type(t)) == (size_, align, flat)


def test_despecialize_and_discriminants():
    assert despecialize(Option(U8)) == Variant("", (("none", None), ("some", U8)))
    assert despecialize(Result(U8, None)) == Variant("", (("ok", U8), ("error", None)))
    assert despecialize(Tuple((U8,))) == Record("", (("0", U8),))
    assert [discriminant_size(n) for n in (1, 256, 257, 65536, 65537)] == [1, 1, 2, 2, 4]


def fn(params: list[Type], result: Type | None = None) -> FuncDecl:
    return FuncDecl("f", tuple((f"p{i}", t) for i, t in enumerate(params)), result, "f")


@pytest.mark.parametrize("params, result, core_params, core_results", [   # spec test_flatten
    ([U8, F32, F64], None, ["i32", "f32", "f64"], []),
    ([U8, F32, F64], F32, ["i32", "f32", "f64"], ["f32"]),
    ([U8, F32, F64], U8, ["i32", "f32", "f64"], ["i32"]),
    ([U8, F32, F64], Tuple((F32,)), ["i32", "f32", "f64"], ["f32"]),
    ([U8, F32, F64], Tuple((F32, F32)), ["i32", "f32", "f64"], ["i32"]),
    ([U8] * 16, None, ["i32"] * 16, []),
    ([U8] * 17, None, ["i32"], []),
    ([U8] * 17, Tuple((U8, U8)), ["i32"], ["i32"]),
    ([STRING] * 8, STRING, ["i32"] * 16, ["i32"]),
    ([STRING] * 8 + [BOOL], None, ["i32"], []),
])
def test_flat_signature(params, result, core_params, core_results):
    f = fn(params, result)
    assert flat_signature(f) == (core_params, core_results)
    assert check_signature(f, core_params, core_results) is None


def test_check_signature_explains_a_mismatch():
    f = FuncDecl("add-item", (("sku", STRING), ("qty", U32)), U64, "add-item")
    assert check_signature(f, ["i32", "i32"], ["i64"]) == (
        "export 'add-item' has core type (i32, i32) -> (i64), but `add-item: func(sku: "
        "string, qty: u32) -> u64` needs (i32, i32, i32) -> (i64)")
    assert post_return_name(f) == "cabi_post_add-item"


def test_needs_realloc():
    assert not needs_realloc(fn([U8, Option(F64), Enum("e", ("a",)), flags(3)]))
    assert needs_realloc(fn([Option(STRING)]))
    assert needs_realloc(fn([var(U8, List(U8))]))
    assert needs_realloc(fn([U8] * 17))
    assert not needs_realloc(fn([], STRING))  # results are the guest's to allocate


def test_check_exports_lists_every_problem():
    w = parse_wit("""world w {
      export a: func(s: string) -> string;
      export b: func(x: u8);
      export c: func();
    }""")
    good = {"a": (["i32", "i32"], ["i32"]), "cabi_post_a": (["i32"], []), "b": (["i32"], []),
            "c": ([], []), "cabi_realloc": (["i32"] * 4, ["i32"])}
    assert check_exports(w.functions.values(), good) == []
    bad = {"a": (["i32"], ["i32"]), "cabi_post_a": (["i32"], ["i32"]), "b": (["i64"], [])}
    assert check_exports(w.functions.values(), bad) == [
        "export 'a' has core type (i32) -> (i32), but `a: func(s: string) -> string` needs "
        "(i32, i32) -> (i32)",
        "cabi_post_a has core type (i32) -> (i32), expected (i32) -> ()",
        "export 'b' has core type (i64) -> (), but `b: func(x: u8)` needs (i32) -> ()",
        "`c: func()` has no core export named 'c'",
        "cabi_realloc: (i32, i32, i32, i32) -> i32 is missing; a need it to receive their "
        "arguments",
    ]


# -- spec vectors: flat lifting --------------------------------------------------------

@pytest.mark.parametrize("t, flat, want", [
    (rec(x=U8, y=U16, z=U32), [1, 2, 3], {"x": 1, "y": 2, "z": 3}),
    (Tuple((Tuple((U8, U8)), U8)), [1, 2, 3], ((1, 2), 3)),
    (flags(2), [0], frozenset()), (flags(2), [2], {"f1"}), (flags(2), [3], {"f0", "f1"}),
    (flags(2), [4], frozenset()),
    (var(U8, F32, None), [0, 42], ("a", 42)), (var(U8, F32, None), [0, 256], ("a", 0)),
    (var(U8, F32, None), [1, 0x4048F5C3], ("b", 3.140000104904175)),
    (var(U8, F32, None), [2, 0xFFFFFFFF], ("c", None)),
    (var(U32, U64), [0, 42], ("a", 42)), (var(U32, U64), [0, 1 << 35], ("a", 0)),
    (var(U32, U64), [1, 1 << 35], ("b", 1 << 35)),
    (var(F32, U64), [0, 0x4048F5C3], ("a", 3.140000104904175)),
    (var(F32, U64), [0, 1 << 35], ("a", 0.0)), (var(F32, U64), [1, 1 << 35], ("b", 1 << 35)),
    (var(F64, U64), [0, 0x40091EB851EB851F], ("a", 3.14)),
    (var(F64, U64), [0, 1 << 35], ("a", 1.69759663277e-313)),
    (var(F64, U64), [1, 1 << 35], ("b", 1 << 35)),
    (var(U8), [0, 42], ("a", 42)), (var(U8), [0, 256], ("a", 0)),
    (var(Tuple((U8, F32)), U64), [0, 42, 3.14], ("a", (42, f32(3.14)))),
    (var(Tuple((U8, F32)), U64), [1, 1 << 35, 0.0], ("b", 1 << 35)),
    (Option(F32), [0, 3.14], None), (Option(F32), [1, 3.14], f32(3.14)),
    (Result(U8, U32), [0, 42], Ok(42)), (Result(U8, U32), [1, 1000], Err(1000)),
    (Enum("e", ("a", "b")), [0], "a"), (Enum("e", ("a", "b")), [1], "b"),
])
def test_spec_lift_flat(t, flat, want):
    got = lift(t, flat)
    assert got == want
    if isinstance(t, Flags):
        assert isinstance(got, frozenset)


@pytest.mark.parametrize("t, pairs", [
    (BOOL, [(0, False), (1, True), (2, True), (4294967295, True)]),
    (U8, [(127, 127), (128, 128), (255, 255), (256, 0), (4294967295, 255),
          (4294967168, 128), (4294967167, 127)]),
    (S8, [(127, 127), (128, -128), (255, -1), (256, 0), (4294967295, -1),
          (4294967168, -128), (4294967167, 127)]),
    (U16, [(32767, 32767), (32768, 32768), (65535, 65535), (65536, 0),
           ((1 << 32) - 1, 65535), ((1 << 32) - 32768, 32768), ((1 << 32) - 32769, 32767)]),
    (S16, [(32767, 32767), (32768, -32768), (65535, -1), (65536, 0),
           ((1 << 32) - 1, -1), ((1 << 32) - 32768, -32768), ((1 << 32) - 32769, 32767)]),
    (U32, [((1 << 31) - 1, (1 << 31) - 1), (1 << 31, 1 << 31), ((1 << 32) - 1, (1 << 32) - 1),
           (-1, (1 << 32) - 1)]),   # wasmtime hands back i32 results signed
    (S32, [((1 << 31) - 1, (1 << 31) - 1), (1 << 31, -(1 << 31)), ((1 << 32) - 1, -1)]),
    (U64, [((1 << 63) - 1, (1 << 63) - 1), (1 << 63, 1 << 63), ((1 << 64) - 1, (1 << 64) - 1),
           (-1, (1 << 64) - 1)]),
    (S64, [((1 << 63) - 1, (1 << 63) - 1), (1 << 63, -(1 << 63)), ((1 << 64) - 1, -1)]),
    (CHAR, [(0, "\x00"), (65, "A"), (0xD7FF, "\ud7ff"), (0xE000, "\ue000"),
            (0x10FFFF, "\U0010ffff")]),
])
def test_spec_lift_flat_scalars(t, pairs):
    for core, want in pairs:
        assert lift(t, [core]) == want


@pytest.mark.parametrize("t, flat", [
    (CHAR, [0xD800]), (CHAR, [0xDFFF]), (CHAR, [0x110000]), (CHAR, [0xFFFFFFFF]),
    (Enum("e", ("a", "b")), [2]), (var(U8), [1, 256]), (Option(U8), [2, 0]),
])
def test_spec_lift_flat_traps(t, flat):
    with pytest.raises(LiftError):
        lift(t, flat)


@pytest.mark.parametrize("bits, canonical", [
    (0x7FC00000, 0x7FC00000), (0x7FC00001, 0x7FC00000), (0x7FE00000, 0x7FC00000),
    (0x7FFFFFFF, 0x7FC00000), (0xFFFFFFFF, 0x7FC00000), (0x7F800000, 0x7F800000),
    (0x3FC00000, 0x3FC00000),
])
def test_spec_f32_nan_canonicalization(bits, canonical):
    mem = BytesMemory()
    mem.write(64, bits.to_bytes(4, "little"))
    v = load(mem, 64, F32)
    store(mem, None, v, F32, 128)
    assert int.from_bytes(mem.read(128, 4), "little") == canonical


@pytest.mark.parametrize("bits, canonical", [
    (0x7FF8000000000001, 0x7FF8000000000000), (0xFFFFFFFFFFFFFFFF, 0x7FF8000000000000),
    (0x7FF0000000000000, 0x7FF0000000000000), (0x3FF0000000000000, 0x3FF0000000000000),
])
def test_spec_f64_nan_canonicalization(bits, canonical):
    mem = BytesMemory()
    mem.write(64, bits.to_bytes(8, "little"))
    store(mem, None, load(mem, 64, F64), F64, 128)
    assert int.from_bytes(mem.read(128, 8), "little") == canonical


# -- spec vectors: lists in memory (test_heap) -----------------------------------------

FF = 0xFF
HEAP = [
    (List(BOOL), [True, False, True], [0, 3], [1, 0, 1]),
    (List(BOOL), [True, False, True], [0, 3], [1, 0, 2]),
    (List(BOOL), [True, False, True], [3, 3], [FF, FF, FF, 1, 0, 1]),
    (List(U8), [1, 2, 3], [0, 3], [1, 2, 3]),
    (List(U16), [1, 2, 3], [0, 3], [1, 0, 2, 0, 3, 0]),
    (List(U16), None, [1, 3], [0, 1, 0, 2, 0, 3, 0]),
    (List(U32), [1, 2, 3], [0, 3], [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]),
    (List(U64), [1, 2], [0, 2], [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]),
    (List(S8), [-1, -2, -3], [0, 3], [FF, 0xFE, 0xFD]),
    (List(S16), [-1, -2, -3], [0, 3], [FF, FF, 0xFE, FF, 0xFD, FF]),
    (List(S32), [-1, -2, -3], [0, 3], [FF, FF, FF, FF, 0xFE, FF, FF, FF, 0xFD, FF, FF, FF]),
    (List(S64), [-1, -2], [0, 2], [FF] * 8 + [0xFE] + [FF] * 7),
    (List(CHAR), ["A", "B", "c"], [0, 3], [65, 0, 0, 0, 66, 0, 0, 0, 99, 0, 0, 0]),
    (List(STRING), ["hi", "wat"], [0, 2],
     [16, 0, 0, 0, 2, 0, 0, 0, 21, 0, 0, 0, 3, 0, 0, 0, ord("h"), ord("i"), 0xF, 0xF, 0xF,
      ord("w"), ord("a"), ord("t")]),
    (List(List(U8)), [[3, 4, 5], [], [6, 7]], [0, 3],
     [24, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 27, 0, 0, 0, 2, 0, 0, 0, 3, 4, 5, 6, 7]),
    (List(List(U16)), [[5, 6]], [0, 1], [8, 0, 0, 0, 2, 0, 0, 0, 5, 0, 6, 0]),
    (List(List(U16)), None, [0, 1], [9, 0, 0, 0, 2, 0, 0, 0, 0, 5, 0, 6, 0]),
    (List(Tuple((U8, U8, U16, U32))), [(6, 7, 8, 9), (4, 5, 6, 7)], [0, 2],
     [6, 7, 8, 0, 9, 0, 0, 0, 4, 5, 6, 0, 7, 0, 0, 0]),
    (List(Tuple((U8, U16, U8, U32))), [(6, 7, 8, 9), (4, 5, 6, 7)], [0, 2],
     [6, FF, 7, 0, 8, FF, FF, FF, 9, 0, 0, 0, 4, FF, 5, 0, 6, FF, FF, FF, 7, 0, 0, 0]),
    (List(Tuple((U16, U8))), [(6, 7), (8, 9)], [0, 2], [6, 0, 7, FF, 8, 0, 9, FF]),
    (List(Tuple((Tuple((U16, U8)), U8))), [((4, 5), 6), ((7, 8), 9)], [0, 2],
     [4, 0, 5, FF, 6, FF, 7, 0, 8, FF, 9, FF]),
    (List(var(None, U8, Tuple((U8, U16)))), [("a", None), ("b", 42), ("c", (6, 7))], [0, 3],
     [0, FF, FF, FF, FF, FF, 1, FF, 42, FF, FF, FF, 2, FF, 6, FF, 7, 0]),
    (List(var(U32, U8)), [("a", 256), ("b", 42)], [0, 2],
     [0, FF, FF, FF, 0, 1, 0, 0, 1, FF, FF, FF, 42, FF, FF, FF]),
    (List(Tuple((var(U8, Tuple((U16, U8))), U8))), [(("b", (5, 6)), 7), (("a", 8), 9)], [0, 2],
     [1, FF, 5, 0, 6, FF, 7, FF, 0, FF, 8, FF, FF, FF, 9, FF]),
    (List(var(U8)), [("a", 6), ("a", 7), ("a", 8)], [0, 3], [0, 6, 0, 7, 0, 8]),
    (List(flags(2)), [set(), {"f1"}, {"f0", "f1"}], [0, 3], [0, 2, 3]),
    (List(flags(2)), [set(), {"f1"}, set()], [0, 3], [0, 2, 4]),
    (List(flags(9)), [set(flags(9).flags), set()], [0, 2], [FF, 0x1, 0, 0]),
    (List(flags(9)), [set(flags(9).flags), set()], [0, 2], [FF, 0x3, 0, 0]),
    (List(flags(17)), [set(flags(17).flags), set()], [0, 2], [FF, FF, 0x1, 0, 0, 0, 0, 0]),
    (List(flags(17)), [set(flags(17).flags), set()], [0, 2], [FF, FF, 0x3, 0, 0, 0, 0, 0]),
]


@pytest.mark.parametrize("t, want, flat, heap", HEAP)
def test_spec_heap(t, want, flat, heap):
    mem = BytesMemory(initial=len(heap))
    mem.data[:] = bytes(heap)
    if want is None:
        with pytest.raises(LiftError, match="not aligned"):
            lift(t, flat, mem)
        return
    assert lift(t, flat, mem) == want
    # and back: lower into a fresh memory, lift again
    fresh = BytesMemory()
    lowered = lower_flat(want, t, fresh, fresh.realloc)
    assert [ty for ty, _ in lowered] == flatten_type(t)
    assert lift_flat(lowered, t, fresh) == want


# -- lowering details ------------------------------------------------------------------

def test_strings_are_utf8_and_allocated_byte_exact():
    mem = BytesMemory()
    (_, ptr), (_, n) = lower_flat("h€llo 😀", STRING, mem, mem.realloc)
    assert mem.read(ptr, n) == "h€llo 😀".encode()
    assert mem.calls == [(0, 0, 1, n)]


def test_empty_strings_and_lists_still_call_realloc_with_size_zero():
    mem = BytesMemory()
    assert lift_flat(lower_flat("", STRING, mem, mem.realloc), STRING, mem) == ""
    assert lift_flat(lower_flat([], List(U64), mem, mem.realloc), List(U64), mem) == []
    assert mem.calls == [(0, 0, 1, 0), (0, 0, 8, 0)]


def test_variant_payloads_fill_joined_slots():
    t = var(F32, U64, STRING)
    mem = BytesMemory()
    assert lower_flat(("a", 1.5), t, mem, None) == [("i32", 0), ("i64", 0x3FC00000), ("i32", 0)]
    assert lower_flat(("b", 2**64 - 1), t, mem, None) == [
        ("i32", 1), ("i64", 2**64 - 1), ("i32", 0)]
    assert lower_flat(Err(None), Result(F64, None), mem, None) == [("i32", 1), ("f64", 0.0)]


def test_nested_options_need_some():
    t = Option(Option(U8))
    mem = BytesMemory()
    for v in (None, Some(None), Some(7)):
        assert lift_flat(lower_flat(v, t, mem, None), t, mem) == v
    assert lower_flat(Some(3), Option(U8), mem, None) == [("i32", 1), ("i32", 3)]
    with pytest.raises(LowerError, match=r"write some\(x\) of a nested option as Some\(x\)"):
        validate(7, t)


@pytest.mark.parametrize("t, v, message", [
    (U8, 256, "expected u8, got int 256 (out of range 0..255)"),
    (U8, True, "expected u8, got bool True"),
    (BOOL, 1, "expected bool, got int 1"),
    (F32, 1e39, "out of range for f32"),
    (CHAR, "ab", "a char is one Unicode scalar value"),
    (STRING, "\ud800", "contains a lone surrogate"),
    (List(U8), "abc", "expected list<u8>, got str 'abc'"),
    (List(U32), [1, 2, -3], "[2]: expected u32, got int -3"),
    (rec(sku=STRING, qty=U32), {"sku": "a"}, "record r is missing field 'qty'"),
    (rec(sku=STRING, qty=U32), {"sku": "a", "qty": 1, "x": 2}, "record r has no field 'x'"),
    (rec(sku=STRING, qty=U32), {"sku": "a", "qty": -1}, "qty: expected u32, got int -1"),
    (Tuple((U8, STRING)), (1,), "a tuple of 2"),
    (var(U8, None), ("z", 1), "variant v has no case 'z'"),
    (var(U8, None), ("b", 1), "b: case b has no payload, got int 1"),
    (var(U8, None), "b", "a (case, payload) pair"),
    (Enum("color", ("red",)), "blue", "expected enum color, got str 'blue' (one of red)"),
    (flags(2), {"f0", "x"}, "flags f has no flag 'x'"),
    (Result(U8, None), 5, "Ok(...) or Err(...)"),
    (Result(U8, None), Err(5), "err: err has no payload, got int 5"),
    (Option(List(U8)), [1, 300], "[1]: expected u8"),
])
def test_lower_errors_say_where(t, v, message):
    with pytest.raises(LowerError, match=None) as e:
        validate(v, t)
    assert message in str(e.value)


def test_lower_args_validates_before_touching_memory():
    f = fn([STRING, List(STRING), U8])
    mem = BytesMemory()
    with pytest.raises(LowerError, match="p2: expected u8"):
        lower_args(f, ["a", ["b", "c"], 999], mem, mem.realloc)
    assert mem.calls == []
    with pytest.raises(LowerError, match="takes 3 argument"):
        lower_args(f, ["a"], mem, mem.realloc)


def test_core_args_are_signed_as_wasm_takes_them():
    f = fn([U32, U64, S8, F32])
    assert lower_args(f, [2**32 - 1, 2**64 - 1, -1, 0.1], BytesMemory(), None) == [
        -1, -1, -1, f32(0.1)]


# -- lifting errors ----------------------------------------------------------------------

def test_lift_errors():
    mem = BytesMemory(initial=256)
    mem.write(16, b"\xff\xfe")
    with pytest.raises(LiftError, match="not valid UTF-8"):
        lift(STRING, [16, 2], mem)
    with pytest.raises(LiftError, match="outside linear memory"):
        lift(STRING, [250, 10], mem)
    with pytest.raises(LiftError, match="outside linear memory"):
        lift(List(U64), [8, 1 << 28], mem)
    mem.write(32, bytes([3, 0, 0, 0]))
    with pytest.raises(LiftError, match="discriminant 3 out of range"):
        load(mem, 32, Result(U8, U8))
    mem.write(40, (0xD800).to_bytes(4, "little"))
    with pytest.raises(LiftError, match="not a Unicode scalar value"):
        load(mem, 40, CHAR)
    with pytest.raises(LiftError, match="not aligned to 8"):
        load(mem, 44, U64)
    with pytest.raises(LiftError, match="returned 2 core values, expected 1"):
        lift_results(fn([], U8), [1, 2], mem)


# -- calls through an emulated guest ---------------------------------------------------

class EchoGuest:
    """A guest written with the ABI itself: it lifts its params the way a callee does
    (flat, or from the spilled tuple), and returns them (a tuple of all of them when
    there are several) flat or through a return pointer it allocates."""

    def __init__(self, func: FuncDecl) -> None:
        self.func, self.mem = func, BytesMemory()
        self.posts: list[list] = []

    def call(self, name: str, core_args: list) -> list:
        f, mem = self.func, self.mem
        if name == post_return_name(f):
            self.posts.append(core_args)
            return []
        ptypes = f.param_types
        flat_p, flat_r = flat_signature(f)
        if sum(len(flatten(t)) for t in ptypes) > 16:
            args = list(load(mem, core_args[0] & 0xFFFFFFFF, Tuple(ptypes)))
        else:
            args = list(lift_flat(list(zip(flat_p, core_args)), Tuple(ptypes), mem))
        result = args[0] if len(args) == 1 else tuple(args)
        if len(flatten(f.result)) > 1:
            ptr = mem.realloc(0, 0, alignment(f.result), size(f.result))
            store(mem, mem.realloc, result, f.result, ptr)
            return [ptr]
        return [x for _, x in lower_flat(result, f.result, mem, mem.realloc)]


def call_echo(params: list[Type], args: list) -> tuple:
    f = fn(params, params[0] if len(params) == 1 else Tuple(tuple(params)))
    g = EchoGuest(f)
    got = invoke(f, args, mem=g.mem, realloc=g.mem.realloc, call=g.call,
                 has_export=lambda n: True)
    return got, g


def test_spilled_params_go_through_one_realloc_d_tuple():
    params = [U8] * 16 + [STRING]
    args = list(range(16)) + ["seventeen"]
    got, g = call_echo(params, args)
    assert got == tuple(args)
    tup = Tuple(tuple(params))
    assert g.mem.calls[0] == (0, 0, alignment(tup), size(tup))
    assert len(g.posts) == 1  # post-return got the return pointer


@pytest.mark.parametrize("t, v", [
    (STRING, ""), (STRING, "ünï©ødé 😀"), (List(STRING), []),
    (List(STRING), ["", "a", "€"]),
    (Option(Result(List(STRING), rec(a=U8, b=F64))), Ok(["x", ""])),
    (Option(Result(List(STRING), rec(a=U8, b=F64))), Err({"a": 1, "b": -0.5})),
    (Option(Option(Option(STRING))), Some(Some(None))),
    (Result(None, None), Err(None)), (flags(32), frozenset({"f0", "f31"})),
    (F32, math.inf), (F64, -0.0),
])
def test_round_trips_through_a_call(t, v):
    got, _ = call_echo([t], [v])
    assert norm(got) == norm(v)


@settings(max_examples=300, deadline=None)
@given(typed_values())
def test_store_load_and_flat_round_trips(tv):
    t, v = tv
    mem = BytesMemory()
    ptr = mem.realloc(0, 0, alignment(t), size(t))
    store(mem, mem.realloc, v, t, ptr)
    assert norm(load(mem, ptr, t)) == norm(v)
    assert norm(lift_flat(lower_flat(v, t, mem, mem.realloc), t, mem)) == norm(v)


@settings(max_examples=100, deadline=None)
@given(signatures())
def test_random_signatures_round_trip_through_a_call(case):
    params, args = case
    got, _ = call_echo(params, list(args))
    want = args[0] if len(params) == 1 else tuple(args)
    assert norm(got) == norm(want)


def test_echo_wit_layouts_match_the_c_structs():
    # echo.c's static asserts state the same numbers; keep the two in step.
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "guest_examples/echo.wit").read_text()
    w = parse_wit(text, "echo.wit")
    sizes = {n: (size(w.functions[n].result), alignment(w.functions[n].result))
             for n in ("echo-record", "echo-variant", "echo-option-option", "echo-result",
                       "echo-tuple", "echo-pair", "echo-many", "echo-nested")}
    assert sizes == {"echo-record": (32, 8), "echo-variant": (12, 4),
                     "echo-option-option": (16, 4), "echo-result": (12, 4),
                     "echo-tuple": (24, 8), "echo-pair": (16, 8), "echo-many": (80, 8),
                     "echo-nested": (48, 8)}
    assert flat_signature(w.functions["echo-many"]) == (["i32"], ["i32"])
    assert flat_signature(w.functions["echo-nested"])[0] == ["i32"] * 6 + ["f64", "i32"]
