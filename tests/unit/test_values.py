import math

import pytest

from golemish.runtime.engine import FuncSig
from golemish.runtime.errors import ArgumentError
from golemish.runtime.typed.values import format_results, parse_args, same_values

SIG = FuncSig(("i32", "i64", "f32", "f64"), ("i64",))


def test_parses_each_numeric_type():
    assert parse_args("f", SIG, ["-7", "0x10", "1.5", "2e3"]) == [
        ("i32", -7), ("i64", 16), ("f32", 1.5), ("f64", 2000.0)]


def test_f32_is_rounded_to_single_precision():
    (_, v), = parse_args("f", FuncSig(("f32",), ()), ["0.1"])
    assert v != 0.1 and abs(v - 0.1) < 1e-8


@pytest.mark.parametrize("args, msg", [
    (["1"], "takes 4 arguments, got 1"),
    (["x", "1", "1", "1"], "argument 1 'x' is not a valid i32"),
    (["1", "99999999999999999999", "1", "1"], "out of range for i64"),
    (["1", "1", "abc", "1"], "argument 3 'abc' is not a valid f32"),
])
def test_bad_arguments_name_position_and_type(args, msg):
    with pytest.raises(ArgumentError, match=msg):
        parse_args("f", SIG, args)


def test_same_values_is_bitwise():
    assert same_values([("f64", math.nan)], [("f64", math.nan)])
    assert not same_values([("f64", 0.0)], [("f64", -0.0)])
    assert format_results([("i64", 3), ("f64", 0.5)]) == "3, 0.5"


def test_hex_bit_patterns_wrap_to_signed():
    assert parse_args("f", FuncSig(("i32",), ()), ["0xFFFFFFFF"]) == [("i32", -1)]
    assert parse_args("f", FuncSig(("i64",), ()), ["0x8000000000000000"]) == [("i64", -(1 << 63))]


@pytest.mark.parametrize("ty, text, shown", [
    ("i64", "9223372036854775808", "-9223372036854775808..9223372036854775807"),
    ("i64", "-9223372036854775809", "-9223372036854775808..9223372036854775807"),
    ("i32", "2147483648", "-2147483648..2147483647"),
    ("i32", "4294967295", "-2147483648..2147483647"),
    ("i32", "0x100000000", "0xffffffff"),
    ("f64", "1e400", "1.7976931348623157e+308"),
    ("f64", "-1e400", "1.7976931348623157e+308"),
    ("f32", "1e39", "3.4028234663852886e+38"),
    ("f32", "3.5e38", "3.4028234663852886e+38"),
])
def test_numbers_out_of_range_are_refused_with_the_range(ty, text, shown):
    with pytest.raises(ArgumentError, match="out of range") as e:
        parse_args("f", FuncSig((ty,), ()), [text])
    assert shown in str(e.value)


def test_infinities_and_nan_spelled_out_are_accepted():
    assert parse_args("f", FuncSig(("f64", "f32"), ()), ["inf", "-inf"]) == [
        ("f64", math.inf), ("f32", -math.inf)]
