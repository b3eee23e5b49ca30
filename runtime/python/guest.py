"""Running a Python component's functions inside the interpreter module.

The interpreter exports ``turn(ptr, len) -> i32``: it runs UTF-8 source in
``__main__`` like the interactive prompt, so globals persist between turns, and
``host_alloc(n)``, the guest's allocator, which the host uses for the source it
passes. The guest talks back through the import ``host.call(req_ptr, req_len,
out_ptr_ptr, out_len_ptr)``: the host answers with bytes it writes into memory
allocated with ``host_alloc``.

A worker's first turn (at creation) defines a dispatcher and runs the user's
module; every invocation is one more turn calling the dispatcher with the
arguments as JSON. The dispatcher reports the outcome through ``host.call``
(``result`` + JSON, or ``error`` + the traceback's last line). Those two
requests are answered with nothing, so they are deterministic and are not
recorded; anything else the guest asks the host is answered through the
journal (see :class:`PythonHost`): the ``golemish`` module (guest_lib.py), whose
calls api.py answers with the C API's own host functions and entries.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from golemish.oplog import TypedValue, content_hash

from ..engine import FuncSig, HostFunc, Instance
from ..errors import ComponentError, InvocationFailed, NotFoundError
from ..journal import Journal
from ..typed.invoke import Interface
from ..typed.wave_json import from_json, to_json
from ..typed.wit_types import FuncDecl
from . import api

MASK32 = 0xFFFFFFFF
PREFIX = b"golemish:"
RESULT, ERROR = b"golemish:result\n", b"golemish:error\n"
HOST_FAULT = -2
LIB = Path(__file__).with_name("guest_lib.py")
TYPES = Path(__file__).with_name("guest_types.py")


def guest_lib() -> str:
    """The source of the guest's ``golemish`` module."""
    return LIB.read_text(encoding="utf-8")


def guest_types() -> str:
    """The source of the guest's ``_golemish_types`` module (hints, calls, imports)."""
    return TYPES.read_text(encoding="utf-8")


def guest_lib_digest() -> str:
    """What a component remembers of the guest library it was deployed with."""
    return content_hash(guest_types().encode() + b"\0" + guest_lib().encode())


#: The first turn: the golemish module, the dispatcher, then the user's code.
#: @LIB@, @FILES@ (relative path -> source), @ENTRY@ (None: run @MAIN@ in __main__)
#: and @MAIN@ are filled in with Python literals.
BOOTSTRAP = '''
def __golemish_boot__():
    import sys, types
    for name, doc, src in (("_golemish_types", "Type hints, calls, imports.", @TYPES@),
                           ("golemish", "The golemish host API, durable.", @LIB@)):
        mod = types.ModuleType(name, doc)
        mod.__file__ = name + ".py"
        sys.modules[name] = mod
        exec(compile(src, name + ".py", "exec"), mod.__dict__)

__golemish_boot__()

def __golemish_report__(tag, text):
    import _host
    _host.call(tag + text.encode("utf-8", "surrogatepass"))

def __golemish_last_line__(e):
    import traceback
    return traceback.format_exception_only(e)[-1].strip()

def __golemish_call__(name, args):
    import sys
    try:
        out = sys.modules["_golemish_types"]._invoke(__golemish_ns__[name], args)
    except BaseException as e:
        __golemish_report__(@ERROR@, __golemish_last_line__(e))
    else:
        __golemish_report__(@RESULT@, out)

def __golemish_describe__():
    import json, sys
    try:
        lines, names = sys.modules["_golemish_types"].describe(__golemish_ns__, @MAIN@)
    except TypeError as e:
        __golemish_report__(@ERROR@, str(e))
    except BaseException as e:
        __golemish_report__(@ERROR@, __golemish_last_line__(e))
    else:
        __golemish_report__(@RESULT@, json.dumps([lines, names]))

def __golemish_load__(files, entry, main):
    if entry is None:
        exec(compile(files[main], main, "exec"), globals())
        return globals()
    import importlib, sys
    sys.modules["_golemish_types"]._importer(files, "/component/")
    return importlib.import_module(entry).__dict__

try:
    __golemish_ns__ = __golemish_load__(@FILES@, @ENTRY@, @MAIN@)
except BaseException as e:
    import traceback as _tb
    _frames = [f for f in _tb.extract_tb(e.__traceback__) if f.filename in @FILES@]
    if isinstance(e, SyntaxError) and e.filename in @FILES@:
        _where = "%s:%d: " % (e.filename, e.lineno or 0)
    else:
        _where = "%s:%d: " % (_frames[-1].filename, _frames[-1].lineno) if _frames else ""
    __golemish_report__(@ERROR@, _where + __golemish_last_line__(e))
else:
    __golemish_report__(@RESULT@, "null")
'''


