"""WAVE (WebAssembly Value Encoding) text for typed values: parse, print, function calls.

    parse('{sku: "apple", qty: 2, price-cents: 150}', item_type)   # -> dict
    to_wave(value, item_type)                                       # -> canonical text
    parse_call('add-item({sku: "a", qty: 2, price-cents: 5})', wit) # -> (name, [args])
    parse_args(func, ['{sku: "a", qty: 2, price-cents: 5}'])       # one string per param

Parsing is type-directed, as in wasm-tools' ``wasm-wave``: ``none``/``some(x)`` and
``ok``/``err`` forms, flat options and results (a bare ``5`` for ``option<u32>`` or
``result<u32, E>``, unless the payload is itself an option or result), records
with omitted ``option`` fields (``{:}`` when all are omitted), flags ``{a, b}``,
enum and variant cases as labels (``%``-escaped when they are WAVE keywords),
floats with ``nan``/``inf``/``-inf``. Errors are ``WaveError`` and name the
expected type and the position: ``expected u32 at 1:7, got string``.

Printing is canonical: always the explicit ``some(...)``/``ok(...)`` forms, every
record field, flags in declaration order, the shortest float text that reads back
to the same value. So ``parse(to_wave(v, t), t) == v`` (NaN aside), and two
values are equal exactly when their WAVE texts are. Python values: see wit_types.
JSON for ``--json`` output is in ``wave_json`` (re-exported here).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .cabi_layout import round_f32, validate
from .wave_json import from_json, to_json
from .wave_lex import Lexer, Tok, WaveError, label, quote_char, quote_string
from .wit_types import (
    INT_RANGES, Enum, Err, Flags, FuncDecl, List, Ok, Option, Prim, Record, Result, Some, Tuple,
    Type, Variant, describe_type, needs_some_wrapper,
)

__all__ = ["WaveError", "parse", "to_wave", "parse_call", "parse_args", "format_call",
           "format_result", "to_json", "from_json"]

_FLOAT_MAX = {"f32": 3.4028234663852886e38, "f64": 1.7976931348623157e308}
_INT = re.compile(r"-?[0-9]+")


class _Parser:
    """Reads one value of a known type from the lexer's tokens (recursive descent)."""

    def __init__(self, lx: Lexer) -> None:
        self.lx = lx

    def fail(self, t: Type | str, tok: Tok, why: str = "") -> WaveError:
        what = t if isinstance(t, str) else describe_type(t)
        return WaveError(f"expected {what} at {tok.line}:{tok.col}, got {tok.describe()}{why}",
                         tok.line, tok.col)

    def expect(self, kind: str, what: str = "") -> Tok:
        tok = self.lx.next()
        if tok.kind != kind:
            raise self.fail(f"'{kind}'{what}", tok)
        return tok

    def keyword(self, *words: str) -> str | None:
        tok = self.lx.peek()
        if tok.kind == "label" and not tok.escaped and tok.value in words:
            return tok.value
        return None

    def more(self, close: str) -> bool:
        """After an element: True if another may follow (a comma was eaten), False at close."""
        tok = self.lx.peek()
        if tok.kind == ",":
            self.lx.next()
            return self.lx.peek().kind != close
        if tok.kind == close:
            return False
        raise self.fail(f"',' or '{close}'", tok)

    def value(self, t: Type) -> Any:
        tok = self.lx.peek()
        match t:
            case Prim("bool"):
                if self.keyword("true", "false"):
                    return self.lx.next().value == "true"
                raise self.fail(t, tok)
            case Prim("f32" | "f64"):
                if tok.kind == "num" or self.keyword("nan", "inf"):
                    self.lx.next()
                    v = float(tok.value)
                    if math.isinf(v) and "inf" not in tok.value:  # a finite literal, too large
                        raise self.fail(t, tok, f" (out of range for {t.name}: magnitude up "
                                                f"to {_FLOAT_MAX[t.name]!r}, or inf)")
                    if t.name == "f32":
                        try:
                            v = round_f32(v)
                        except OverflowError:
                            raise self.fail(t, tok, " (out of range for f32)") from None
                    return v
                raise self.fail(t, tok)
            case Prim("char") | Prim("string"):
                if tok.kind != ("char" if t.name == "char" else "str"):
                    raise self.fail(t, tok)
                return self.lx.next().value
            case Prim(name):
                if tok.kind != "num":
                    raise self.fail(t, tok)
                if not _INT.fullmatch(tok.value):
                    raise self.fail(t, tok, " (not an integer)")
                lo, hi = INT_RANGES[name]
                if not lo <= int(tok.value) <= hi:
                    raise self.fail(t, tok, f" (out of range {lo}..{hi})")
                return int(self.lx.next().value)
            case List(elem):
                self.open("[", t)
                out = []
                while self.lx.peek().kind != "]":
                    out.append(self.value(elem))
                    if not self.more("]"):
                        break
                self.lx.next()
                return out
            case Tuple(items):
                return self.tuple(t, items)
            case Record():
                return self.record(t)
            case Flags(_, flags):
                self.open("{", t)
                out = set()
                while self.lx.peek().kind != "}":
                    ftok = self.lx.next()
                    if ftok.kind != "label" or ftok.value not in flags:
                        raise self.fail(f"a flag of {describe_type(t)} ({', '.join(flags)})",
                                        ftok)
                    out.add(ftok.value)
                    if not self.more("}"):
                        break
                self.lx.next()
                return frozenset(out)
            case Enum(_, cases):
                if tok.kind != "label" or tok.value not in cases:
                    raise self.fail(t, tok, f" (cases: {', '.join(map(label, cases))})")
                return self.lx.next().value
            case Variant(_, cases):
                i = t.case_index(tok.value) if tok.kind == "label" else -1
                if i < 0:
                    raise self.fail(t, tok, f" (cases: {', '.join(label(c) for c, _ in cases)})")
                self.lx.next()
                return (tok.value, self.payload(cases[i][1], tok.value))
            case Option(inner):
                if self.keyword("none"):
                    self.lx.next()
                    return None
                if self.keyword("some"):
                    self.lx.next()
                    v = self.payload(inner, "some")
                    return Some(v) if needs_some_wrapper(t) else v
                if isinstance(inner, (Option, Result)):
                    raise self.fail(t, tok, " (write none or some(...))")
                return self.flat(t, inner, tok)
            case Result(ok, err):
                kw = self.keyword("ok", "err")
                if kw:
                    self.lx.next()
                    payload = self.payload(ok if kw == "ok" else err, kw)
                    return Ok(payload) if kw == "ok" else Err(payload)
                if ok is None or isinstance(ok, (Option, Result)):
                    raise self.fail(t, tok, " (write ok(...) or err(...))")
                return Ok(self.flat(t, ok, tok))
        raise TypeError(f"not a WIT type: {t!r}")

    def open(self, kind: str, t: Type) -> None:
        tok = self.lx.next()
        if tok.kind != kind:
            raise self.fail(t, tok)

    def flat(self, outer: Type, inner: Type, tok: Tok) -> Any:
        # A bare payload. If it cannot even start one, name the option/result type.
        try:
            return self.value(inner)
        except WaveError as e:
            if (e.line, e.col) == (tok.line, tok.col) and e.msg.startswith("expected"):
                raise self.fail(outer, tok) from None
            raise

    def payload(self, t: Type | None, case: str) -> Any:
        if t is None:
            if self.lx.peek().kind == "(":
                raise self.fail(f"no payload for {label(case)}", self.lx.peek())
            return None
        self.expect("(", f" after {label(case)}")
        v = self.value(t)
        self.expect(")", f" to close {label(case)}(...)")
        return v

    def tuple(self, t: Type, items: tuple[Type, ...]) -> tuple:
        self.open("(", t)
        out = []
        for i, it in enumerate(items):
            if i:
                self.expect(",", f" ({describe_type(t)} has {len(items)} values)")
            if self.lx.peek().kind == ")":
                raise self.fail(f"{len(items)} values for {describe_type(t)}", self.lx.peek())
            out.append(self.value(it))
        if self.lx.peek().kind == ",":
            self.lx.next()
        self.expect(")", f" ({describe_type(t)} has {len(items)} values)")
        return tuple(out)

    def record(self, t: Record) -> dict[str, Any]:
        self.open("{", t)
        types = dict(t.fields)
        got: dict[str, Any] = {}
        if self.lx.peek().kind == ":":  # `{:}`: every field omitted
            self.lx.next()
        else:
            while self.lx.peek().kind != "}":
                ftok = self.lx.next()
                if ftok.kind != "label":
                    raise self.fail(f"a field of {describe_type(t)}", ftok)
                if ftok.value not in types:
                    raise self.fail(f"a field of {describe_type(t)} "
                                    f"({', '.join(types)})", ftok)
                if ftok.value in got:
                    raise WaveError(f"field {ftok.value} given twice at {ftok.line}:"
                                    f"{ftok.col}", ftok.line, ftok.col)
                self.expect(":", f" after field {ftok.value}")
                got[ftok.value] = self.value(types[ftok.value])
                if not self.more("}"):
                    break
        close = self.expect("}")
        for name, ft in t.fields:
            if name not in got:
                if not isinstance(ft, Option):
                    raise WaveError(f"record {t.name} is missing field {name} at "
                                    f"{close.line}:{close.col}", close.line, close.col)
                got[name] = None
        return {name: got[name] for name, _ in t.fields}

    def end(self) -> None:
        tok = self.lx.next()
        if tok.kind != "eof":
            raise WaveError(f"unexpected {tok.describe()} after the value at "
                            f"{tok.line}:{tok.col}", tok.line, tok.col)


