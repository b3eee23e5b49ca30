"""Component Model value types, function declarations and the Python value model.

This is the vocabulary shared by the WIT parser (``wit.py``), the Canonical ABI
(``cabi.py``) and WAVE text (``wave.py``). Types are frozen dataclasses, so they
hash and compare structurally; named types (record, variant, enum, flags) keep
their WIT name for messages and printing, and type aliases are resolved away by
the parser (an alias is the type it names).

Python representation of values (one choice, used by cabi, wave and json):

=====================  ==========================================================
WIT type               Python value
=====================  ==========================================================
bool                   ``bool``
s8 … u64               ``int`` (range-checked when lowered)
f32, f64               ``float`` (f32 values are rounded to single precision)
char                   ``str`` of length 1 (a Unicode scalar value, no surrogates)
string                 ``str``
list<T>                ``list`` (any non-str sequence is accepted when lowering)
tuple<…>               ``tuple``
record                 ``dict`` keyed by the field names as declared (kebab-case)
enum                   ``str``, the case name
variant                ``(case, payload)``; payload is ``None`` for a case without one
flags                  ``frozenset[str]`` (any iterable of names when lowering)
option<T>              ``None`` or the value — except when T is itself an option:
                       then ``Some(v)`` marks some, so ``option<option<u8>>`` has
                       the three values ``None``, ``Some(None)`` and ``Some(3)``.
                       ``Some(v)`` is also accepted for any option when lowering.
result<T, E>           ``Ok(v)`` / ``Err(e)``; the payload is ``None`` when the
                       type has none (``result<_, E>``, bare ``result``)
=====================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# -- types -------------------------------------------------------------------------

INT_RANGES: dict[str, tuple[int, int]] = {
    "u8": (0, 0xFF), "u16": (0, 0xFFFF), "u32": (0, 0xFFFF_FFFF), "u64": (0, (1 << 64) - 1),
    "s8": (-0x80, 0x7F), "s16": (-0x8000, 0x7FFF), "s32": (-(1 << 31), (1 << 31) - 1),
    "s64": (-(1 << 63), (1 << 63) - 1),
}
PRIMITIVES = ("bool", *INT_RANGES, "f32", "f64", "char", "string")
#: WIT allows at most this many flags (the Canonical ABI packs them into one i32).
MAX_FLAGS = 32


class Type:
    """Base class of every value type; ``str(t)`` is its WIT spelling."""

    __slots__ = ()

    def __str__(self) -> str:
        return format_type(self)


@dataclass(frozen=True, slots=True)
class Prim(Type):
    """bool, s8…u64, f32, f64, char or string."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in PRIMITIVES:
            raise ValueError(f"not a primitive type: {self.name}")


@dataclass(frozen=True, slots=True)
class List(Type):
    elem: Type


@dataclass(frozen=True, slots=True)
class Option(Type):
    inner: Type


@dataclass(frozen=True, slots=True)
class Result(Type):
    ok: Type | None = None
    err: Type | None = None


@dataclass(frozen=True, slots=True)
class Tuple(Type):
    items: tuple[Type, ...]


@dataclass(frozen=True, slots=True)
class Record(Type):
    name: str
    fields: tuple[tuple[str, Type], ...]


@dataclass(frozen=True, slots=True)
class Variant(Type):
    name: str
    cases: tuple[tuple[str, Type | None], ...]

    def case_index(self, name: str) -> int:
        for i, (c, _) in enumerate(self.cases):
            if c == name:
                return i
        return -1


@dataclass(frozen=True, slots=True)
class Enum(Type):
    name: str
    cases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Flags(Type):
    name: str
    flags: tuple[str, ...]


BOOL, CHAR, STRING = Prim("bool"), Prim("char"), Prim("string")
F32, F64 = Prim("f32"), Prim("f64")
U8, U16, U32, U64 = Prim("u8"), Prim("u16"), Prim("u32"), Prim("u64")
S8, S16, S32, S64 = Prim("s8"), Prim("s16"), Prim("s32"), Prim("s64")


def format_type(t: Type | None) -> str:
    """WIT spelling of a type: named types by name, the others structurally."""
    match t:
        case None:
            return "_"
        case Prim(name):
            return name
        case List(elem):
            return f"list<{format_type(elem)}>"
        case Option(inner):
            return f"option<{format_type(inner)}>"
        case Result(None, None):
            return "result"
        case Result(ok, None):
            return f"result<{format_type(ok)}>"
        case Result(ok, err):
            return f"result<{format_type(ok)}, {format_type(err)}>"
        case Tuple(items):
            return f"tuple<{', '.join(format_type(i) for i in items)}>"
        case Record(name) | Variant(name) | Enum(name) | Flags(name):
            return name
    raise TypeError(f"not a WIT type: {t!r}")


def describe_type(t: Type) -> str:
    """Like format_type, but says what kind a named type is: ``record item``."""
    kind = {Record: "record", Variant: "variant", Enum: "enum", Flags: "flags"}.get(type(t))
    return f"{kind} {format_type(t)}" if kind else format_type(t)


# -- functions ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FuncDecl:
    """An exported function: what the CLI calls it and which core export implements it.

    ``name`` is the key users invoke: the kebab-case name for a world-level export
    (``add-item``), golem's fully qualified form for one inside an exported interface
    (``ns:pkg/api.{add-item}``). ``core_name`` is the Canonical ABI export name: the
    plain name for world-level functions, ``ns:pkg/api@ver#add-item`` otherwise.
    """

    name: str
    params: tuple[tuple[str, Type], ...]
    result: Type | None
    core_name: str
    interface: str | None = None

    @property
    def param_types(self) -> tuple[Type, ...]:
        return tuple(t for _, t in self.params)

    @property
    def short_name(self) -> str:
        """The function's own name, without any interface qualification."""
        return self.name.rsplit("{", 1)[-1].rstrip("}") if self.interface else self.name

    def __str__(self) -> str:
        params = ", ".join(f"{n}: {format_type(t)}" for n, t in self.params)
        res = f" -> {format_type(self.result)}" if self.result is not None else ""
        return f"{self.name}: func({params}){res}"


# -- value wrappers ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ok:
    """The ok case of a result; ``value`` is None when the result has no ok type."""

    value: Any = None


@dataclass(frozen=True, slots=True)
class Err:
    """The error case of a result; ``value`` is None when the result has no error type."""

    value: Any = None


@dataclass(frozen=True, slots=True)
class Some:
    """``some(value)`` of an option whose payload is itself an option (see module doc)."""

    value: Any


def needs_some_wrapper(t: Option) -> bool:
    """True when the option's payload is an option, so ``None`` alone would be ambiguous."""
    return isinstance(t.inner, Option)
