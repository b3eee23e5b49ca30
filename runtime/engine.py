"""The one place that talks to wasmtime.

Everything else in the runtime sees modules, instances, memory and typed calls
through this adapter, so engine quirks (trap classification, epoch deadlines,
pointer handling) are dealt with once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
# The epoch-deadline callback is only in wasmtime-py's raw bindings (pinned <51).
from wasmtime import _ffi as wasmtime_ffi

from .engine_calls import (
    ExportCall, address, define_host, memmove_bytes, memory_data_size, memset, own_raise,
    set_epoch_deadline,
)
from .errors import (
    GuestTrap, Interrupted, InvalidModuleError, InvocationFailed, MemoryLimitExceeded,
    NotFoundError, TimeLimitExceeded,
)

WASM_PAGE = 65536
#: How often the epoch advances. Deadlines are counted in these ticks.
EPOCH_TICK_S = 0.01
#: With signals caught, guest code hands control to the deadline callback this often
#: (in ticks), so a signal stops it within about 50 ms.
SLICE_TICKS = 5

_DeadlineCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t, ctypes.POINTER(wasmtime_ffi.wasmtime_context_t), ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(wasmtime_ffi.wasmtime_update_deadline_kind_t))
_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))


def _stop_error(why: str) -> int:
    """A wasmtime error for the deadline callback to return: the guest traps with it."""
    err = wasmtime_ffi.wasmtime_error_new(f"golemish: {why}".encode())
    return ctypes.cast(err, ctypes.c_void_p).value or 0


@dataclass(frozen=True, slots=True)
class FuncSig:
    """A core function signature as type names, e.g. params=("i32", "i64")."""

    params: tuple[str, ...]
    results: tuple[str, ...]

    def __str__(self) -> str:
        res = ", ".join(self.results)
        return f"({', '.join(self.params)}) -> ({res})" if len(self.results) != 1 \
            else f"({', '.join(self.params)}) -> {res}"

    def functype(self) -> wasmtime.FuncType:
        return wasmtime.FuncType([_VALTYPES[p]() for p in self.params],
                                 [_VALTYPES[r]() for r in self.results])


_VALTYPES: dict[str, Callable[[], wasmtime.ValType]] = {
    "i32": wasmtime.ValType.i32, "i64": wasmtime.ValType.i64,
    "f32": wasmtime.ValType.f32, "f64": wasmtime.ValType.f64,
}


def _sig_of(ft: wasmtime.FuncType) -> FuncSig:
    return FuncSig(tuple(str(p) for p in ft.params), tuple(str(r) for r in ft.results))


def _describe(ty: Any) -> tuple[str, str]:
    """(kind, signature text) of an import/export type."""
    if isinstance(ty, wasmtime.FuncType):
        return "func", str(_sig_of(ty))
    if isinstance(ty, wasmtime.MemoryType):
        lim = ty.limits
        return "memory", f"pages {lim.min}..{'' if lim.max is None else lim.max}"
    if isinstance(ty, wasmtime.GlobalType):
        return "global", f"{'mut ' if ty.mutable else ''}{ty.content}"
    if isinstance(ty, wasmtime.TableType):
        return "table", f"{ty.element} {ty.limits.min}.."
    return type(ty).__name__.lower(), ""


def _wasmtime_version() -> str:
    # The dist-info beside the package names the version: importlib.metadata would scan
    # every path entry for it first (~8 ms of each Runtime's start).
    site = Path(wasmtime.__file__).resolve().parent.parent
    found = [p.name[len("wasmtime-"):-len(".dist-info")]
             for p in site.glob("wasmtime-*.dist-info")]
    if len(found) == 1:
        return found[0]
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("wasmtime")
    except PackageNotFoundError:  # pragma: no cover - vendored copies
        return "unknown"


_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")


def to_bits(ty: str, value: int | float) -> int:
    """A global's value as the unsigned bit pattern that snapshots store."""
    if ty == "f32":
        return int.from_bytes(_F32.pack(value), "little")
    if ty == "f64":
        return int.from_bytes(_F64.pack(value), "little")
    if ty == "i32":
        return int(value) & 0xFFFFFFFF
    return int(value) & 0xFFFFFFFFFFFFFFFF