def parse(text: str, t: Type) -> Any:
    """The value of type ``t`` that WAVE ``text`` spells; WaveError if it does not."""
    p = _Parser(Lexer(text))
    v = p.value(t)
    p.end()
    return v


# -- printing --------------------------------------------------------------------------

def _reads_as_f32(text: str, v: float) -> bool:
    try:
        return round_f32(float(text)) == v
    except OverflowError:  # rounded up past the largest f32
        return False


def _float(v: float, t: Type) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if t.name == "f32":
        # The shortest decimal that reads back as the same f32, spelled like repr.
        v = round_f32(v)
        v = float(next(s for p in range(1, 10) if _reads_as_f32(s := f"{v:.{p}g}", v)))
    text = repr(v)
    # WAVE exponents have no leading zeros (1e-05 -> 1e-5)
    return re.sub(r"e([+-]?)0*(\d)", r"e\1\2", text)


def to_wave(value: Any, t: Type) -> str:
    """Canonical WAVE text of ``value`` (a LowerError if it is not a value of ``t``)."""
    validate(value, t)
    return _fmt(value, t)


def _fmt(v: Any, t: Type) -> str:
    match t:
        case Prim("bool"):
            return "true" if v else "false"
        case Prim("f32" | "f64"):
            return _float(float(v), t)
        case Prim("char"):
            return quote_char(v)
        case Prim("string"):
            return quote_string(v)
        case Prim():
            return str(v)
        case List(elem):
            return "[" + ", ".join(_fmt(e, elem) for e in v) + "]"
        case Tuple(items):
            return "(" + ", ".join(_fmt(e, it) for e, it in zip(v, items)) + ")"
        case Record(_, fields):
            if not fields:
                return "{:}"
            return "{" + ", ".join(f"{n}: {_fmt(v[n], ft)}" for n, ft in fields) + "}"
        case Flags(_, flags):
            return "{" + ", ".join(f for f in flags if f in v) + "}"
        case Enum():
            return label(v)
        case Variant(_, cases):
            case, payload = v
            ptype = cases[t.case_index(case)][1]
            return label(case) + (f"({_fmt(payload, ptype)})" if ptype is not None else "")
        case Option(inner):
            if v is None:
                return "none"
            return f"some({_fmt(v.value if isinstance(v, Some) else v, inner)})"
        case Result(ok, err):
            kw, ptype = ("ok", ok) if isinstance(v, Ok) else ("err", err)
            return kw if ptype is None else f"{kw}({_fmt(v.value, ptype)})"
    raise TypeError(f"not a WIT type: {t!r}")


