"""Typed values through real C guests: echo.wasm and cart.wasm, run by wasmtime directly.

The host side is runtime/typed/cabi.py (lower, call, lift, post-return) and runtime/typed/wave.py;
the guests implement their WIT worlds by hand against the Canonical ABI.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from hypothesis import given, settings
from wit_strategies import norm, values

from golemish.runtime.typed import cabi, wave
from golemish.runtime.typed.cabi import LiftError, check_exports
from golemish.runtime.typed.wit import Wit, embed_wit, parse_wit, wit_from_custom_section
from golemish.runtime.typed.wit_types import (
    CHAR, STRING, U32, U64, Err, FuncDecl, List, Ok, Option, Record, Result,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location("guest_build", ROOT / "guest_examples/build.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build(["echo", "cart"], verbose=False)


class Guest:
    """One instance, with the Memory protocol and realloc that cabi needs."""

    def __init__(self, wasm: Path, wit: Wit) -> None:
        engine = wasmtime.Engine()
        self.store = wasmtime.Store(engine)
        self.store.set_wasi(wasmtime.WasiConfig())
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        self.module = wasmtime.Module.from_file(engine, str(wasm))
        self.exports = linker.instantiate(self.store, self.module).exports(self.store)
        self.memory: wasmtime.Memory = self.exports["memory"]
        self.exports["_initialize"](self.store)
        self.wit = wit

    # cabi.Memory
    def read(self, ptr: int, n: int) -> bytes:
        return bytes(self.memory.read(self.store, ptr, ptr + n))

    def write(self, ptr: int, data: bytes) -> None:
        self.memory.write(self.store, data, ptr)

    def memory_size(self) -> int:
        return self.memory.data_len(self.store)

    # what the runtime does around cabi
    def realloc(self, old: int, old_size: int, align: int, new_size: int) -> int:
        return self.exports["cabi_realloc"](self.store, old, old_size, align, new_size)

    def core(self, name: str, args: list) -> list:
        out = self.exports[name](self.store, *args)
        return [] if out is None else list(out) if isinstance(out, (list, tuple)) else [out]

    def has_export(self, name: str) -> bool:
        return name in self.exports

    def invoke(self, func: FuncDecl | str, *args: Any) -> Any:
        f = self.wit.lookup(func) if isinstance(func, str) else func
        return cabi.invoke(f, list(args), mem=self, realloc=self.realloc, call=self.core,
                           has_export=self.has_export)

    def invoke_wave(self, call: str) -> str:
        name, args = wave.parse_call(call, self.wit)
        f = self.wit.functions[name]
        return wave.format_result(f, self.invoke(f, *args))


def load(built: dict[str, Path], name: str) -> Guest:
    wit = parse_wit((ROOT / f"guest_examples/{name}.wit").read_text(), f"{name}.wit")
    return Guest(built[name], wit)


@pytest.fixture(scope="module")
def echo(built) -> Guest:
    # Module-scoped: echo keeps no state, and every test checks it leaked nothing.
    return load(built, "echo")


@pytest.fixture
def cart(built) -> Guest:
    return load(built, "cart")


@pytest.mark.parametrize("name", ["echo", "cart"])
def test_every_declared_function_matches_its_core_export(built, name):
    g = load(built, name)
    core = {e.name: ([str(p) for p in e.type.params], [str(r) for r in e.type.results])
            for e in g.module.exports if isinstance(e.type, wasmtime.FuncType)}
    assert check_exports(g.wit.functions.values(), core) == []
    # a WIT that disagrees with the module is caught
    wrong = parse_wit("world w { export echo-u8: func(x: u64) -> u8; export total: func(); }")
    assert len(check_exports(wrong.functions.values(), core)) == 2  # one missing, one wrong


ECHOED = ["echo-bool", "echo-u8", "echo-s8", "echo-u16", "echo-s16", "echo-u32", "echo-s32",
          "echo-u64", "echo-s64", "echo-f32", "echo-f64", "echo-char", "echo-string",
          "echo-list-u32", "echo-list-string", "echo-list-point", "echo-point", "echo-record",
          "echo-variant", "echo-enum", "echo-flags", "echo-wide-flags", "echo-option",
          "echo-option-option", "echo-result", "echo-tuple", "echo-nested"]


@pytest.mark.parametrize("name", ECHOED)
def test_echo_round_trips_random_values(echo, name):
    f = echo.wit.functions[name]
    (_, t), = f.params
    assert f.result == t

    @settings(max_examples=50, deadline=None)
    @given(values(t))
    def round_trip(v):
        assert norm(echo.invoke(f, v)) == norm(v)
        assert echo.invoke("live-allocs") == 0  # post-return freed everything

    round_trip()


ECHO_WIT = parse_wit((ROOT / "guest_examples/echo.wit").read_text(), "echo.wit")


@settings(max_examples=50, deadline=None)
@given(values(ECHO_WIT.functions["echo-many"].result))
def test_echo_many_spills_17_flat_params(echo, v):
    f = echo.wit.functions["echo-many"]
    assert cabi.flat_signature(f) == (["i32"], ["i32"])
    args = [v[name] for name, _ in f.params]  # the record's fields are the params
    assert norm(echo.invoke(f, *args)) == norm(v)
    assert echo.invoke("live-allocs") == 0


def test_echo_pair_and_ping(echo):
    assert echo.invoke("echo-pair", "ü", 2**64 - 1) == ("ü", 2**64 - 1)
    assert echo.invoke("ping") is None
    assert echo.invoke("live-allocs") == 0


@pytest.mark.parametrize("call, printed", [
    ('echo-string("h\\u{e9}llo \\u{1F600}")', '"héllo 😀"'),
    ("echo-list-u32([1, 2, 4294967295])", "[1, 2, 4294967295]"),
    ('echo-record({name: "n", tags: ["a", ""], weight: 0.5, active: true})',
     '{name: "n", tags: ["a", ""], weight: 0.5, active: true}'),
    ("echo-variant(circle(2.5))", "circle(2.5)"),
    ("echo-variant(rect({x: -1, y: 2}))", "rect({x: -1, y: 2})"),
    ("echo-variant(nothing)", "nothing"),
    ("echo-flags({exec, read})", "{read, exec}"),
    ("echo-option(7)", "some(7)"),
    ("echo-option-option(some(none))", "some(none)"),
    ('echo-result(err(3))', "err(3)"),
    ('echo-tuple((1, "x", -0.0))', '(1, "x", -0.0)'),
    ("echo-enum(blue)", "blue"),
    ('echo-nested(some(ok(["a", "b"])))', 'some(ok(["a", "b"]))'),
    ("echo-f32(nan)", "nan"),
    ("ping()", "()"),
])
def test_wave_calls_through_echo(echo, call, printed):
    assert echo.invoke_wave(call) == printed
    assert echo.invoke("live-allocs") == 0


def test_invalid_values_from_the_guest_are_lift_errors(echo):
    # Declare echo-u32 as returning a char: a surrogate code point cannot be lifted.
    f = FuncDecl("as-char", (("x", U32),), CHAR, "echo-u32")
    with pytest.raises(LiftError, match="not a Unicode scalar value"):
        echo.invoke(f, 0xD800)
    # ... and echo-u64 as returning a string through a return pointer far out of bounds.
    f = FuncDecl("as-string", (("x", U64),), Option(STRING), "echo-u64")
    with pytest.raises(LiftError, match="outside linear memory"):
        cabi.lift_results(f, [0xFFFF_FFF0], echo)


# -- cart -----------------------------------------------------------------------------

def item(sku: str, qty: int, price: int) -> dict[str, Any]:
    return {"sku": sku, "qty": qty, "price-cents": price}


def test_cart_session(cart):
    assert cart.invoke("checkout", None) == Err("cart is empty")
    assert cart.invoke("add-item", item("apple", 2, 150)) == 1
    assert cart.invoke("add-item", item("pear", 1, 99)) == 2
    assert cart.invoke("add-item", item("apple", 1, 140)) == 2  # same sku: adds, new price
    assert cart.invoke("items") == [item("apple", 3, 140), item("pear", 1, 99)]
    assert cart.invoke("total") == 519
    assert cart.invoke("find", "apple") == item("apple", 3, 140)
    assert cart.invoke("find", "kiwi") is None
    assert cart.invoke("remove-item", "pear") is True
    assert cart.invoke("remove-item", "pear") is False
    assert cart.invoke("checkout", "BOGUS") == Err("unknown coupon: BOGUS")
    assert cart.invoke("total") == 420  # a failed checkout keeps the cart
    assert cart.invoke("checkout", "HALF") == Ok(210)
    assert cart.invoke("items") == [] and cart.invoke("total") == 0


def test_cart_through_wave_text(cart):
    assert cart.invoke_wave('add-item({sku: "ünicode", qty: 3, price-cents: 1000})') == "1"
    assert cart.invoke_wave('add-item({sku: "", qty: 1, price-cents: 5})') == "2"
    assert cart.invoke_wave("items()") == ('[{sku: "ünicode", qty: 3, price-cents: 1000}, '
                                           '{sku: "", qty: 1, price-cents: 5}]')
    assert cart.invoke_wave('find("")') == 'some({sku: "", qty: 1, price-cents: 5})'
    assert cart.invoke_wave('checkout(some("TENOFF"))') == "ok(2705)"
    assert cart.invoke_wave("checkout") == 'err("cart is empty")'


def test_cart_types_and_memory_stay_bounded(cart):
    f = cart.wit.functions["items"]
    assert f.result == List(Record("item", (("sku", STRING), ("qty", U32),
                                             ("price-cents", U64))))
    assert cart.wit.functions["checkout"].result == Result(U64, STRING)
    for i in range(50):
        cart.invoke("add-item", item(f"sku-{i}", i, i))
    sizes = []
    for _ in range(60):  # returned copies and error strings are freed by cabi_post_*
        assert len(cart.invoke("items")) == 50
        assert cart.invoke("checkout", "NOPE") == Err("unknown coupon: NOPE")
        sizes.append(cart.memory_size())
    assert sizes[-1] == sizes[1]  # (the first round warms the allocator up)


def test_wit_embedded_in_the_module(built):
    text = (ROOT / "guest_examples/cart.wit").read_text()
    wasm = embed_wit(built["cart"].read_bytes(), text)
    assert wit_from_custom_section(wasm) == text
    wasmtime.Module(wasmtime.Engine(), wasm)
    assert wit_from_custom_section(built["cart"].read_bytes()) is None


def test_the_runtime_engine_instance_is_a_cabi_memory(built):
    # engine.Instance already has read/write/memory_size: the runtime can pass it as is.
    from golemish.runtime.engine import Engine

    engine = Engine()
    try:
        wit = parse_wit((ROOT / "guest_examples/cart.wit").read_text())
        module = engine.compile(built["cart"].read_bytes())
        assert check_exports(wit.functions.values(), Engine.func_exports(module)) == []
        inst = engine.instantiate(module, [], memory_limit=64 << 20)
        inst.call("_initialize", [], time_limit=5)

        def call(name: str, args: list) -> list:
            return inst.call(name, args, time_limit=5)

        def realloc(*a: int) -> int:
            return call("cabi_realloc", list(a))[0]

        def run(name: str, *args: Any) -> Any:
            return cabi.invoke(wit.lookup(name), list(args), mem=inst, realloc=realloc,
                               call=call, has_export=inst.has_export)

        assert run("add-item", item("x", 2, 21)) == 1
        assert run("find", "x") == item("x", 2, 21)
        assert run("checkout", "HALF") == Ok(21)
        inst.close()
    finally:
        engine.close()
