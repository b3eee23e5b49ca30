"""WAVE text: parsing by type, canonical printing, positioned errors, calls, JSON."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from wit_strategies import norm, typed_values

from golemish.runtime.typed.cabi import LowerError
from golemish.runtime.typed.wave import (
    WaveError, format_call, format_result, from_json, parse, parse_args, parse_call, to_json,
    to_wave,
)
from golemish.runtime.typed.wit import parse_wit
from golemish.runtime.typed.wit_types import (
    BOOL, CHAR, F32, F64, S8, S64, STRING, U8, U32, U64, Enum, Err, Flags, List, Ok, Option,
    Record, Result, Some, Tuple, Variant,
)

ITEM = Record("item", (("sku", STRING), ("qty", U32), ("price-cents", U64),
                       ("note", Option(STRING))))
SHAPE = Variant("shape", (("circle", F32), ("rect", Tuple((U32, U32))), ("none", None),
                          ("empty", None)))
PERMS = Flags("perms", ("read", "write", "exec"))
STATUS = Enum("status", ("ok", "not-found"))


@pytest.mark.parametrize("text, t, value, canonical", [
    ("true", BOOL, True, "true"),
    ("-128", S8, -128, "-128"),
    ("18446744073709551615", U64, 2**64 - 1, "18446744073709551615"),
    ("-9223372036854775808", S64, -(2**63), "-9223372036854775808"),
    ("3.5", F64, 3.5, "3.5"),
    ("6.022e+23", F64, 6.022e23, "6.022e+23"),
    ("1E-5", F64, 1e-5, "1e-5"),
    ("5", F64, 5.0, "5.0"),
    ("0.1", F32, 0.10000000149011612, "0.1"),
    ("-inf", F32, -math.inf, "-inf"),
    ("inf", F64, math.inf, "inf"),
    ("-0.0", F64, -0.0, "-0.0"),
    ("'x'", CHAR, "x", "'x'"),
    ("'☃'", CHAR, "☃", "'☃'"),
    (r"'\''", CHAR, "'", r"'\''"),
    ("'\"'", CHAR, '"', "'\"'"),
    (r"'\u{0}'", CHAR, "\0", r"'\u{0}'"),
    (r'"abc\t123"', STRING, "abc\t123", r'"abc\t123"'),
    (r'"q\"\\\n\r\u{1F600}\'"', STRING, "q\"\\\n\r😀'", r'"q\"\\\n\r😀' + "'\""),
    ('"\x07"', STRING, "\x07", r'"\u{7}"'),
    ('[]', List(U8), [], "[]"),
    ("[1, 2, 3,]", List(U8), [1, 2, 3], "[1, 2, 3]"),
    ('("abc", 123)', Tuple((STRING, U8)), ("abc", 123), '("abc", 123)'),
    ('{price-cents: 5, qty: 2, sku: "a"}', ITEM,
     {"sku": "a", "qty": 2, "price-cents": 5, "note": None},
     '{sku: "a", qty: 2, price-cents: 5, note: none}'),
    ('{sku: "a", qty: 2, price-cents: 5, note: "hi",}', ITEM,
     {"sku": "a", "qty": 2, "price-cents": 5, "note": "hi"},
     '{sku: "a", qty: 2, price-cents: 5, note: some("hi")}'),
    ('{%sku: "a", qty: 2, price-cents: 5}', ITEM,
     {"sku": "a", "qty": 2, "price-cents": 5, "note": None},
     '{sku: "a", qty: 2, price-cents: 5, note: none}'),
    ("{:}", Record("r", (("a", Option(U8)),)), {"a": None}, "{a: none}"),
    ("circle(2.5)", SHAPE, ("circle", 2.5), "circle(2.5)"),
    ("rect((1, 2))", SHAPE, ("rect", (1, 2)), "rect((1, 2))"),
    ("%none", SHAPE, ("none", None), "%none"),
    ("empty", SHAPE, ("empty", None), "empty"),
    ("not-found", STATUS, "not-found", "not-found"),
    ("%ok", STATUS, "ok", "%ok"),
    ("{write, read,}", PERMS, frozenset({"read", "write"}), "{read, write}"),
    ("{}", PERMS, frozenset(), "{}"),
    ("some(5)", Option(U8), 5, "some(5)"),
    ("5", Option(U8), 5, "some(5)"),
    ('"flat some"', Option(STRING), "flat some", 'some("flat some")'),
    ("none", Option(U8), None, "none"),
    ("some(none)", Option(Option(U8)), Some(None), "some(none)"),
    ("some(some(3))", Option(Option(U8)), Some(3), "some(some(3))"),
    ("123", Result(U8, None), Ok(123), "ok(123)"),
    ('ok("explicit ok")', Result(STRING, STRING), Ok("explicit ok"), 'ok("explicit ok")'),
    ('err("oops")', Result(STRING, STRING), Err("oops"), 'err("oops")'),
    ("ok", Result(None, STRING), Ok(None), "ok"),
    ("err", Result(None, None), Err(None), "err"),
    ("ok(none)", Result(Option(U8), None), Ok(None), "ok(none)"),
    ("  [ // a comment\n 1 ]  ", List(U8), [1], "[1]"),
])
def test_parse_and_canonical_print(text, t, value, canonical):
    got = parse(text, t)
    assert norm(got) == norm(value)
    assert to_wave(got, t) == canonical
    assert norm(parse(canonical, t)) == norm(value)


def test_multiline_strings():
    text = '"""\n    Indentation determined\n      by ending delimiter\n  """'
    assert parse(text, STRING) == "  Indentation determined\n    by ending delimiter"
    text = '"""\n  Must escape carriage return at end of line: \\r\n  Must break up double ' \
           'quote triplets: ""\\""\n  """'
    assert parse(text, STRING) == ("Must escape carriage return at end of line: \r\n"
                                   'Must break up double quote triplets: """"')
    assert parse('"""\nA single line\n"""', STRING) == "A single line"