# -- function calls --------------------------------------------------------------------

FuncTable = Mapping[str, FuncDecl] | Any  # a dict of FuncDecl, or a wit.Wit (has .lookup)


def _lookup(funcs: FuncTable, name: str) -> FuncDecl:
    if hasattr(funcs, "lookup"):
        try:
            return funcs.lookup(name)
        except KeyError as e:
            raise WaveError(str(e.args[0])) from None
    if name in funcs:
        return funcs[name]
    raise WaveError(f"function {name!r} is not exported; exported: "
                    f"{', '.join(sorted(funcs)) or 'none'}")


def _complete(func: FuncDecl, args: list[Any], at: str = "") -> list[Any]:
    """Fill omitted trailing option arguments with none (WAVE allows leaving them out)."""
    for name, t in func.params[len(args):]:
        if not isinstance(t, Option):
            params = ", ".join(f"{n}: {pt}" for n, pt in func.params)
            raise WaveError(f"{func.short_name}({params}) is missing argument {name}{at}")
        args.append(None)
    return args


def parse_call(text: str, funcs: FuncTable) -> tuple[str, list[Any]]:
    """``name(arg, ...)`` -> (the function's key in ``funcs``, typed arguments).

    ``funcs`` is a ``Wit`` (short interface names work) or a dict of FuncDecl.
    Omitted trailing ``option`` arguments are none; ``name`` alone calls with none.
    """
    i = text.find("(")
    name = (text if i < 0 else text[:i]).strip()
    func = _lookup(funcs, name)
    if i < 0:
        return func.name, _complete(func, [])
    lx = Lexer(text, i + 1)
    p = _Parser(lx)
    args: list[Any] = []
    while lx.peek().kind != ")":
        if len(args) == len(func.params):
            raise p.fail(f"')' ({func.short_name} takes {len(func.params)} argument"
                         f"{'s' if len(func.params) != 1 else ''})", lx.peek())
        args.append(p.value(func.params[len(args)][1]))
        if not p.more(")"):
            break
    close = p.expect(")")
    p.end()
    return func.name, _complete(func, args, f" at {close.line}:{close.col}")


def parse_args(func: FuncDecl, texts: Sequence[str]) -> list[Any]:
    """One WAVE string per parameter (as CLI arguments); trailing options may be left out."""
    if len(texts) > len(func.params):
        raise WaveError(f"{func.short_name} takes {len(func.params)} argument"
                        f"{'s' if len(func.params) != 1 else ''}, got {len(texts)}")
    args = []
    for i, (text, (name, t)) in enumerate(zip(texts, func.params), 1):
        try:
            args.append(parse(text, t))
        except WaveError as e:
            raise WaveError(f"argument {i} ({name}): {e.msg}", e.line, e.col) from None
    return _complete(func, args)


def format_call(func: FuncDecl, args: Sequence[Any]) -> str:
    """``name(arg, ...)`` in canonical WAVE, e.g. for logs and oplog summaries."""
    return f"{func.name}({', '.join(to_wave(a, t) for a, (_, t) in zip(args, func.params))})"


def format_result(func: FuncDecl, value: Any) -> str:
    """The result as WAVE; ``()`` for a function without one (the WAVE call appendix)."""
    return "()" if func.result is None else to_wave(value, func.result)