def from_bits(ty: str, bits: int) -> int | float:
    if ty == "f32":
        return _F32.unpack(bits.to_bytes(4, "little"))[0]
    if ty == "f64":
        return _F64.unpack(bits.to_bytes(8, "little"))[0]
    if ty == "i32":
        return _I32.unpack(bits.to_bytes(4, "little"))[0]
    return _I64.unpack(bits.to_bytes(8, "little"))[0]


@dataclass(frozen=True, slots=True)
class HostFunc:
    module: str
    name: str
    sig: FuncSig
    func: Callable[..., Any]


class Engine:
    """A wasmtime engine with epoch interruption and a background epoch ticker."""

    def __init__(self) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True
        # Linear memory never moves, so a host function may cache its base pointer.
        config.memory_may_move = False
        # Plain anonymous memory (no copy-on-write image of the data segments), so
        # userfaultfd write-protection sees every page of it.
        config.memory_init_cow = False
        self._engine = wasmtime.Engine(config)
        self._ticker: threading.Thread | None = None
        self._ticker_lock = threading.Lock()  # two tickers would halve every time limit
        self._closing = threading.Event()
        #: The signal that stopped guest code (0: none); see interrupt().
        self.interrupted = 0
        #: Set by catch_signals(): instances are then made interruptible.
        self.interruptible = False
        #: Guest calls running, and whether the innermost frame is a host function
        #: (where a signal handler may raise), for the signal handler.
        self._running = 0
        self._in_host = 0
        self._restore_signals: dict[int, Any] = {}
        # Serialized code only loads under the same engine build and settings.
        self.fingerprint = f"wasmtime-{_wasmtime_version()}-epoch-nomove-nocow-v1"

    def _start_ticker(self) -> None:
        with self._ticker_lock:
            if self._ticker is None:
                self._start_ticker_locked()

    def _start_ticker_locked(self) -> None:
        def tick() -> None:
            while not self._closing.wait(EPOCH_TICK_S):
                self._engine.increment_epoch()

        self._ticker = threading.Thread(target=tick, name="golemish-epoch", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        self._closing.set()
        self.release_signals()

    # -- interruption ---------------------------------------------------------
    def interrupt(self, signum: int) -> None:
        """Stop guest code: running calls fail with Interrupted within a slice, new ones
        at once. Safe from any thread and from signal handlers. It stays set (the
        process is expected to exit) until clear_interrupt()."""
        self.interrupted = signum

    def clear_interrupt(self) -> None:
        self.interrupted = 0

    def catch_signals(self, signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """While guest code runs, these signals interrupt it instead of killing the process.

        Outside guest code a signal does what it did before (KeyboardInterrupt for
        SIGINT, termination for SIGTERM). Only from the main thread; release_signals()
        (or close()) puts the previous handlers back.
        """
        if threading.current_thread() is not threading.main_thread() or self._restore_signals:
            return
        previous = {s: signal.getsignal(s) for s in signums}

        def handler(signum: int, frame: Any) -> None:
            if not self._running:
                _default_action(signum, previous[signum], frame)
                return
            self.interrupt(signum)
            if self._in_host:  # a host call (a sleep, an HTTP request): stop it now
                raise Interrupted(signum)
            # In guest code: the deadline callback sees the flag within a slice.

        for s_ in signums:
            signal.signal(s_, handler)
        self._restore_signals = previous
        self.interruptible = True

    def release_signals(self) -> None:
        if self._restore_signals and threading.current_thread() is threading.main_thread():
            for s_, h in self._restore_signals.items():
                signal.signal(s_, h)
            self._restore_signals = {}
        self.interruptible = False

    # -- modules ----------------------------------------------------------
    def compile(self, wasm: bytes) -> wasmtime.Module:
        try:
            return wasmtime.Module(self._engine, wasm)
        except wasmtime.WasmtimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid"
            detail = " ".join(line.strip() for line in str(e).splitlines()[1:] if line.strip())
            raise InvalidModuleError(f"not a valid WebAssembly module: {first}"
                                     + (f" ({detail})" if detail else "")) from None

    @staticmethod
    def serialize(module: wasmtime.Module) -> bytes:
        return bytes(module.serialize())

    def deserialize(self, code: bytes | None = None, path: Path | None = None) -> wasmtime.Module:
        if path is not None:
            return wasmtime.Module.deserialize_file(self._engine, str(path))
        assert code is not None
        return wasmtime.Module.deserialize(self._engine, code)

    @staticmethod
    def imports(module: wasmtime.Module) -> list[tuple[str, str, str, str]]:
        """(module, name, kind, signature) of every import."""
        return [(i.module, i.name or "", *_describe(i.type)) for i in module.imports]

    @staticmethod
    def exports(module: wasmtime.Module) -> list[tuple[str, str, str]]:
        """(name, kind, signature) of every export."""
        return [(e.name, *_describe(e.type)) for e in module.exports]

    @staticmethod
    def func_exports(module: wasmtime.Module) -> dict[str, FuncSig]:
        return {e.name: _sig_of(e.type) for e in module.exports
                if isinstance(e.type, wasmtime.FuncType)}

    def instantiate(self, module: wasmtime.Module, host: Sequence[HostFunc], *,
                    memory_limit: int) -> Instance:
        return Instance(self, module, host, memory_limit=memory_limit)


class Instance:
    """One instantiated module in its own wasmtime Store."""

    def __init__(self, engine: Engine, module: wasmtime.Module, host: Sequence[HostFunc], *,
                 memory_limit: int) -> None:
        engine._start_ticker()
        self.engine = engine
        self.memory_limit = memory_limit
        self._store = wasmtime.Store(engine._engine)
        self._store.set_limits(memory_size=memory_limit)
        self._ctx = address(self._store._context())
        # A start function runs inside instantiate; it gets the same budget as a call.
        self._store.set_epoch_deadline(1 << 40)
        # A trapping start function is classified before any export is looked up.
        self._memory: wasmtime.Memory | None = None
        self._stopped: str | None = None
        self._deadline_at = float("inf")
        self._callback: Any = None
        if engine.interruptible:
            # Guest code comes back to the callback every slice: it checks for a signal
            # and for the time limit (instead of one long epoch deadline).
            self._callback = _DeadlineCallback(self._on_deadline)
            wasmtime_ffi.wasmtime_store_epoch_deadline_callback(
                self._store.ptr(), self._callback, None, _NO_FINALIZER)
            self._store.set_epoch_deadline(SLICE_TICKS)
        linker = wasmtime.Linker(engine._engine)
        # Types belong to one engine; built once each: a Python worker defines ~60 host
        # functions per instantiation, and building their types took ~20 ms of it.
        types = engine.__dict__.setdefault("_functypes", {})
        for h in host:
            fn = _marked(engine, h.func) if engine.interruptible else h.func
            ft = types.get(h.sig)
            if ft is None:
                ft = types[h.sig] = h.sig.functype()
            define_host(linker, h.module, h.name, ft, h.sig.params, h.sig.results, fn)
        in_host, engine._in_host = engine._in_host, 0
        engine._running += 1
        try:
            self._instance = own_raise(linker.instantiate, self._store, module)
        except wasmtime.Trap as t:
            raise self._classify(t) from None
        except wasmtime.WasmtimeError as e:
            if self._stopped is not None:
                raise self._stop() from None
            msg = str(e).strip().splitlines()[0]
            if "memory" in msg and ("limit" in msg or "minimum" in msg or "exceeds" in msg):
                raise MemoryLimitExceeded(
                    f"module needs more memory than the worker's cap of "
                    f"{memory_limit // (1 << 20)} MiB: {msg}") from None
            raise InvocationFailed(f"instantiation failed: {msg}") from None
        finally:
            engine._running -= 1
            engine._in_host = in_host
        self._exports = self._instance.exports(self._store)
        self._calls: dict[str, ExportCall] = {}
        mem = self._exports.get("memory") if "memory" in {e.name for e in module.exports} else None
        self._memory = mem if isinstance(mem, wasmtime.Memory) else None
        self.base = 0
        self.size = 0
        if self._memory is not None:
            self.base = address(self._memory.data_ptr(self._store))
            self._mem_addr = ctypes.addressof(self._memory._memory)
            self.size = self._memory.data_len(self._store)

    # -- memory, for host functions ---------------------------------------
    @property
    def has_memory(self) -> bool:
        """False for a module without memory: its state is its globals alone."""
        return self._memory is not None

    def memory_size(self) -> int:
        """Current byte length (refreshes the cached value; memory only grows)."""
        if self._memory is None:
            return 0
        self.size = memory_data_size(self._ctx, self._mem_addr)
        return self.size

    def check(self, ptr: int, n: int) -> bool:
        """True when [ptr, ptr+n) lies inside linear memory."""
        end = ptr + n
        if ptr < 0 or n < 0:
            return False
        return end <= self.size or end <= self.memory_size()

    def read(self, ptr: int, n: int) -> bytes:
        return ctypes.string_at(self.base + ptr, n)

    def write(self, ptr: int, data: bytes) -> None:
        if type(data) is bytes:
            memmove_bytes(self.base + ptr, data, len(data))
        else:  # bytearray, memoryview
            ctypes.memmove(self.base + ptr, data, len(data))

    def grow_to(self, size: int) -> None:
        """Grow linear memory to ``size`` bytes (a restore needs the snapshot's size)."""
        have = self.memory_size()
        if size > have:
            if self._memory is None:
                raise MemoryLimitExceeded(f"snapshot has {size >> 20} MiB of memory; "
                                          "the module has none")
            if self._memory.grow(self._store, (size - have) // WASM_PAGE) < 0:
                raise MemoryLimitExceeded(
                    f"snapshot needs {size >> 20} MiB, above the memory cap of "
                    f"{self.memory_limit >> 20} MiB")
            self.memory_size()

    def set_memory_limit(self, limit: int) -> None:
        """Cap further memory growth at ``limit`` bytes (memory already there stays)."""
        if limit != self.memory_limit:
            self._store.set_limits(memory_size=limit)
            self.memory_limit = limit

    def zero(self, ptr: int, n: int) -> None:
        memset(self.base + ptr, 0, n)

    # -- globals and tables, through the exports added at deploy ----------------
    def get_global(self, name: str) -> tuple[str, int]:
        """(type, bit pattern) of an exported global."""
        g = self._exports[name]
        assert isinstance(g, wasmtime.Global)
        ty = str(g.type(self._store).content)
        return ty, to_bits(ty, g.value(self._store))

    def set_global(self, name: str, ty: str, bits: int) -> None:
        g = self._exports[name]
        assert isinstance(g, wasmtime.Global)
        g.set_value(self._store, from_bits(ty, bits))

    def table_size(self, name: str) -> int:
        t = self._exports[name]
        assert isinstance(t, wasmtime.Table)
        return t.size(self._store)

    # -- calls --------------------------------------------------------------
    def has_export(self, name: str) -> bool:
        return isinstance(self._exports.get(name), wasmtime.Func)

    def _export_call(self, name: str, missing: str) -> ExportCall:
        call = self._calls.get(name)
        if call is None:
            func = self._exports.get(name)
            if not isinstance(func, wasmtime.Func):
                raise NotFoundError(missing)
            call = self._calls[name] = ExportCall(self._store, func)
        return call

    def call(self, name: str, args: Sequence[int | float], *, time_limit: float) -> list[Any]:
        """Call an exported function; results come back as a list of Python numbers.

        Traps are translated into InvocationFailed subclasses. Exceptions raised by host
        functions propagate unchanged.
        """
        call = self._export_call(name, f"no exported function {name!r}")
        eng = self.engine
        if eng.interrupted:
            raise Interrupted(eng.interrupted)
        ticks = max(1, int(time_limit / EPOCH_TICK_S) + 1)
        set_epoch_deadline(self._ctx, min(ticks, SLICE_TICKS) if self._callback else ticks)
        self._deadline_s = time_limit
        self._deadline_at = time.monotonic() + time_limit
        self._stopped = None
        in_host, eng._in_host = eng._in_host, 0
        eng._running += 1
        try:
            return own_raise(call, *args)
        except wasmtime.Trap as t:
            raise (self._stop() if self._stopped else self._classify(t)) from None
        except wasmtime.WasmtimeError as e:
            if self._stopped is not None:
                raise self._stop() from None
            raise GuestTrap(str(e).strip().splitlines()[0]) from None
        finally:
            eng._running -= 1
            eng._in_host = in_host

    def call_nested(self, name: str, args: Sequence[int | float]) -> Any:
        """Call an export from inside a host function (e.g. the guest's allocator).

        The outer call's deadline stays in force; a trap propagates to the outer call.
        Returns None, the one result, or a list of them.
        """
        call = self._export_call(name, f"the guest exports no {name!r}")
        eng = self.engine
        in_host, eng._in_host = eng._in_host, 0
        try:
            out = own_raise(call, *args)
        finally:
            eng._in_host = in_host
        return None if not out else out[0] if len(out) == 1 else out

    def _on_deadline(self, _ctx: Any, _data: Any, delta: Any, kind: Any) -> int:
        """wasmtime's epoch-deadline callback: trap on a signal or at the time limit."""
        if self.engine.interrupted:
            self._stopped = "interrupt"
            return _stop_error("interrupted")
        left = self._deadline_at - time.monotonic()
        if left <= 0:
            self._stopped = "time"
            return _stop_error("time limit")
        # +inf before any call (a start function runs in instantiate): int() of it would
        # raise inside this ctypes callback, which crashes the process.
        delta[0] = SLICE_TICKS if left == float("inf") else \
            max(1, min(SLICE_TICKS, int(left / EPOCH_TICK_S) + 1))
        kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
        return 0

    def _stop(self) -> InvocationFailed:
        """The error for a call the deadline callback stopped."""
        if self._stopped == "interrupt":
            return Interrupted(self.engine.interrupted or signal.SIGINT)
        return TimeLimitExceeded(f"invocation exceeded its time limit of "
                                 f"{getattr(self, '_deadline_s', 0):g} s (a runaway loop?)")

    def _classify(self, t: wasmtime.Trap) -> InvocationFailed:
        code = t.trap_code
        where = ""
        frames = t.frames or []
        if frames:
            f = frames[0]
            where = f" in {f.func_name or f'function {f.func_index}'}"
        if code == wasmtime.TrapCode.INTERRUPT:
            limit = getattr(self, "_deadline_s", 0)
            return TimeLimitExceeded(f"invocation exceeded its time limit of {limit:g} s"
                                     f"{where} (a runaway loop?)")
        name = code.name.lower().replace("_", " ") if code is not None else "trap"
        if self._memory is not None:
            # wasmtime does not report a refused memory.grow; the guest sees -1 and
            # usually ends in an abort or a null dereference. A trap with memory close
            # to the cap is reported as the cap, with the numbers so a user can judge.
            size = self.memory_size()
            if size >= self.memory_limit - max(self.memory_limit // 8, 1 << 20):
                return MemoryLimitExceeded(
                    f"guest trapped ({name}{where}) with memory at {size / (1 << 20):.1f} "
                    f"MiB of its memory cap of {self.memory_limit >> 20} MiB: "
                    "it most likely ran out of memory")
        return GuestTrap(f"guest trapped: {name}{where}")

    def close(self) -> None:
        store, self._store = self._store, None  # type: ignore[assignment]
        self._exports = None  # type: ignore[assignment]
        self._calls = {}
        self._instance = None  # type: ignore[assignment]
        self._memory = None
        if store is not None:
            store.close()
        self._callback = None  # after the store, which calls it


def _marked(engine: Engine, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A host function during which a signal handler may raise (see catch_signals)."""
    def host(*args: Any) -> Any:
        engine._in_host += 1
        try:
            # A signal that came while guest code ran, just before this call, has set the
            # flag without stopping anything yet: stop here, not after a long sleep.
            if engine.interrupted:
                raise Interrupted(engine.interrupted)
            return fn(*args)
        finally:
            engine._in_host -= 1
    host.__name__ = getattr(fn, "__name__", "host")
    return host


def _default_action(signum: int, previous: Any, frame: Any) -> None:
    """What a signal did before catch_signals(), outside guest code."""
    if callable(previous):
        previous(signum, frame)  # Python's SIGINT handler raises KeyboardInterrupt
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def monotonic_ns() -> int:
    return time.monotonic_ns()
