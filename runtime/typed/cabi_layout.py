"""Canonical ABI layout, function signatures and host-value validation.

The pure half of ``cabi.py`` (which re-exports what callers need): nothing here
touches guest memory. Besides alignment, size and flattening it has what deploy
needs: ``flat_signature``, ``check_signature`` and ``check_exports``. Layout functions
follow ``definitions.py`` of the component-model spec: ``despecialize`` turns
tuples into records and enums, options and results into variants, and the other
functions work on the despecialized shape. They are cached, as types are frozen
(hashable) dataclasses.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from .wit_types import (
    INT_RANGES, Enum, Err, Flags, FuncDecl, List, Ok, Option, Prim, Record, Result, Some, Tuple,
    Type, Variant, describe_type, needs_some_wrapper,
)


class CabiError(Exception):
    """Base class of Canonical ABI errors."""


class LowerError(CabiError, ValueError):
    """A host value does not match its type; ``path`` says where inside the value."""

    def __init__(self, msg: str, path: str = "") -> None:
        super().__init__(f"{path}: {msg}" if path else msg)
        self.msg, self.path = msg, path


class LiftError(CabiError):
    """The guest produced an invalid value or layout (a trap in the spec)."""


# -- layout ------------------------------------------------------------------------------

def despecialize(t: Type) -> Type:
    """Tuples become records, enums/options/results become variants (as in the spec)."""
    match t:
        case Tuple(items):
            return Record("", tuple((str(i), it) for i, it in enumerate(items)))
        case Enum(name, cases):
            return Variant(name, tuple((c, None) for c in cases))
        case Option(inner):
            return Variant("", (("none", None), ("some", inner)))
        case Result(ok, err):
            return Variant("", (("ok", ok), ("error", err)))
    return t


PRIM_SIZE = {"bool": 1, "u8": 1, "s8": 1, "u16": 2, "s16": 2, "u32": 4, "s32": 4, "u64": 8,
             "s64": 8, "f32": 4, "f64": 8, "char": 4, "string": 8}
PRIM_ALIGN = {**PRIM_SIZE, "string": 4}
PRIM_FLAT = {"u64": "i64", "s64": "i64", "f32": "f32", "f64": "f64"}
VARIANT_LIKE = (Variant, Enum, Option, Result)


def discriminant_size(n_cases: int) -> int:
    """Bytes of a variant's discriminant: u8 up to 256 cases, u16 up to 65536, else u32."""
    return 1 if n_cases <= 1 << 8 else 2 if n_cases <= 1 << 16 else 4


def flags_size(n: int) -> int:
    return 1 if n <= 8 else 2 if n <= 16 else 4


@lru_cache(maxsize=4096)
def payloads(t: Type) -> tuple[Type | None, ...]:
    """Payload types of the cases of a variant-like type, in case order."""
    v = despecialize(t)
    assert isinstance(v, Variant), t
    return tuple(p for _, p in v.cases)


@lru_cache(maxsize=4096)
def field_types(t: Type) -> tuple[Type, ...]:
    """Field types of a record or tuple, in order."""
    if isinstance(t, Tuple):
        return t.items
    assert isinstance(t, Record), t
    return tuple(ft for _, ft in t.fields)


def _max_case_alignment(t: Type) -> int:
    return max([1] + [alignment(p) for p in payloads(t) if p is not None])


@lru_cache(maxsize=4096)
def alignment(t: Type) -> int:
    match t:
        case Prim(name):
            return PRIM_ALIGN[name]
        case List():
            return 4
        case Record() | Tuple():
            return max([1] + [alignment(ft) for ft in field_types(t)])
        case Variant() | Enum() | Option() | Result():
            return max(discriminant_size(len(payloads(t))), _max_case_alignment(t))
        case Flags(_, flags):
            return flags_size(len(flags))
    raise TypeError(f"not a WIT type: {t!r}")


