"""Typed values as JSON, for ``--json`` output and scripts (re-exported by wave.py).

=================  ==================================================================
WIT type           JSON
=================  ==================================================================
bool, integers     true/false, numbers (u64/s64 exactly: Python's json keeps big ints)
f32, f64           numbers; ``"nan"``, ``"inf"``, ``"-inf"`` as strings (JSON has none)
char, string       strings
list, tuple        arrays
record             object keyed by field name
enum               the case name
flags              array of the set flag names, in declaration order
variant            ``{"case": payload}``; payload ``null`` for a case without one
option<T>          ``null`` or T's JSON; when T is itself an option, some(x) is
                   ``{"some": x}`` so that ``some(none)`` stays distinct from ``none``
result<T, E>       ``{"ok": value}`` / ``{"err": value}`` (``null`` without a payload)
=================  ==================================================================
"""

from __future__ import annotations

import math
from typing import Any

from .cabi_layout import round_f32, validate
from .values import float_json, NON_FINITE
from .wit_types import (
    Enum, Err, Flags, List, Ok, Option, Prim, Record, Result, Some, Tuple, Type, Variant,
    describe_type, needs_some_wrapper,
)


def to_json(value: Any, t: Type) -> Any:
    """A JSON-serializable form of ``value`` (see the module table)."""
    validate(value, t)
    return _to(value, t)


def _to(v: Any, t: Type) -> Any:
    match t:
        case Prim("f32" | "f64"):
            v = float(v)
            if not math.isfinite(v):
                return float_json(v)
            return round_f32(v) if t.name == "f32" else v
        case Prim():
            return v
        case List(elem):
            return [_to(e, elem) for e in v]
        case Tuple(items):
            return [_to(e, it) for e, it in zip(v, items)]
        case Record(_, fields):
            return {n: _to(v[n], ft) for n, ft in fields}
        case Flags(_, flags):
            return [f for f in flags if f in v]
        case Enum():
            return v
        case Variant(_, cases):
            ptype = cases[t.case_index(v[0])][1]
            return {v[0]: None if ptype is None else _to(v[1], ptype)}
        case Option(inner):
            if v is None:
                return None
            inner_v = v.value if isinstance(v, Some) else v
            return {"some": _to(inner_v, inner)} if needs_some_wrapper(t) else _to(inner_v, inner)
        case Result(ok, err):
            key, ptype = ("ok", ok) if isinstance(v, Ok) else ("err", err)
            return {key: None if ptype is None else _to(v.value, ptype)}
    raise TypeError(f"not a WIT type: {t!r}")


def from_json(obj: Any, t: Type) -> Any:
    """The value that ``to_json`` turned into ``obj``; ValueError if it does not fit ``t``."""
    v = _from(obj, t, "")
    validate(v, t)
    return v


def _bad(obj: Any, t: Type, path: str) -> ValueError:
    where = f"{path}: " if path else ""
    return ValueError(f"{where}expected JSON for {describe_type(t)}, got {obj!r:.60}")


def _from(obj: Any, t: Type, path: str) -> Any:
    match t:
        case Prim("f32" | "f64"):
            if isinstance(obj, str) and obj in NON_FINITE:
                return float(obj)
            if isinstance(obj, (int, float)) and not isinstance(obj, bool):
                return float(obj)
            raise _bad(obj, t, path)
        case Prim():
            return obj
        case List(elem):
            if not isinstance(obj, list):
                raise _bad(obj, t, path)
            return [_from(e, elem, f"{path}[{i}]") for i, e in enumerate(obj)]
        case Tuple(items):
            if not isinstance(obj, list) or len(obj) != len(items):
                raise _bad(obj, t, path)
            return tuple(_from(e, it, f"{path}[{i}]") for i, (e, it) in enumerate(zip(obj, items)))
        case Record(_, fields):
            if not isinstance(obj, dict):
                raise _bad(obj, t, path)
            extra = set(obj) - {n for n, _ in fields}
            if extra:
                raise ValueError(f"{path or 'record'}: unknown field {sorted(extra)[0]!r}")
            return {n: _from(obj[n], ft, f"{path}.{n}" if path else n) if n in obj else
                    (None if isinstance(ft, Option) else _missing(n, path))
                    for n, ft in fields}
        case Flags():
            if not isinstance(obj, list):
                raise _bad(obj, t, path)
            return frozenset(obj)
        case Enum():
            return obj
        case Variant(_, cases):
            if not isinstance(obj, dict) or len(obj) != 1:
                raise _bad(obj, t, path)
            (case, payload), = obj.items()
            i = t.case_index(case)
            if i < 0:
                raise ValueError(f"{path or 'variant'}: {t.name} has no case {case!r}")
            ptype = cases[i][1]
            return (case, None if ptype is None else _from(payload, ptype, f"{path}.{case}"))
        case Option(inner):
            if obj is None:
                return None
            if needs_some_wrapper(t):
                if not isinstance(obj, dict) or set(obj) != {"some"}:
                    raise _bad(obj, t, path)
                return Some(_from(obj["some"], inner, f"{path}.some"))
            return _from(obj, inner, path)
        case Result(ok, err):
            if not isinstance(obj, dict) or len(obj) != 1 or next(iter(obj)) not in ("ok", "err"):
                raise _bad(obj, t, path)
            key, payload = next(iter(obj.items()))
            ptype = ok if key == "ok" else err
            val = None if ptype is None else _from(payload, ptype, f"{path}.{key}")
            return Ok(val) if key == "ok" else Err(val)
    raise TypeError(f"not a WIT type: {t!r}")


def _missing(name: str, path: str) -> Any:
    raise ValueError(f"{path or 'record'}: missing field {name!r}")