def bootstrap(files: dict[str, str], entry: str | None, main: str) -> str:
    """The first turn's source for a module ``main`` (entry None) or a package."""
    subst = {"@LIB@": repr(guest_lib()), "@TYPES@": repr(guest_types()), "@FILES@": repr(files), "@ENTRY@": repr(entry),
             "@MAIN@": repr(main), "@RESULT@": repr(RESULT), "@ERROR@": repr(ERROR)}
    # One pass, so that a placeholder inside the user's source is left alone.
    return re.sub(r"@[A-Z]+@", lambda m: subst[m.group(0)], BOOTSTRAP)


class PythonHost:
    """The ``host.call`` import of one instance, and the outcome of its last turn."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.inst: Instance | None = None
        self.outcome: tuple[bytes, str] | None = None
        #: The worker's host API (GolemishHost), for golemish.* calls; None at deploy.
        self.golemish: Any = None
        #: Descriptors the guest holds open on its files (set by the WASI host).
        self.open_files: Any = lambda: 0

    def bind(self, inst: Instance) -> None:
        self.inst = inst

    def functions(self) -> list[HostFunc]:
        return [HostFunc("host", "call", FuncSig(("i32",) * 4, ("i32",)), self.call)]

    def call(self, ptr: int, length: int, out_ptr_ptr: int, out_len_ptr: int) -> int:
        m = self.inst
        ptr, length = ptr & MASK32, length & MASK32
        if m is None or not m.check(ptr, length) or not m.check(out_ptr_ptr, 4) \
                or not m.check(out_len_ptr, 4):
            return HOST_FAULT
        request = m.read(ptr, length)
        for tag in (RESULT, ERROR):
            if request.startswith(tag):
                self.outcome = (tag, request[len(tag):].decode("utf-8", "replace"))
                return self._answer(b"", out_ptr_ptr, out_len_ptr)
        if request.startswith(PREFIX):
            name, _, rest = request[len(PREFIX):].partition(b"\n")
            head, _, raw = rest.partition(b"\n")
            if self.golemish is None:  # the trial import at deploy: no effects there
                data = api.answer({"error": "invalid", "message": (
                    f"golemish.{name.decode(errors='replace')} at import time: the module "
                    "is imported once at deploy, without effects; call it in a function")})
            else:
                try:
                    arg = json.loads(head) if head else None
                except ValueError:
                    arg = None
                data = api.handle(self.golemish, name.decode("utf-8", "replace"), arg, raw)
            return self._answer(data, out_ptr_ptr, out_len_ptr)
        # Nothing else is offered; recorded so that a later host API cannot change
        # what an existing oplog replays.
        answer = self.journal.host_call("python.host_call", request, lambda: b"")
        return self._answer(answer, out_ptr_ptr, out_len_ptr)

    def _answer(self, data: bytes, out_ptr_ptr: int, out_len_ptr: int) -> int:
        m = self.inst
        assert m is not None
        p = m.call_nested("host_alloc", [len(data)]) & MASK32 if data else 0
        if data:
            if not p or not m.check(p, len(data)):
                return HOST_FAULT
            m.write(p, data)
        m.write(out_ptr_ptr, struct.pack("<I", p))
        m.write(out_len_ptr, struct.pack("<I", len(data)))
        return 0

    def turn(self, source: str, time_limit: float) -> tuple[bytes, str]:
        """Run one turn; (RESULT or ERROR, text) as the guest reported it."""
        m = self.inst
        assert m is not None
        data = source.encode()
        p = int(m.call("host_alloc", [len(data)], time_limit=time_limit)[0]) & MASK32
        if not p or not m.check(p, len(data)):
            raise InvocationFailed("the Python interpreter is out of memory")
        m.write(p, data)
        self.outcome = None
        code = int(m.call("turn", [p, len(data)], time_limit=time_limit)[0])
        outcome, self.outcome = self.outcome, None
        if self.open_files():
            # Snapshots hold memory but not yet the descriptor table: a state with an
            # open file could not be restored, so it is not kept.
            raise InvocationFailed("the call left a file open; Python workers cannot keep "
                                   "files open between calls yet")
        if outcome is None:
            what = "exited" if code >= 256 else f"ended with code {code & 0xFF}"
            raise InvocationFailed(f"the Python interpreter {what} without a result")
        return outcome


class PythonInterface(Interface):
    """A Python component's derived WIT, run by turns of the interpreter."""

    def __init__(self, text: str, name: str, names: dict[str, str]) -> None:
        super().__init__(text, name)
        self.component = name
        self.python_names = names

    def find(self, function: str) -> FuncDecl | None:
        """A function by its WIT name or its Python name; NotFoundError if neither."""
        func = super().find(function) or super().find(function.replace("_", "-"))
        if func is None:
            have = ", ".join(sorted(self.python_names)) or "none"
            raise NotFoundError(f"component {self.component} has no function {function!r}; "
                                f"it has: {have}")
        return func

    def parse_call(self, text: str) -> tuple[FuncDecl, list[TypedValue]]:
        """``name(args…)`` with the WIT or the Python name of the function."""
        name, paren, rest = text.partition("(")
        func = self.find(name.strip())
        assert func is not None
        return super().parse_call(func.name + paren + rest)

    def run(self, inst: Instance, func: FuncDecl, params: Sequence[TypedValue],
            time_limit: float, **_: Any) -> tuple[list[TypedValue], Any]:
        host: PythonHost = inst.python_host  # type: ignore[attr-defined]
        args = [to_json(v, t) for v, (_, t) in zip(self.values(func, params), func.params)]
        call = f"__golemish_call__({self.python_names[func.name]!r}, {json.dumps(args)!r})"
        tag, text = host.turn(call, time_limit)
        if tag == ERROR:
            raise InvocationFailed(f"{func.name}: {text}")
        if func.result is None:
            return [], None
        try:
            value = from_json(json.loads(text), func.result)
        except ValueError as e:
            raise InvocationFailed(f"{func.name} returned a value that is not "
                                   f"{func.result}: {e}") from None
        return [("wave", wave_text(value, func))], to_json(value, func.result)


def wave_text(value: Any, func: FuncDecl) -> str:
    from ..typed.wave import to_wave
    assert func.result is not None
    return to_wave(value, func.result)


def initialize(host: PythonHost, files: dict[str, str], entry: str | None, main: str,
               time_limit: float) -> None:
    """The worker's first turn: run the user's module. Fails with its error's last line."""
    tag, text = host.turn(bootstrap(files, entry, main), time_limit)
    if tag == ERROR:
        raise InvocationFailed(f"the module failed to load: {text}")


def describe(host: PythonHost, time_limit: float) -> tuple[list[str], dict[str, str]]:
    """After :func:`initialize`: (WIT world lines, WIT name -> Python name) of the exports,
    from their type hints; ComponentError (file:line: …) for a hint WIT cannot spell."""
    tag, text = host.turn("__golemish_describe__()", time_limit)
    if tag == ERROR:
        raise ComponentError(text)
    lines, names = json.loads(text)
    return lines, names
