"""Calls across the wasm boundary in one foreign call each, for engine.py.

wasmtime-py's ``Func.__call__`` rebuilds the function's type on every call (the
FuncType, a ValType per parameter and result, their kinds, each a ctypes call) and
converts every value through ``Val``; its host trampoline does the same per result.
About twenty foreign calls per guest call and five per host call, and every one of
them releases the GIL and takes it back: on a busy server those hand-offs were most
of the time an invocation held the interpreter (py-spy, issue 11). Here a numeric
signature is resolved once: an export call is one ``wasmtime_func_call_unchecked``
on a raw value array packed with ``struct``, and a host function is defined with
``wasmtime_linker_define_func_unchecked`` behind one module-level trampoline that
unpacks its arguments the same way. Small, non-blocking getters and setters
(epoch deadline, memory size) go through ``PyDLL`` handles, which keep the GIL.
"""

from __future__ import annotations

import ctypes
import itertools
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

#: Raw values are 16 bytes each (room for a v128); arguments and results share the array.
_SLOT = ctypes.sizeof(ffi.wasmtime_val_raw_t)
#: struct codes of a slot per numeric type; ints are packed unsigned after masking, so
#: u32/u64 bit patterns and negative numbers both go through, as wasmtime-py's did.
_PACK = {"i32": "I", "i64": "Q", "f32": "f", "f64": "d"}
_MASK = {"i32": 0xFFFFFFFF, "i64": 0xFFFFFFFFFFFFFFFF, "f32": None, "f64": None}
_UNPACK = {"i32": "i", "i64": "q", "f32": "f", "f64": "d"}
_WIDTH = {"i32": 4, "i64": 8, "f32": 4, "f64": 8}
_CTYPE = {"i32": ctypes.c_int32, "i64": ctypes.c_int64,
          "f32": ctypes.c_float, "f64": ctypes.c_double}

# Our own function objects for the unchecked entry points (dll[...] makes new ones, so
# wasmtime-py's own bindings keep their argtypes): plain addresses in and out.
_call_unchecked = ffi.dll["wasmtime_func_call_unchecked"]
_call_unchecked.restype = ctypes.c_void_p
_call_unchecked.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_size_t, ctypes.c_void_p]
_define_unchecked = ffi.dll["wasmtime_linker_define_func_unchecked"]
_define_unchecked.restype = ctypes.c_void_p
_HostCallback = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_size_t)
_Finalizer = ctypes.CFUNCTYPE(None, ctypes.c_size_t)
_define_unchecked.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                              ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p,
                              _HostCallback, ctypes.c_size_t, _Finalizer]

# Constant-time calls that never block or call back into Python: no GIL hand-off.
_pydll = ctypes.PyDLL(ffi.dll._name)
set_epoch_deadline = _pydll["wasmtime_context_set_epoch_deadline"]
set_epoch_deadline.restype = None
set_epoch_deadline.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
memory_data_size = _pydll["wasmtime_memory_data_size"]
memory_data_size.restype = ctypes.c_size_t
memory_data_size.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

# libc's memmove and memset without releasing the GIL: the host functions' small copies
# into guest memory (a clock value, an errno out-parameter) cost less than the hand-off.
_libc = ctypes.PyDLL(None)
memmove_bytes = _libc["memmove"]
memmove_bytes.restype = ctypes.c_void_p
memmove_bytes.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
memset = _libc["memset"]
memset.restype = ctypes.c_void_p
memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]


def address(ptr: Any) -> int:
    """The address a ctypes pointer holds (0 for NULL)."""
    return ctypes.cast(ptr, ctypes.c_void_p).value or 0


def _slots(types: Sequence[str], codes: dict[str, str] = _UNPACK) -> struct.Struct | None:
    """The struct of raw value slots holding ``types`` (None for no values)."""
    if not types:
        return None
    return struct.Struct("<" + "".join(f"{codes[t]}{_SLOT - _WIDTH[t]}x" for t in types))


def numeric(types: Sequence[str]) -> bool:
    return all(t in _PACK for t in types)


# -- host functions -------------------------------------------------------------

#: The exception a host function raised, per thread: it is re-raised by the guest call
#: that the host function's trap unwinds (own_raise), on that call's own thread.
_HOST_EXC = threading.local()
#: env id of a definition -> (function, parameter struct, result ctype).
_HOSTS: dict[int, tuple[Callable[..., Any], struct.Struct | None, Any]] = {}
_ids = itertools.count(1)
_TRAP_MSG = b"python exception"


