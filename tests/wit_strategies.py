"""Hypothesis strategies for WIT types and their values, shared by the typed-value tests."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from golemish.runtime.typed.wit_types import (
    BOOL, CHAR, F32, F64, INT_RANGES, STRING, Enum, Err, Flags, List, Ok, Option, Prim, Record,
    Result, Some, Tuple, Type, Variant, needs_some_wrapper,
)

PRIMS = [BOOL, CHAR, STRING, F32, F64, *(Prim(n) for n in INT_RANGES)]

# Labels, including WAVE keywords (which need a % escape as enum or variant cases).
names = st.from_regex(r"[a-z][a-z0-9]{0,4}(-[a-z0-9]{1,3})?", fullmatch=True) | st.sampled_from(
    ["none", "some", "ok", "err", "true", "false", "inf", "nan", "HTTP-get"])


def _labelled(items: st.SearchStrategy[Any], n: int) -> st.SearchStrategy[tuple]:
    """1..n (unique label, item) pairs. The labels are drawn on their own: a uniqueness
    filter over the recursive items would make Hypothesis describe them, at great length."""
    return st.tuples(st.lists(names, min_size=1, max_size=n, unique=True),
                     st.lists(items, min_size=n, max_size=n)).map(lambda p: tuple(zip(*p)))


def _compound(children: st.SearchStrategy[Type]) -> st.SearchStrategy[Type]:
    maybe = st.none() | children
    return st.one_of(
        children.map(List),
        children.map(Option),
        st.tuples(maybe, maybe).map(lambda p: Result(*p)),
        st.lists(children, min_size=1, max_size=4).map(lambda xs: Tuple(tuple(xs))),
        _labelled(children, 4).map(lambda fs: Record("rec", fs)),
        _labelled(maybe, 5).map(lambda cs: Variant("var", cs)),
        st.lists(names, min_size=1, max_size=5, unique=True).map(
            lambda cs: Enum("en", tuple(cs))),
        st.lists(names, min_size=1, max_size=32, unique=True).map(
            lambda fs: Flags("fl", tuple(fs))),
    )


types: st.SearchStrategy[Type] = st.recursive(st.sampled_from(PRIMS), _compound, max_leaves=8)


def values(t: Type) -> st.SearchStrategy[Any]:
    """Values of type ``t`` in the Python representation of wit_types."""
    match t:
        case Prim("bool"):
            return st.booleans()
        case Prim("f32"):
            return st.floats(width=32)
        case Prim("f64"):
            return st.floats()
        case Prim("char"):
            return st.characters(exclude_categories=["Cs"])
        case Prim("string"):
            return st.text(max_size=12)
        case Prim(name):
            lo, hi = INT_RANGES[name]
            return st.integers(lo, hi)
        case List(elem):
            return st.lists(values(elem), max_size=4)
        case Option(inner):
            wrap = (lambda v: Some(v)) if needs_some_wrapper(t) else (lambda v: v)
            return st.none() | values(inner).map(wrap)
        case Result(ok, err):
            def side(p: Type | None, cls: type) -> st.SearchStrategy[Any]:
                return st.just(cls(None)) if p is None else values(p).map(cls)
            return side(ok, Ok) | side(err, Err)
        case Tuple(items):
            return st.tuples(*(values(i) for i in items))
        case Record(_, fields):
            return st.fixed_dictionaries({n: values(ft) for n, ft in fields})
        case Variant(_, cases):
            return st.one_of(*(st.just((c, None)) if p is None else
                               values(p).map(lambda v, c=c: (c, v)) for c, p in cases))
        case Enum(_, cases):
            return st.sampled_from(cases)
        case Flags(_, flags):
            return st.sets(st.sampled_from(flags)).map(frozenset)
    raise TypeError(t)


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[Type, Any]:
    """(type, value of that type) pairs.

    A composite rather than ``flatmap``: Hypothesis would describe the dependent
    strategy with a repr that grows huge for nested flags and records.
    """
    t = draw(types)
    return t, draw(values(t))


@st.composite
def signatures(draw: st.DrawFn, max_params: int = 8) -> tuple[list[Type], tuple]:
    """(parameter types, argument values) for a random function."""
    ts = draw(st.lists(types, min_size=1, max_size=max_params))
    return ts, tuple(draw(values(t)) for t in ts)


def norm(v: Any) -> Any:
    """A comparable form of a value: NaN equals NaN, -0.0 stays distinct from 0.0."""
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else (v, math.copysign(1, v))
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(norm(x) for x in v)
    if isinstance(v, (Some, Ok, Err)):
        return (type(v).__name__, norm(v.value))
    return v
