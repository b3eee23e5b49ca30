"""The WIT parser: every supported construct, located errors, embedded WIT sections."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from golemish.runtime.typed.wit import (
    WIT_SECTION, WitError, add_custom_section, custom_sections, embed_wit, parse_wit,
    wit_from_custom_section,
)
from golemish.runtime.typed.wit_types import (
    BOOL, CHAR, F32, F64, S8, S16, S32, S64, STRING, U8, U16, U32, U64, Enum, Flags, List,
    Option, Record, Result, Tuple, Variant,
)

GUESTS = Path(__file__).resolve().parents[2] / "guest_examples"


def world(body: str, pre: str = "") -> str:
    return f"package test:pkg@1.2.3;\n{pre}\nworld w {{\n{body}\n}}\n"


def test_primitives_and_generic_types():
    w = parse_wit(world("""
      export f: func(a: bool, b: s8, c: s16, d: s32, e: s64, f: u8, g: u16, h: u32, i: u64,
                     j: f32, k: f64, l: char, m: string) -> list<option<u8>>;
      export g: func(a: result, b: result<u8>, c: result<_, string>, d: result<u8, string>,
                     e: tuple<u8, tuple<string>>, f: list<list<char>>,);
    """))
    f = w.functions["f"]
    assert [t for _, t in f.params] == [BOOL, S8, S16, S32, S64, U8, U16, U32, U64, F32, F64,
                                        CHAR, STRING]
    assert f.result == List(Option(U8))
    g = w.functions["g"]
    assert [t for _, t in g.params] == [
        Result(None, None), Result(U8, None), Result(None, STRING), Result(U8, STRING),
        Tuple((U8, Tuple((STRING,)))), List(List(CHAR))]
    assert g.result is None
    assert w.package == "test:pkg@1.2.3" and w.world == "w"
    assert str(g) == ("g: func(a: result, b: result<u8>, c: result<_, string>, "
                      "d: result<u8, string>, e: tuple<u8, tuple<string>>, "
                      "f: list<list<char>>)")


def test_named_types_in_any_order_and_aliases():
    w = parse_wit(world("""
      export add: func(x: thing, s: shape) -> shapes;
      type shapes = list<shape>;
      record thing { sku: string, qty: u32, price-cents: u64, }
      variant shape { circle(f32), rect(tuple<u32, u32>), none-shape }
      enum color { red, green, blue }
      flags perms { read, write, exec }
      type alias2 = alias1;
      type alias1 = color;
      export paint: func(c: alias2, p: perms) -> color;
    """))
    thing = Record("thing", (("sku", STRING), ("qty", U32), ("price-cents", U64)))
    shape = Variant("shape", (("circle", F32), ("rect", Tuple((U32, U32))),
                              ("none-shape", None)))
    assert w.functions["add"].params == (("x", thing), ("s", shape))
    assert w.functions["add"].result == List(shape)
    color = Enum("color", ("red", "green", "blue"))
    assert w.functions["paint"].params == (("c", color), ("p", Flags("perms", (
        "read", "write", "exec"))))
    assert w.types[""]["alias2"] == color


def test_comments_escapes_and_gates():
    w = parse_wit("""// a line comment
    /// a doc comment
    package a:b;
    /* a block /* nested */ comment */
    world w {
      @since(version = 0.2.0)
      @unstable(feature = fancy)
      export %type: func(%record: %list) -> %list;   // keywords as names
      record %list { %func: u8 }
      @deprecated(version = 0.3.0)
      export HTTP-get: func(url-v2: string);
      export legacy: func() -> ();
    }""")
    f = w.functions["type"]
    assert f.params == (("record", Record("list", (("func", U8),))),)
    assert "HTTP-get" in w.functions
    assert w.functions["legacy"].result is None


def test_interfaces_use_and_function_names():
    w = parse_wit("""
      package golemish:shop@0.1.0;
      interface types {
        record item { sku: string, qty: u32 }
        enum level { low, high }
      }
      interface api {
        use types.{item, level as lvl};
        add: func(i: item) -> lvl;
        count: func() -> u32;
      }
      world shop {
        export api;
        export top: func() -> u32;
        export inline: interface { count: func() -> u64; }
        import wasi:clocks/wall-clock@0.2.0;
        import log: func(msg: string);
      }""")
    assert sorted(w.functions) == ["golemish:shop/api.{add}", "golemish:shop/api.{count}",
                                   "inline.{count}", "top"]
    add = w.functions["golemish:shop/api.{add}"]
    assert add.core_name == "golemish:shop/api@0.1.0#add"
    assert add.interface == "api" and add.short_name == "add"
    assert add.result == Enum("level", ("low", "high"))
    assert w.functions["top"].core_name == "top"
    assert w.functions["inline.{count}"].core_name == "inline#count"
    assert w.imports == ["wasi:clocks/wall-clock@0.2.0", "log"]
    # golem-style short forms resolve when unambiguous
    assert w.lookup("add") is add and w.lookup("{add}") is add
    assert w.lookup("api.{add}") is add and w.lookup("api.add") is add
    assert w.lookup("api.count").result == U32
    with pytest.raises(KeyError, match="'count' is ambiguous"):
        w.lookup("count")
    with pytest.raises(KeyError, match="'nope' is not exported; exported: golemish"):
        w.lookup("nope")


def test_without_package_interface_core_names_are_bare():
    w = parse_wit("interface api { f: func(); } world w { export api; }")
    assert w.functions["api.{f}"].core_name == "api#f"


def test_choosing_a_world():
    src = "world a { export f: func(); } world b { export g: func(); }"
    assert list(parse_wit(src, world="b").functions) == ["g"]
    with pytest.raises(WitError, match="several worlds are defined"):
        parse_wit(src)
    with pytest.raises(WitError, match="no world named 'c'"):
        parse_wit(src, world="c")


@pytest.mark.parametrize("src, message", [
    ("package a:b;\nworld w {\n  export f: func(x: list<u8) -> u8;\n}",
     "x.wit:3:28: expected '>', got ')'"),
    ("world w {\n  export f: func(x: thing);\n}", "x.wit:2:21: unknown type 'thing' in this world"),
    ("world w {\n  export f: func(x: u8) -> result<u8, ;\n}",
     "x.wit:2:39: expected a type, got ';'"),
    ("world w { record r { a: list<r> } export f: func(x: r); }",
     "x.wit:1:30: type 'r' refers to itself"),
    ("world w { /* never closed", "x.wit:1:11: unterminated block comment"),
    ("world w {\n  export Foo-bar: func();\n}", "x.wit:2:10: invalid identifier 'Foo-bar'"),
    ("world w {\n  export type: func();\n}", "x.wit:2:10: expected export name, got keyword "
     "'type' (write %type to use it as a name)"),
    ("world w { record r {} }", "x.wit:1:18: record 'r' must have at least one field"),
    ("world w { enum e { a, b, a } }", "x.wit:1:26: duplicate name 'a' in enum"),
    ("world w { flags f { " + ", ".join(f"a{i}" for i in range(33)) + " } }",
     "x.wit:1:17: flags may have at most 32 members, 'f' has 33"),
    ("world w { export f: func(); export f: func(); }", "x.wit:1:36: function 'f' is defined "
     "twice"),
    ("world w { export f: func(a: u8, a: u8); }", "x.wit:1:33: duplicate parameter 'a'"),
    ("world w { resource r; }", "x.wit:1:11: resources are not supported"),
    ("world w { export f: func(x: borrow<r>); }", "x.wit:1:29: 'borrow' types are not supported"),
    ("world w { export f: func() -> (a: u8); }", "x.wit:1:31: multiple or named results"),
    ("world w { export api; }", "x.wit:1:18: unknown interface 'api'"),
    ("world w { export f: func(x: _); }", "x.wit:1:29: '_' is only allowed inside result"),
    ("interface i { f: func(); }", "x.wit:1:1: no world is defined"),
    ("world w { export f: func() }", "x.wit:1:28: expected ';', got '}'"),
    ("package a:b\nworld w {}", "x.wit:2:1: expected ';', got 'world'"),
    ("world w { export f: func(x: u8 $) ; }", "x.wit:1:32: unexpected character '$'"),
    ("world w {\n  export f: func();", "x.wit:2:20: expected '}', got end of file"),
])
def test_errors_are_located(src, message):
    with pytest.raises(WitError) as e:
        parse_wit(src, "x.wit")
    assert str(e.value).startswith(message), str(e.value)
    line, col = message.split(":")[1:3]
    assert (e.value.file, e.value.line, e.value.col) == ("x.wit", int(line), int(col))


@pytest.mark.parametrize("name", ["echo", "cart"])
def test_guest_wit_files_parse(name):
    w = parse_wit((GUESTS / f"{name}.wit").read_text(), f"{name}.wit")
    assert w.world == name
    assert all(f.core_name == f.name for f in w.functions.values())


def test_cart_interface():
    w = parse_wit((GUESTS / "cart.wit").read_text(), "cart.wit")
    item = Record("item", (("sku", STRING), ("qty", U32), ("price-cents", U64)))
    assert w.functions["add-item"].params == (("item", item),)
    assert w.functions["items"].result == List(item)
    assert w.functions["find"].result == Option(item)
    assert w.functions["checkout"].params == (("coupon", Option(STRING)),)
    assert w.functions["checkout"].result == Result(U64, STRING)


# -- custom sections ----------------------------------------------------------------

MODULE = wasmtime.wat2wasm('(module (func (export "f") (result i32) i32.const 7))')
WIT = "package a:b;\nworld w { export f: func() -> u32; }\n"


def test_embedded_wit_round_trips_and_keeps_the_module_valid():
    wasm = embed_wit(MODULE, WIT)
    assert wit_from_custom_section(wasm) == WIT
    assert parse_wit(wit_from_custom_section(wasm)).functions["f"].result == U32
    wasmtime.Module(wasmtime.Engine(), wasm)  # still a valid module
    assert wit_from_custom_section(MODULE) is None


def test_custom_sections_are_listed_in_order():
    big = "x" * 300  # a section size that needs a two-byte LEB128
    wasm = add_custom_section(add_custom_section(MODULE, "first", big.encode()), WIT_SECTION,
                              b"world w {}")
    assert custom_sections(wasm)[-2:] == [("first", big.encode()), (WIT_SECTION, b"world w {}")]


def test_not_a_module():
    with pytest.raises(ValueError, match="not a WebAssembly binary"):
        wit_from_custom_section(b"hello")
    with pytest.raises(ValueError, match="past the end"):
        wit_from_custom_section(b"\0asm\1\0\0\0\0\x7f")