@pytest.mark.parametrize("text, t, message", [
    ('[1, 2, "x"]', List(U32), "expected u32 at 1:8, got string"),
    ("300", U8, "expected u8 at 1:1, got 300 (out of range 0..255)"),
    ("-1", U32, "expected u32 at 1:1, got -1 (out of range 0..4294967295)"),
    ("1.5", U32, "expected u32 at 1:1, got 1.5 (not an integer)"),
    ("1e39", F32, "expected f32 at 1:1, got 1e39 (out of range for f32)"),
    ("1e400", F32, "expected f32 at 1:1, got 1e400 (out of range for f32: magnitude up to "
     "3.4028234663852886e+38, or inf)"),
    ("1e400", F64, "expected f64 at 1:1, got 1e400 (out of range for f64: magnitude up to "
     "1.7976931348623157e+308, or inf)"),
    ("-1e400", F64, "expected f64 at 1:1, got -1e400 (out of range for f64: magnitude up to "
     "1.7976931348623157e+308, or inf)"),
    ('{sku: "a"}', ITEM, "record item is missing field qty at 1:10"),
    ('{sku: 5}', ITEM, "expected string at 1:7, got 5"),
    ('{sku: "a", sku: "b"}', ITEM, "field sku given twice at 1:12"),
    ("{colour: 1}", ITEM, "expected a field of record item (sku, qty, price-cents, note) at 1:2,"
     " got colour"),
    ("[1 2]", List(U8), "expected ',' or ']' at 1:4, got 2"),
    ("[1,\n  x]", List(U8), "expected u8 at 2:3, got x"),
    ("(1)", Tuple((U8, STRING)), "expected ',' (tuple<u8, string> has 2 values) at 1:3, got ')'"),
    ("(1, \"a\", 2)", Tuple((U8, STRING)), "expected ')' (tuple<u8, string> has 2 values) at "
     "1:10, got 2"),
    ("blue", STATUS, "expected enum status at 1:1, got blue (cases: %ok, not-found)"),
    ("circle", SHAPE, "expected '(' after circle at 1:7, got end of input"),
    ("empty(1)", SHAPE, "expected no payload for empty at 1:6, got '('"),
    ("{read, run}", PERMS, "expected a flag of flags perms (read, write, exec) at 1:8, got run"),
    ("5", Option(Option(U8)), "expected option<option<u8>> at 1:1, got 5 (write none or "
     "some(...))"),
    ('"x"', Option(U8), "expected option<u8> at 1:1, got string"),
    ("5", Result(None, U8), "expected result<_, u8> at 1:1, got 5 (write ok(...) or err(...))"),
    ("truth", BOOL, "expected bool at 1:1, got truth"),
    ("5 6", U8, "unexpected 6 after the value at 1:3"),
    ('"abc', STRING, "unterminated string at 1:1"),
    ("'ab'", CHAR, "a char holds exactly one character, got 2 at 1:1"),
    (r'"\q"', STRING, "unknown escape '\\q' at 1:2"),
    (r'"\u{D800}"', STRING, "\\u{D800} is not a Unicode scalar value at 1:2"),
    ("Foo-bar", STATUS, "invalid label 'Foo-bar' (labels are kebab-case) at 1:1"),
    ("", U8, "expected u8 at 1:1, got end of input"),
])
def test_errors_name_the_type_and_position(text, t, message):
    with pytest.raises(WaveError) as e:
        parse(text, t)
    assert str(e.value) == message


def test_to_wave_rejects_values_of_another_type():
    with pytest.raises(LowerError, match="qty: expected u32, got str"):
        to_wave({"sku": "a", "qty": "2", "price-cents": 1, "note": None}, ITEM)


