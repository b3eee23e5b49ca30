"""Typed invocations: WIT signatures, WAVE values, the Canonical ABI, and the oplog.

A component deployed with a WIT world is invoked by its WIT function names with
WAVE values. The oplog records each argument and the result as canonical WAVE
text (``("wave", text)`` in place of a numeric ``(type, value)``), not the core
values: those are pointers into memory the host wrote, which say nothing about
the call. Replay parses the text with the same WIT and lowers it again; the
guest's allocator runs inside the guest, so the pointers come out the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from golemish.oplog import TypedValue

from ..engine import FuncSig, Instance
from ..errors import ArgumentError, ComponentError, InvocationFailed
from . import cabi, wave
from .cabi_layout import LiftError, LowerError
from .wave_json import to_json
from .wave_lex import WaveError
from .wit import Wit, parse_wit, wit_from_custom_section
from .wit_syntax import WitError
from .wit_types import FuncDecl

#: Runs a core export: (name, core arguments) -> core results.
CoreCall = Callable[[str, list[int | float]], Sequence[int | float]]


def load_wit(text: str, source: str) -> Wit:
    try:
        return parse_wit(text, file=source)
    except WitError as e:
        raise ComponentError(f"WIT: {e}") from None


def check_against(wit: Wit, exports: dict[str, FuncSig]) -> None:
    """Refuse a component whose core exports do not implement its WIT world."""
    problems = cabi.check_exports(list(wit.functions.values()), exports)
    if problems:
        raise ComponentError("the module does not match its WIT: " + "; ".join(problems))


def wit_of(wasm: bytes, given: str | None) -> str | None:
    """The WIT text: given at deploy, else embedded in a `golemish:wit` custom section."""
    if given is not None:
        return given
    try:
        return wit_from_custom_section(wasm)
    except ValueError:  # not a module at all: compiling it says so more clearly
        return None


class Interface:
    """A component's typed interface, for one component version."""

    def __init__(self, text: str, name: str) -> None:
        self.wit = load_wit(text, f"{name}.wit")

    def find(self, function: str) -> FuncDecl | None:
        try:
            return self.wit.lookup(function)
        except KeyError:
            return None

    def parse_call(self, text: str) -> tuple[FuncDecl, list[TypedValue]]:
        """``name(args…)`` in WAVE -> the function and its recorded form."""
        try:
            name, values = wave.parse_call(text, self.wit)
        except WaveError as e:
            raise ArgumentError(f"{text!r}: {e}") from None
        func = self.wit.functions[name]
        return func, self.record(func, values)

    def parse_args(self, func: FuncDecl, texts: Sequence[str]) -> list[TypedValue]:
        try:
            values = wave.parse_args(func, list(texts))
        except WaveError as e:
            raise ArgumentError(f"{func}: {e}") from None
        return self.record(func, values)

    @staticmethod
    def record(func: FuncDecl, values: Sequence[Any]) -> list[TypedValue]:
        return [("wave", wave.to_wave(v, t)) for v, (_, t) in zip(values, func.params)]

    @staticmethod
    def values(func: FuncDecl, params: Sequence[TypedValue]) -> list[Any]:
        return [wave.parse(text, t) for (_, text), (_, t) in zip(params, func.params)]

    def run(self, inst: Instance, func: FuncDecl, params: Sequence[TypedValue],
            time_limit: float, *, call_export: CoreCall | None = None,
            lowered: Sequence[int | float] | None = None,
            on_lowered: Callable[[list[int | float]], None] | None = None,
            ) -> tuple[list[TypedValue], Any]:
        """Lower, call, lift, post-return. (recorded result, JSON form of the result).

        ``call_export`` runs the function's core export (a stackful worker's, which
        may unwind and rewind); ``lowered`` resumes a call whose core arguments are
        already in guest memory; see :func:`cabi.invoke`.
        """
        try:
            value = cabi.invoke(
                func, self.values(func, params), mem=inst,
                realloc=lambda *a: inst.call_nested("cabi_realloc", list(a)),
                call=lambda name, args: inst.call(name, args, time_limit=time_limit),
                has_export=inst.has_export, call_export=call_export, lowered=lowered,
                on_lowered=on_lowered)
        except LowerError as e:  # arguments were checked when parsed: the guest refused them
            raise InvocationFailed(f"{func.name}: cannot pass the arguments: {e}") from None
        except LiftError as e:
            raise InvocationFailed(f"{func.name} returned an invalid value: {e}") from None
        if func.result is None:
            return [], None
        return [("wave", wave.to_wave(value, func.result))], to_json(value, func.result)

    def signatures(self) -> list[str]:
        return [str(f) for f in self.wit.functions.values()]