def align_to(ptr: int, align: int) -> int:
    return -(-ptr // align) * align


@lru_cache(maxsize=4096)
def size(t: Type) -> int:
    match t:
        case Prim(name):
            return PRIM_SIZE[name]
        case List():
            return 8
        case Record() | Tuple():
            s = 0
            for ft in field_types(t):
                s = align_to(s, alignment(ft)) + size(ft)
            return align_to(s, alignment(t))
        case Variant() | Enum() | Option() | Result():
            s = payload_offset(t) + max([0] + [size(p) for p in payloads(t) if p is not None])
            return align_to(s, alignment(t))
        case Flags(_, flags):
            return flags_size(len(flags))
    raise TypeError(f"not a WIT type: {t!r}")


@lru_cache(maxsize=4096)
def field_offsets(t: Type) -> tuple[int, ...]:
    """Byte offset of each field of a record or tuple."""
    offs, s = [], 0
    for ft in field_types(t):
        s = align_to(s, alignment(ft))
        offs.append(s)
        s += size(ft)
    return tuple(offs)


def payload_offset(t: Type) -> int:
    """Where a variant's payload starts: after the discriminant, at the payloads' alignment."""
    return align_to(discriminant_size(len(payloads(t))), _max_case_alignment(t))


def _join(a: str, b: str) -> str:
    if a == b:
        return a
    if {a, b} == {"i32", "f32"}:
        return "i32"
    return "i64"


@lru_cache(maxsize=4096)
def flatten(t: Type) -> tuple[str, ...]:
    """Core value types a value of ``t`` flattens to (spec: flatten_type)."""
    match t:
        case Prim("string") | List():
            return ("i32", "i32")
        case Prim(name):
            return (PRIM_FLAT.get(name, "i32"),)
        case Record() | Tuple():
            return tuple(x for ft in field_types(t) for x in flatten(ft))
        case Variant() | Enum() | Option() | Result():
            flat: list[str] = []
            for p in payloads(t):
                for i, ft in enumerate(flatten(p) if p is not None else ()):
                    if i < len(flat):
                        flat[i] = _join(flat[i], ft)
                    else:
                        flat.append(ft)
            return ("i32", *flat)
        case Flags():
            return ("i32",)
    raise TypeError(f"not a WIT type: {t!r}")


def flatten_type(t: Type) -> list[str]:
    return list(flatten(t))


# -- functions -------------------------------------------------------------------------

MAX_FLAT_PARAMS = 16
MAX_FLAT_RESULTS = 1


def flat_signature(func: FuncDecl) -> tuple[list[str], list[str]]:
    """The core signature of the export implementing ``func`` (spec: flatten_functype 'lift').

    More than 16 flat params become one i32 pointer to the params stored as a tuple;
    more than one flat result becomes one i32 pointer to the stored result.
    """
    params = [x for t in func.param_types for x in flatten(t)]
    if len(params) > MAX_FLAT_PARAMS:
        params = ["i32"]
    results = list(flatten(func.result)) if func.result is not None else []
    if len(results) > MAX_FLAT_RESULTS:
        results = ["i32"]
    return params, results


def check_signature(func: FuncDecl, params: Sequence[str], results: Sequence[str]) -> str | None:
    """None if a core export of this signature implements ``func``, else a one-line reason."""
    want_p, want_r = flat_signature(func)
    if list(params) == want_p and list(results) == want_r:
        return None
    return (f"export {func.core_name!r} has core type ({', '.join(params)}) -> "
            f"({', '.join(results)}), but `{func}` needs ({', '.join(want_p)}) -> "
            f"({', '.join(want_r)})")


def post_return_name(func: FuncDecl) -> str:
    """The optional export the runtime calls with the core results once they are lifted."""
    return f"cabi_post_{func.core_name}"


def needs_realloc(func: FuncDecl) -> bool:
    """True if calling ``func`` allocates in the guest: strings, lists or spilled params."""
    def has_pointers(t: Type | None) -> bool:
        match t:
            case None | Enum() | Flags():
                return False
            case Prim(name):
                return name == "string"
            case List():
                return True
            case Option(inner):
                return has_pointers(inner)
        return any(has_pointers(x) for x in (field_types(t) if isinstance(t, (Record, Tuple))
                                              else payloads(t)))
    flat = sum(len(flatten(t)) for t in func.param_types)
    return flat > MAX_FLAT_PARAMS or any(has_pointers(t) for t in func.param_types)


def _core_sig(sig: Any) -> tuple[list[str], list[str]]:
    # engine.FuncSig has .params/.results; a (params, results) pair works too.
    if hasattr(sig, "params"):
        return list(sig.params), list(sig.results)
    return list(sig[0]), list(sig[1])


def check_exports(functions: Iterable[FuncDecl], exports: Mapping[str, Any]) -> list[str]:
    """Everything wrong between declared functions and a module's function exports.

    ``exports`` maps export name -> core signature: ``Engine.func_exports(module)``
    (FuncSig values) or (param types, result types) pairs. Checks each function's
    export and signature, its ``cabi_post_*`` export if present (it takes the core
    results and returns nothing), and ``cabi_realloc`` when a function needs it to
    receive its arguments. An empty list means the module implements the functions.
    """
    problems = []
    needs_alloc = []
    for f in functions:
        if f.core_name not in exports:
            problems.append(f"`{f}` has no core export named {f.core_name!r}")
            continue
        why = check_signature(f, *_core_sig(exports[f.core_name]))
        if why:
            problems.append(why)
        post = post_return_name(f)
        if post in exports:
            got, want = _core_sig(exports[post]), (flat_signature(f)[1], [])
            if got != want:
                problems.append(f"{post} has core type ({', '.join(got[0])}) -> "
                                f"({', '.join(got[1])}), expected ({', '.join(want[0])}) -> ()")
        if needs_realloc(f):
            needs_alloc.append(f.name)
    if needs_alloc:
        realloc = exports.get("cabi_realloc")
        if realloc is None or _core_sig(realloc) != (["i32"] * 4, ["i32"]):
            what = "is missing" if realloc is None else "has the wrong type"
            problems.append(f"cabi_realloc: (i32, i32, i32, i32) -> i32 {what}; "
                            f"{', '.join(needs_alloc)} need it to receive their arguments")
    return problems


# -- values <-> cases, bits --------------------------------------------------------------

def split_case(v: Any, t: Type) -> tuple[int, Any]:
    """(case index, payload) of a validated variant, enum, option or result value."""
    match t:
        case Variant():
            return t.case_index(v[0]), v[1]
        case Enum(_, cases):
            return cases.index(v), None
        case Option():
            if v is None:
                return 0, None
            return 1, v.value if isinstance(v, Some) else v
        case Result():
            return (0 if isinstance(v, Ok) else 1), v.value
    raise AssertionError(t)


def make_case(t: Type, index: int, payload: Any) -> Any:
    """The Python value of case ``index`` of a variant-like type (inverse of split_case)."""
    match t:
        case Variant(_, cases):
            return (cases[index][0], payload)
        case Enum(_, cases):
            return cases[index]
        case Option():
            if index == 0:
                return None
            return Some(payload) if needs_some_wrapper(t) else payload
        case Result():
            return Ok(payload) if index == 0 else Err(payload)
    raise AssertionError(t)


def pack_flags(v: Any, flags: tuple[str, ...]) -> int:
    names = set(v)
    return sum(1 << i for i, f in enumerate(flags) if f in names)


def unpack_flags(i: int, flags: tuple[str, ...]) -> frozenset[str]:
    return frozenset(f for b, f in enumerate(flags) if i >> b & 1)


F32 = struct.Struct("<f")
F64 = struct.Struct("<d")


def round_f32(v: float) -> float:
    """The nearest single-precision value (OverflowError if finite and out of range)."""
    return F32.unpack(F32.pack(v))[0]


def f32_bits(v: float) -> int:
    # Packing Python's NaN gives the canonical 0x7fc00000, as the spec's canonicalize32.
    return int.from_bytes(F32.pack(math.nan if math.isnan(v) else v), "little")


def f64_bits(v: float) -> int:
    return int.from_bytes(F64.pack(math.nan if math.isnan(v) else v), "little")


def char_of(i: int) -> str:
    if i >= 0x110000 or 0xD800 <= i <= 0xDFFF:
        raise LiftError(f"{i:#x} is not a Unicode scalar value (char)")
    return chr(i)


def wrap_int(i: int, name: str) -> int:
    """The low bits of an unsigned core int read as integer type ``name`` (spec: lift_flat_*)."""
    bits = int(name[1:])
    i &= (1 << bits) - 1
    if name[0] == "s" and i >= 1 << (bits - 1):
        i -= 1 << bits
    return i


# -- validation ------------------------------------------------------------------------

def _got(v: Any) -> str:
    r = repr(v)
    return f"{type(v).__name__} {r if len(r) <= 40 else r[:37] + '...'}"


def _fail(t: Type, v: Any, path: str, why: str = "") -> LowerError:
    return LowerError(f"expected {describe_type(t)}, got {_got(v)}{why}", path)


def _sub(path: str, part: str) -> str:
    return f"{path}{part}" if part.startswith("[") or not path else f"{path}.{part}"


def validate(v: Any, t: Type, path: str = "") -> None:
    """Raise LowerError (with the path to the bad part) unless ``v`` is a value of ``t``."""
    match t:
        case Prim("bool"):
            if not isinstance(v, bool):
                raise _fail(t, v, path)
        case Prim("f32" | "f64"):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise _fail(t, v, path)
            if t.name == "f32":
                try:
                    round_f32(v)
                except OverflowError:
                    raise _fail(t, v, path, " (out of range for f32)") from None
        case Prim("char"):
            if not isinstance(v, str) or len(v) != 1 or 0xD800 <= ord(v) <= 0xDFFF:
                raise _fail(t, v, path, " (a char is one Unicode scalar value)")
        case Prim("string"):
            if not isinstance(v, str):
                raise _fail(t, v, path)
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise _fail(t, v, path, " (contains a lone surrogate)") from None
        case Prim(name):
            if not isinstance(v, int) or isinstance(v, bool):
                raise _fail(t, v, path)
            lo, hi = INT_RANGES[name]
            if not lo <= v <= hi:
                raise _fail(t, v, path, f" (out of range {lo}..{hi})")
        case List(elem):
            if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Sequence):
                raise _fail(t, v, path)
            for i, e in enumerate(v):
                validate(e, elem, _sub(path, f"[{i}]"))
        case Tuple(items):
            if not isinstance(v, (tuple, list)) or len(v) != len(items):
                raise _fail(t, v, path, f" (a tuple of {len(items)})")
            for i, (e, it) in enumerate(zip(v, items)):
                validate(e, it, _sub(path, f"[{i}]"))
        case Record(_, fields):
            if not isinstance(v, Mapping):
                raise _fail(t, v, path)
            names = [n for n, _ in fields]
            for k in v:
                if k not in names:
                    raise LowerError(f"record {t.name} has no field {k!r}", path)
            for n, ft in fields:
                if n not in v:
                    raise LowerError(f"record {t.name} is missing field {n!r}", path)
                validate(v[n], ft, _sub(path, n))
        case Flags(_, flags):
            if isinstance(v, (str, Mapping)) or not isinstance(
                    v, (set, frozenset, list, tuple)):
                raise _fail(t, v, path, " (a set of flag names)")
            for f in v:
                if f not in flags:
                    raise LowerError(f"flags {t.name} has no flag {f!r}", path)
        case Enum(_, cases):
            if not isinstance(v, str) or v not in cases:
                raise _fail(t, v, path, f" (one of {', '.join(cases)})")
        case Variant(_, cases):
            if not (isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)):
                raise _fail(t, v, path, " (a (case, payload) pair)")
            i = t.case_index(v[0])
            if i < 0:
                raise LowerError(f"variant {t.name} has no case {v[0]!r}", path)
            _payload(v[1], cases[i][1], _sub(path, v[0]), f"case {v[0]}")
        case Option(inner):
            if isinstance(v, Some):
                validate(v.value, inner, _sub(path, "some"))
            elif v is not None:
                if needs_some_wrapper(t):
                    raise _fail(t, v, path, " (write some(x) of a nested option as Some(x))")
                validate(v, inner, path)
        case Result(ok, err):
            if isinstance(v, Ok):
                _payload(v.value, ok, _sub(path, "ok"), "ok")
            elif isinstance(v, Err):
                _payload(v.value, err, _sub(path, "err"), "err")
            else:
                raise _fail(t, v, path, " (Ok(...) or Err(...))")
        case _:
            raise TypeError(f"not a WIT type: {t!r}")


def _payload(v: Any, t: Type | None, path: str, what: str) -> None:
    if t is None:
        if v is not None:
            raise LowerError(f"{what} has no payload, got {_got(v)}", path)
    else:
        validate(v, t, path)
