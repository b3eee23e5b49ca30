"""Numeric wasm values: parse CLI arguments by an export's signature, print results."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from golemish.oplog import TypedValue

from ..errors import ArgumentError

if TYPE_CHECKING:  # the engine (wasmtime) is not for CLI commands that only print values
    from ..engine import FuncSig

_INT_BITS = {"i32": 32, "i64": 64}


def _parse_int(text: str, bits: int) -> int:
    try:
        v = int(text.replace("_", ""), 0)
    except ValueError:
        raise ValueError("not an integer") from None
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    # A 0x/0o/0b literal is a bit pattern (wasm integers are sign-agnostic): up to
    # 2**bits - 1, read as signed. A decimal is a signed number and never wraps.
    pattern = text.lstrip("+-")[:2].lower() in ("0x", "0o", "0b") and not text.startswith("-")
    if pattern and v <= (1 << bits) - 1:
        return v - (1 << bits) if v > hi else v
    if not lo <= v <= hi:
        raise ValueError(f"out of range for i{bits}: {lo}..{hi}, or a bit pattern "
                         f"0x0..{(1 << bits) - 1:#x}")
    return v


_FLOAT_MAX = {"f32": 3.4028234663852886e38, "f64": 1.7976931348623157e308}


def _parse_float(text: str, ty: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if ty == "f32" and math.isfinite(v):
        try:  # rounds to nearest like a C cast; OverflowError when that is infinite
            v = struct.unpack("<f", struct.pack("<f", v))[0]
        except OverflowError:
            v = math.inf
    if math.isinf(v) and "inf" not in text.lower():
        # Only an explicit inf is infinite: a finite literal too large never rounds to it.
        raise ValueError(f"out of range for {ty}: magnitude up to {_FLOAT_MAX[ty]!r}, "
                         "or inf/-inf")
    return v


def describe_params(name: str, sig: FuncSig) -> str:
    return f"{name}({', '.join(sig.params)})"


def parse_args(name: str, sig: FuncSig, raw: Sequence[str]) -> list[TypedValue]:
    """CLI strings -> typed values, or an ArgumentError that names what was expected."""
    if len(raw) != len(sig.params):
        raise ArgumentError(f"{describe_params(name, sig)} takes {len(sig.params)} "
                            f"argument{'s' if len(sig.params) != 1 else ''}, got {len(raw)}")
    out: list[TypedValue] = []
    for i, (ty, text) in enumerate(zip(sig.params, raw), 1):
        try:
            if ty in _INT_BITS:
                out.append((ty, _parse_int(text, _INT_BITS[ty])))
            elif ty in ("f32", "f64"):
                out.append((ty, _parse_float(text, ty)))
            else:
                raise ArgumentError(f"{name}: parameter {i} has type {ty}, which cannot be "
                                    "passed from the command line")
        except ValueError as e:
            raise ArgumentError(f"{describe_params(name, sig)}: argument {i} {text!r} is not "
                                f"a valid {ty} ({e})") from None
    return out


def typed(types: Sequence[str], values: Sequence[int | float]) -> list[TypedValue]:
    return [(t, v) for t, v in zip(types, values)]


def _bits(v: TypedValue) -> tuple[str, int | bytes | str]:
    t, x = v
    if t == "wave":  # canonical text: equal text, equal value
        return t, str(x)
    if t == "f32":
        return t, struct.pack("<f", x)
    if t == "f64":
        return t, struct.pack("<d", x)
    return t, int(x)


def same_values(a: Sequence[TypedValue], b: Sequence[TypedValue]) -> bool:
    """Bitwise equality (so NaN equals the same NaN)."""
    return len(a) == len(b) and all(_bits(x) == _bits(y) for x, y in zip(a, b))


def format_value(v: TypedValue) -> str:
    t, x = v
    if t == "wave":
        return str(x)
    if t in ("f32", "f64"):
        return repr(float(x))
    return str(int(x))


def format_results(values: Sequence[TypedValue]) -> str:
    if not values:
        return "()"
    return ", ".join(format_value(v) for v in values)


#: How JSON, which has no NaN or infinity, carries the floats it cannot.
NON_FINITE = ("nan", "inf", "-inf")


def float_json(v: float) -> float | str:
    """A float for JSON: itself, or ``"nan"``, ``"inf"`` or ``"-inf"``."""
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def typed_json(values: Sequence[TypedValue]) -> list[dict[str, object]]:
    """Core results as JSON objects ``{"type", "value"}``, floats as :func:`float_json`."""
    return [{"type": ty, "value": float_json(v) if isinstance(v, float) else v}
            for ty, v in values]


def from_typed_json(items: Sequence[dict[str, object]]) -> list[TypedValue]:
    """The inverse of :func:`typed_json`."""
    out: list[TypedValue] = []
    for item in items:
        ty, v = str(item["type"]), item["value"]
        if ty in ("f32", "f64") and v in NON_FINITE:
            v = float(str(v))
        out.append((ty, v))  # type: ignore[arg-type]
    return out