@settings(max_examples=300, deadline=None)
@given(typed_values())
def test_print_parse_round_trip(tv):
    t, v = tv
    text = to_wave(v, t)
    assert norm(parse(text, t)) == norm(v)
    assert to_wave(parse(text, t), t) == text  # canonical: printing is a fixed point


@settings(max_examples=300, deadline=None)
@given(typed_values())
def test_json_round_trip(tv):
    t, v = tv
    obj = to_json(v, t)
    assert norm(from_json(json.loads(json.dumps(obj)), t)) == norm(v)


def test_json_forms():
    assert to_json({"sku": "a", "qty": 2, "price-cents": 2**64 - 1, "note": None}, ITEM) == {
        "sku": "a", "qty": 2, "price-cents": 2**64 - 1, "note": None}
    assert to_json(("circle", 1.5), SHAPE) == {"circle": 1.5}
    assert to_json(("none", None), SHAPE) == {"none": None}
    assert to_json(frozenset({"exec", "read"}), PERMS) == ["read", "exec"]
    assert to_json(Some(None), Option(Option(U8))) == {"some": None}
    assert to_json(Err("x"), Result(U8, STRING)) == {"err": "x"}
    assert to_json(math.nan, F64) == "nan" and to_json(-math.inf, F32) == "-inf"
    with pytest.raises(ValueError, match="missing field 'qty'"):
        from_json({"sku": "a"}, ITEM)
    with pytest.raises(ValueError, match="expected JSON for result<u8, string>"):
        from_json({"maybe": 1}, Result(U8, STRING))


# -- function calls ----------------------------------------------------------------------

WIT = parse_wit("""
package golemish:cart@0.1.0;
interface admin { reset: func(hard: bool); }
world cart {
  record item { sku: string, qty: u32, price-cents: u64 }
  export add-item: func(item: item) -> u32;
  export items: func() -> list<item>;
  export checkout: func(coupon: option<string>, note: option<string>) -> result<u64, string>;
  export admin;
}
""")


def test_parse_call():
    assert parse_call('add-item({sku: "a", qty: 2, price-cents: 150})', WIT) == (
        "add-item", [{"sku": "a", "qty": 2, "price-cents": 150}])
    assert parse_call("items()", WIT) == ("items", [])
    assert parse_call("  items  ", WIT) == ("items", [])
    assert parse_call('checkout("HALF")', WIT) == ("checkout", ["HALF", None])
    assert parse_call("checkout", WIT) == ("checkout", [None, None])
    assert parse_call("checkout(none, some(\"n\"),)", WIT) == ("checkout", [None, "n"])
    assert parse_call("reset(true)", WIT) == ("golemish:cart/admin.{reset}", [True])
    assert parse_call("admin.{reset}(false)", WIT)[1] == [False]
    assert parse_call("items()", dict(WIT.functions)) == ("items", [])


@pytest.mark.parametrize("text, message", [
    ("nope(1)", "function 'nope' is not exported; exported: add-item, checkout, "
     "golemish:cart/admin.{reset}, items"),
    ("add-item()", "add-item(item: item) is missing argument item at 1:10"),
    ('add-item({sku: "a", qty: 2, price-cents: 1}, 5)',
     "expected ')' (add-item takes 1 argument) at 1:46, got 5"),
    ('add-item({sku: "a", qty: -2, price-cents: 1})',
     "expected u32 at 1:26, got -2 (out of range 0..4294967295)"),
    ("items() x", "unexpected x after the value at 1:9"),
    ("items(", "expected ')' (items takes 0 arguments) at 1:7, got end of input"),
])
def test_parse_call_errors(text, message):
    with pytest.raises(WaveError) as e:
        parse_call(text, WIT)
    assert str(e.value) == message


def test_parse_args_one_string_per_parameter():
    checkout = WIT.functions["checkout"]
    assert parse_args(checkout, ['"HALF"']) == ["HALF", None]
    assert parse_args(checkout, []) == [None, None]
    with pytest.raises(WaveError, match=r"argument 2 \(note\): expected option<string> at 1:1,"
                                        r" got 5"):
        parse_args(checkout, ["none", "5"])
    with pytest.raises(WaveError, match="checkout takes 2 arguments, got 3"):
        parse_args(checkout, ["none", "none", "none"])
    with pytest.raises(WaveError, match="is missing argument item"):
        parse_args(WIT.functions["add-item"], [])


def test_format_call_and_result():
    add = WIT.functions["add-item"]
    item = {"sku": "a\"b", "qty": 2, "price-cents": 150}
    assert format_call(add, [item]) == 'add-item({sku: "a\\"b", qty: 2, price-cents: 150})'
    assert parse_call(format_call(add, [item]), WIT) == ("add-item", [item])
    assert format_result(add, 3) == "3"
    assert format_result(WIT.functions["golemish:cart/admin.{reset}"], None) == "()"