@_HostCallback
def _trampoline(env: int, _caller: int, raw: int, _n: int) -> int:
    try:
        fn, params, result = _HOSTS[env]
        out = fn(*params.unpack(ctypes.string_at(raw, params.size))) if params else fn()
        if result is not None:
            result.from_address(raw).value = out
        return 0
    except BaseException as e:  # noqa: BLE001 - every exception must become a trap
        _HOST_EXC.exc = e
        return address(ffi.wasmtime_trap_new(_TRAP_MSG, len(_TRAP_MSG)))


def _drop(env: int, _pop: Callable[..., Any] = _HOSTS.pop) -> None:
    # Bound at definition: wasmtime may drop the last linker at interpreter exit, after
    # this module's globals are gone.
    _pop(env, None)


_finalize = _Finalizer(_drop)
# wasmtime holds both thunks' addresses past any Python reference: a store freed at
# interpreter exit, after this module's globals were cleared, still calls _finalize, and
# a freed thunk is a jump into freed memory (a segfault as pytest exited). Immortal.
for _thunk in (_trampoline, _finalize):
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_thunk))


def define_host(linker: wasmtime.Linker, module: str, name: str, ft: wasmtime.FuncType,
                params: Sequence[str], results: Sequence[str],
                fn: Callable[..., Any]) -> None:
    """Define a host function of a numeric signature with at most one result."""
    if len(results) > 1 or not numeric(params) or not numeric(results):
        raise ValueError(f"host function {module}.{name}: unsupported signature")
    env = next(_ids)
    _HOSTS[env] = (fn, _slots(params), _CTYPE[results[0]] if results else None)
    m, n = module.encode(), name.encode()
    err = _define_unchecked(address(linker.ptr()), m, len(m), n, len(n),
                            address(ft.ptr()), _trampoline, env, _finalize)
    if err:
        _HOSTS.pop(env, None)
        raise wasmtime.WasmtimeError._from_ptr(
            ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))


# -- export calls -------------------------------------------------------------------

class ExportCall:
    """One export of one instance, callable with Python numbers; returns a list."""

    __slots__ = ("_func", "_ctx", "_addr", "_nparams", "_masks", "_pack", "_unpack",
                 "_buf", "_n", "_fallback", "_store")

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func) -> None:
        ft = func.type(store)
        params = [str(p) for p in ft.params]
        results = [str(r) for r in ft.results]
        self._func = func  # keeps the wasmtime_func_t that _addr points into
        self._store = store
        self._nparams = len(params)
        self._fallback = not (numeric(params) and numeric(results))
        self._ctx = address(store._context())
        self._addr = ctypes.addressof(func._func)
        self._n = max(len(params), len(results), 1)
        self._buf = ctypes.c_char * (self._n * _SLOT)
        self._masks: list[int | None] = []
        self._pack = self._unpack = None
        if not self._fallback:
            self._masks = [_MASK[p] for p in params]
            self._pack = _slots(params, _PACK)
            self._unpack = _slots(results)

    def __call__(self, *args: Any) -> list[Any]:
        if self._fallback:
            out = self._func(self._store, *args)
            return [] if out is None else list(out) if isinstance(out, (list, tuple)) else [out]
        if len(args) != self._nparams:
            which = "many" if len(args) > self._nparams else "few"
            raise wasmtime.WasmtimeError(f"too {which} parameters provided: given "
                                         f"{len(args)}, expected {self._nparams}")
        buf = self._buf()
        if args:
            self._pack.pack_into(buf, 0, *[a if m is None else a & m  # type: ignore[union-attr]
                                           for a, m in zip(args, self._masks)])
        trap = ctypes.c_void_p()
        err = _call_unchecked(self._ctx, self._addr, buf, self._n, ctypes.addressof(trap))
        if err:
            raise wasmtime.WasmtimeError._from_ptr(
                ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))
        if trap.value:
            raise wasmtime.Trap._from_ptr(ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t)))
        return list(self._unpack.unpack_from(buf)) if self._unpack else []


def own_raise(func: Callable[..., Any], *args: Any) -> Any:
    """Enter guest code; re-raise this thread's host exception, never another's."""
    _HOST_EXC.exc = None
    try:
        return func(*args)
    except BaseException as e:
        mine, _HOST_EXC.exc = getattr(_HOST_EXC, "exc", None), None
        if mine is not None:
            if mine is e:
                raise
            raise mine from None
        if isinstance(e, (wasmtime.Trap, wasmtime.WasmtimeError)):
            raise
        # Another thread's host exception, surfaced at a trap of this call.
        raise wasmtime.Trap("guest trapped") from None
