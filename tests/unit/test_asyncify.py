"""Stackful invocations with Binaryen's Asyncify: unwind at a host call, snapshot,
restore into a fresh instance, rewind, and the guest carries on inside the call."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime

from golemish.runtime.snapshot import asyncify as asy
from golemish.runtime.snapshot.async_stack import (
    DEFAULT_STACK_SIZE, REWINDING, UNWINDING, AsyncStack, AsyncStackOverflow, call_stackful,
)
from golemish.runtime.snapshot.asyncify import (
    DEFAULT_IMPORTS, AsyncifyError, asyncify, imports_arg, is_stackful,
)
from golemish.runtime.engine import Engine, FuncSig, HostFunc, Instance
from golemish.runtime.errors import GuestTrap
from golemish.runtime.snapshot.instrument import instrument
from golemish.runtime.snapshot.capture import Layout, MemoryImage, SnapshotConfig, restore
from golemish.runtime.host.wasi import signature

TOOL = asy.available_tool()
needs_tool = pytest.mark.skipif(
    TOOL is None, reason="asyncify needs Binaryen: pip install 'golemish[stackful]' "
                         "(icpp-binaryen, manylinux x86_64) or wasm-opt on PATH")

MIB = 1 << 20
LIMIT = 5.0

# A loop that calls an import (through a helper, so two frames are on the stack at the
# host call) and folds the answers into a local; a mutable global counts the steps. The
# second import is not in the asyncify list.
LOOP_WAT = """
(module
  (import "golemish" "next" (func $next (param i32) (result i64)))
  (import "env" "other" (func $other (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (global $steps (mut i32) (i32.const 0))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func $step (param $i i32) (param $acc i64) (result i64)
    (i64.add (i64.mul (local.get $acc) (i64.const 1000003))
             (call $next (local.get $i))))
  (func (export "run") (param $n i32) (result i64) (local $i i32) (local $acc i64)
    (local.set $acc (i64.const 7))
    (block $done
      (loop $again
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc (call $step (local.get $i) (local.get $acc)))
        (global.set $steps (i32.add (global.get $steps) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $again)))
    (local.get $acc))
  (func $deep (export "deep") (param $d i32) (result i64)
    (local $a i64) (local $b i64) (local $c i64)
    (local.set $a (i64.extend_i32_u (local.get $d)))
    (local.set $b (i64.mul (local.get $a) (local.get $a)))
    (local.set $c (i64.add (local.get $b) (i64.const 3)))
    (if (result i64) (i32.eqz (local.get $d))
      (then (call $next (i32.const 0)))
      (else (i64.add (call $deep (i32.sub (local.get $d) (i32.const 1)))
                     (i64.xor (local.get $c) (local.get $a))))))
  (func (export "only_other") (result i32) (i32.add (call $other) (i32.const 1)))
  (func (export "steps") (result i32) (global.get $steps)))
"""


def value(i: int, k: int) -> int:
    """What the host answers to the k-th real call (argument i)."""
    return (k * 7919 + i * 31 + 5) & 0x7FFFFFFFFFFFFFFF


class Host:
    """Host functions that unwind before chosen calls and count entries vs real calls."""

    def __init__(self, unwind_before: tuple[int, ...] = ()) -> None:
        self.unwind_before = set(unwind_before)  # real-call numbers (0-based)
        self.entries = 0  # times a host function was entered
        self.calls = 0  # real calls performed: the rewinding re-entry counts, the unwinding one not
        self.unwinds = 0
        self.stack: AsyncStack | None = None
        self.inst: Instance | None = None

    def maybe_unwind(self) -> bool:
        """Common start of every unwinding-capable host function. True: return a dummy now."""
        self.entries += 1
        stack = self.stack
        if stack is None:
            return False
        if stack.resuming():
            return False  # second entry of the call that unwound: perform it now
        if self.calls in self.unwind_before:
            self.unwind_before.discard(self.calls)
            self.unwinds += 1
            stack.start_unwind()
            return True
        return False

    def next(self, i: int) -> int:
        if self.maybe_unwind():
            return 0
        k, self.calls = self.calls, self.calls + 1
        return value(i, k)

    def other(self) -> int:
        self.entries += 1
        if self.stack is not None and self.unwind_before:
            self.unwind_before.clear()
            self.stack.start_unwind()  # not allowed: "env.other" is not in the list
        return 0

    def loop_functions(self) -> list[HostFunc]:
        return [HostFunc("golemish", "next", FuncSig(("i32",), ("i64",)), self.next),
                HostFunc("env", "other", FuncSig((), ("i32",)), self.other)]

    # -- the WASI imports of the journal guest ---------------------------------
    def clock_time_get(self, clock: int, precision: int, out: int) -> int:
        if self.maybe_unwind():
            return 0
        k, self.calls = self.calls, self.calls + 1
        assert self.inst is not None
        self.inst.write(out, struct.pack("<Q", value(clock, k)))
        return 0

    def random_get(self, buf: int, length: int) -> int:
        if self.maybe_unwind():
            return 0
        k, self.calls = self.calls, self.calls + 1
        assert self.inst is not None
        self.inst.write(buf, (struct.pack("<Q", value(length, k)) * (length // 8 + 1))[:length])
        return 0

    def wasi_functions(self) -> list[HostFunc]:
        def errno(code: int) -> Callable[..., int]:
            return lambda *_: code

        impl = {"clock_time_get": self.clock_time_get, "random_get": self.random_get,
                "fd_close": errno(8), "fd_fdstat_get": errno(8), "fd_seek": errno(8),
                "fd_write": errno(8)}
        return [HostFunc("wasi_snapshot_preview1", n, signature(n), f) for n, f in impl.items()]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = Engine()
    yield eng
    eng.close()


class Snapshots:
    """Capture and restore with the runtime's own snapshot code, pages kept in a dict."""

    def __init__(self, module: wasmtime.Module) -> None:
        self.layout = Layout.of(e.name for e in module.exports)
        self.pages: dict[bytes, bytes] = {}

    def capture(self, inst: Instance):
        image = MemoryImage(inst, self.layout, SnapshotConfig(tracker="hash"), None)
        try:
            manifest, new, _ = image.capture(1, "test", lambda h: h in self.pages)
        finally:
            image.close()
        self.pages.update(new)
        return manifest

    def restore(self, inst: Instance, manifest) -> None:
        restore(inst, manifest, self.layout, lambda hs: ((h, self.pages[h]) for h in hs))


def prepared(engine: Engine, wasm: bytes, **kw) -> wasmtime.Module:
    """asyncify, then deploy-time instrumentation (which exports asyncify's globals too)."""
    return engine.compile(instrument(asyncify(wasm, **kw)).wasm)


def run_with_restores(engine: Engine, module: wasmtime.Module, host: Host, funcs,
                      export: str, args: list[int], *, init: bool = False,
                      size: int = DEFAULT_STACK_SIZE) -> tuple[list, int]:
    """Run ``export`` to the end; at every unwind snapshot, restore into a FRESH instance
    (no _initialize) and continue there. Returns (results, instances used)."""
    snaps = Snapshots(module)
    inst = engine.instantiate(module, funcs(), memory_limit=256 * MIB)
    host.inst = inst
    if init:
        inst.call("_initialize", [], time_limit=LIMIT)
    stack = AsyncStack(inst, size=size)
    host.stack = stack
    used = [1]

    def on_unwind(old: AsyncStack) -> AsyncStack:
        assert old.state() == 0 and old.last_used > 0
        manifest = snaps.capture(old.inst)
        old.inst.close()
        fresh = engine.instantiate(module, funcs(), memory_limit=256 * MIB)
        snaps.restore(fresh, manifest)
        new = AsyncStack(fresh, ptr=old.ptr, size=old.size)
        host.inst, host.stack = fresh, new
        used[0] += 1
        return new

    out = call_stackful(stack, export, args, time_limit=LIMIT, on_unwind=on_unwind)
    return out, used[0]


def uninterrupted(engine: Engine, module: wasmtime.Module, kind: str, export: str,
                  args: list[int], *, init: bool = False) -> list:
    host = Host()
    inst = engine.instantiate(module, getattr(host, kind)(), memory_limit=256 * MIB)
    host.inst = inst
    if init:
        inst.call("_initialize", [], time_limit=LIMIT)
    try:
        return inst.call(export, args, time_limit=LIMIT)
    finally:
        inst.close()


# -- the pure helpers -----------------------------------------------------------


def test_is_stackful() -> None:
    assert is_stackful(["memory", *asy.ASYNCIFY_EXPORTS])
    assert not is_stackful(["memory", *asy.ASYNCIFY_EXPORTS[:4]])


def test_imports_arg() -> None:
    assert imports_arg(DEFAULT_IMPORTS) == (
        "golemish.*,wasi_snapshot_preview1.clock_time_get,wasi_snapshot_preview1.random_get,"
        "wasi_snapshot_preview1.poll_oneoff,wasi_snapshot_preview1.fd_read")
    for bad in [("a,b", "c"), ("@file", "x"), ("m", "a*b")]:
        with pytest.raises(AsyncifyError):
            imports_arg([bad])


def test_missing_tool_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asy, "available_tool", lambda: None)
    with pytest.raises(AsyncifyError, match=r"pip install 'golemish\[stackful\]'"):
        asyncify(wasmtime.wat2wasm("(module)"))


def test_invalid_input_is_refused_before_binaryen_sees_it() -> None:
    # Binaryen exits the process on a module it cannot parse; we must never hand it one.
    with pytest.raises(AsyncifyError, match="not a valid WebAssembly module"):
        asyncify(b"\x00asm\x01\x00\x00\x00\x01\xff")
    with pytest.raises(AsyncifyError, match="core WebAssembly module"):
        asyncify(b"\x00asm\x0d\x00\x01\x00")


@needs_tool
@pytest.mark.parametrize("wat,message", [
    # Binaryen calls exit(1) for these: the child process keeps that away from us.
    ("""(func $g (result i32) (call $x)) (func (export "f") (result i32) (return_call $g))""",
     "tail calls not yet supported in asyncify"),
    ("""(func (export "f") (param $r externref) (result externref)
          (drop (call $x)) (local.get $r))""", "non-number types"),
])
def test_binaryen_fatal_errors_become_asyncify_errors(wat: str, message: str) -> None:
    wasm = wasmtime.wat2wasm(f"""(module (import "golemish" "x" (func $x (result i32)))
                                 (memory 1) {wat})""")
    with pytest.raises(AsyncifyError, match=message) as info:
        asyncify(wasm)
    assert "validator" not in str(info.value)


def test_unknown_feature_is_refused() -> None:
    with pytest.raises(AsyncifyError, match="unknown wasm feature"):
        asyncify(wasmtime.wat2wasm("(module)"), features=("bulk-memry",))


def test_not_asyncified_module_is_refused(engine: Engine) -> None:
    module = engine.compile(wasmtime.wat2wasm(LOOP_WAT))
    inst = engine.instantiate(module, Host().loop_functions(), memory_limit=16 * MIB)
    with pytest.raises(AsyncifyError, match="not asyncified"):
        AsyncStack(inst)


# -- the WAT loop ---------------------------------------------------------------


@pytest.fixture(scope="module")
def loop_module(engine: Engine) -> wasmtime.Module:
    if TOOL is None:
        pytest.skip("no asyncify tool")
    return prepared(engine, wasmtime.wat2wasm(LOOP_WAT))


@needs_tool
def test_asyncified_module_keeps_exports_and_instrument_exports_its_globals(
        engine: Engine, loop_module: wasmtime.Module) -> None:
    names = {e.name for e in loop_module.exports}
    assert {"memory", "run", "deep", "steps", "cabi_realloc"} <= names
    assert is_stackful(names)
    # $heap, $steps, __asyncify_state, __asyncify_data
    assert len(Layout.of(names).globals) == 4


@needs_tool
def test_unwind_snapshot_restore_rewind_equals_uninterrupted(
        engine: Engine, loop_module: wasmtime.Module) -> None:
    expected = uninterrupted(engine, loop_module, "loop_functions", "run", [500])
    host = Host(unwind_before=(137,))
    out, instances = run_with_restores(engine, loop_module, host, host.loop_functions,
                                       "run", [500])
    assert out == expected
    assert instances == 2 and host.unwinds == 1
    assert host.calls == 500  # the unwinding entry performed nothing ...
    assert host.entries == 501  # ... and the rewind entered the import once more
    assert host.inst is not None and host.inst.call("steps", [], time_limit=LIMIT) == [500]


@needs_tool
def test_unwinding_twice_in_one_invocation(engine: Engine, loop_module: wasmtime.Module) -> None:
    expected = uninterrupted(engine, loop_module, "loop_functions", "run", [300])
    host = Host(unwind_before=(0, 1, 299))
    out, instances = run_with_restores(engine, loop_module, host, host.loop_functions,
                                       "run", [300])
    assert out == expected
    assert instances == 4 and host.unwinds == 3
    assert (host.calls, host.entries) == (300, 303)


@needs_tool
def test_rewind_on_the_same_instance(engine: Engine, loop_module: wasmtime.Module) -> None:
    expected = uninterrupted(engine, loop_module, "loop_functions", "run", [50])
    host = Host(unwind_before=(10, 20))
    inst = engine.instantiate(loop_module, host.loop_functions(), memory_limit=16 * MIB)
    host.inst, host.stack = inst, AsyncStack(inst)
    seen: list[int] = []
    out = call_stackful(host.stack, "run", [50], time_limit=LIMIT,
                        on_unwind=lambda s: seen.append(s.state()))
    assert out == expected and seen == [0, 0]


@needs_tool
def test_buffer_usage_grows_with_depth(engine: Engine, loop_module: wasmtime.Module) -> None:
    used = {}
    for depth in (1, 40):
        expected = uninterrupted(engine, loop_module, "loop_functions", "deep", [depth])
        host = Host(unwind_before=(0,))
        inst = engine.instantiate(loop_module, host.loop_functions(), memory_limit=16 * MIB)
        host.inst, host.stack = inst, AsyncStack(inst)
        assert call_stackful(host.stack, "deep", [depth], time_limit=LIMIT) == expected
        used[depth] = host.stack.last_used
    assert 0 < used[1] < used[40]


@needs_tool
def test_too_small_buffer_is_reported(engine: Engine, loop_module: wasmtime.Module) -> None:
    host = Host(unwind_before=(0,))
    inst = engine.instantiate(loop_module, host.loop_functions(), memory_limit=16 * MIB)
    host.inst, host.stack = inst, AsyncStack(inst, size=64)
    with pytest.raises(AsyncStackOverflow, match=r"needed \d+ bytes, the buffer holds 56"):
        call_stackful(host.stack, "deep", [40], time_limit=LIMIT)
    assert host.stack.state() == UNWINDING  # the instance is unusable: throw it away


@needs_tool
def test_buffer_overrunning_memory_end_is_reported(engine: Engine,
                                                   loop_module: wasmtime.Module) -> None:
    host = Host(unwind_before=(0,))
    inst = engine.instantiate(loop_module, host.loop_functions(), memory_limit=16 * MIB)
    end = inst.memory_size()
    host.inst, host.stack = inst, AsyncStack(inst, ptr=end - 64, size=64)
    with pytest.raises(AsyncStackOverflow):
        call_stackful(host.stack, "deep", [2000], time_limit=LIMIT)


@needs_tool
def test_rewind_that_misses_the_import_is_an_error(engine: Engine,
                                                   loop_module: wasmtime.Module) -> None:
    host = Host(unwind_before=(3,))
    inst = engine.instantiate(loop_module, host.loop_functions(), memory_limit=16 * MIB)
    host.inst, host.stack = inst, AsyncStack(inst)
    inst.call("run", [10], time_limit=LIMIT)
    assert host.stack.state() == UNWINDING
    host.stack.stop_unwind()
    host.stack.start_rewind()
    assert host.stack.state() == REWINDING
    with pytest.raises(AsyncifyError, match="returned while rewinding"):
        call_stackful(host.stack, "steps", [], time_limit=LIMIT)


@needs_tool
def test_start_rewind_without_an_unwound_stack_is_an_error(
        engine: Engine, loop_module: wasmtime.Module) -> None:
    inst = engine.instantiate(loop_module, Host().loop_functions(), memory_limit=16 * MIB)
    with pytest.raises(AsyncifyError, match="no unwound stack"):
        AsyncStack(inst).start_rewind()


@needs_tool
def test_asserts_catch_an_unwind_from_an_unlisted_import(engine: Engine) -> None:
    module = prepared(engine, wasmtime.wat2wasm(LOOP_WAT), asserts=True)
    host = Host(unwind_before=(0,))
    inst = engine.instantiate(module, host.loop_functions(), memory_limit=16 * MIB)
    host.inst, host.stack = inst, AsyncStack(inst)
    with pytest.raises(GuestTrap, match="unreachable"):
        inst.call("only_other", [], time_limit=LIMIT)


# -- the journal guest (C, wasi-libc) ---------------------------------------------


@pytest.fixture(scope="module")
def journal(guests: dict[str, Path]) -> bytes:
    return guests["journal"].read_bytes()


@pytest.fixture(scope="module")
def journal_module(engine: Engine, journal: bytes) -> wasmtime.Module:
    if TOOL is None:
        pytest.skip("no asyncify tool")
    return prepared(engine, journal)


@needs_tool
def test_journal_globals_include_stack_pointer_and_asyncify_state(
        journal_module: wasmtime.Module) -> None:
    names = {e.name for e in journal_module.exports}
    assert is_stackful(names)
    assert len(Layout.of(names).globals) == 3  # __stack_pointer, __asyncify_state, __asyncify_data


@needs_tool
@pytest.mark.parametrize("export,n,unwind_before", [
    ("clocks", 1000, (417,)),
    ("clocks", 1000, (1, 500, 999)),
    ("append", 300, (0, 211, 599)),  # two host calls per record
])
def test_journal_resumes_inside_the_call(engine: Engine, journal_module: wasmtime.Module,
                                         export: str, n: int,
                                         unwind_before: tuple[int, ...]) -> None:
    expected = uninterrupted(engine, journal_module, "wasi_functions", export, [n],
                             init=True)
    host = Host(unwind_before=unwind_before)
    out, instances = run_with_restores(engine, journal_module, host, host.wasi_functions,
                                       export, [n], init=True)
    assert out == expected
    assert instances == 1 + len(unwind_before)
    calls = n * (2 if export == "append" else 1)
    assert (host.calls, host.entries) == (calls, calls + len(unwind_before))
    assert host.inst is not None
    if export == "append":
        assert host.inst.call("count", [], time_limit=LIMIT) == [n]
        assert host.inst.call("checksum", [], time_limit=LIMIT) == expected


@needs_tool
def test_journal_state_survives_later_invocations(engine: Engine,
                                                  journal_module: wasmtime.Module) -> None:
    """After a resumed invocation the instance keeps working normally."""
    host = Host(unwind_before=(5,))
    _, _ = run_with_restores(engine, journal_module, host, host.wasi_functions,
                             "append", [10], init=True)
    assert host.inst is not None and host.stack is not None
    assert host.inst.call("append", [5], time_limit=LIMIT)
    assert host.inst.call("count", [], time_limit=LIMIT) == [15]
    host.unwind_before = {host.calls + 3}
    call_stackful(host.stack, "append", [5], time_limit=LIMIT)
    assert host.inst.call("count", [], time_limit=LIMIT) == [20]


@needs_tool
def test_journal_overhead(engine: Engine, journal: bytes, journal_module: wasmtime.Module,
                          capsys: pytest.CaptureFixture[str]) -> None:
    """Code size and run-time cost of asyncify (reported, loosely bounded)."""
    after = instrument(asyncify(journal)).wasm
    plain = engine.compile(instrument(journal).wasm)

    def best(module: wasmtime.Module, reps: int = 5) -> float:
        host = Host()
        inst = engine.instantiate(module, host.wasi_functions(), memory_limit=256 * MIB)
        host.inst = inst
        inst.call("_initialize", [], time_limit=LIMIT)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            inst.call("clocks", [1000], time_limit=LIMIT)
            times.append(time.perf_counter() - t)
        inst.close()
        return min(times)

    t0, t1 = best(plain), best(journal_module)
    with capsys.disabled():
        print(f"\nasyncify journal: {len(journal)} -> {len(after)} bytes "
              f"({len(after) / len(journal) - 1:+.0%}); clocks(1000) {t0 * 1e3:.2f} -> "
              f"{t1 * 1e3:.2f} ms")
    assert len(journal) < len(after) < 2 * len(journal)


@pytest.mark.skipif(asy._wasm_opt() is None, reason="no wasm-opt on PATH (apt-get install "
                    "binaryen, or npm's binaryen); the fallback is not tested")
def test_wasm_opt_fallback(engine: Engine, journal: bytes) -> None:
    module = engine.compile(instrument(asyncify(journal, tool="wasm-opt")).wasm)
    expected = uninterrupted(engine, module, "wasi_functions", "clocks", [200], init=True)
    host = Host(unwind_before=(50, 150))
    out, instances = run_with_restores(engine, module, host, host.wasi_functions,
                                       "clocks", [200], init=True)
    assert out == expected and instances == 3
