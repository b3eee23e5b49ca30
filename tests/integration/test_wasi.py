"""WASI preview 1 host functions, called from hand-written modules."""

from __future__ import annotations

import time

import pytest
import wasmtime

from golemish.oplog import HostCall, InvokeFailed, Log
from golemish.runtime.errors import GuestExit, InvalidModuleError, MissingImportsError

P = "wasi_snapshot_preview1"

# Each export calls one WASI function with fixed arguments and returns its errno.
PROBE = f"""
(module
  (import "{P}" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "{P}" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "{P}" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "{P}" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "{P}" "fd_seek" (func $seek (param i32 i64 i32 i32) (result i32)))
  (import "{P}" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "{P}" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "{P}" "random_get" (func $random (param i32 i32) (result i32)))
  (import "{P}" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "{P}" "environ_get" (func $env_get (param i32 i32) (result i32)))
  (import "{P}" "args_sizes_get" (func $arg_sizes (param i32 i32) (result i32)))
  (import "{P}" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "{P}" "sched_yield" (func $yield (result i32)))
  (import "{P}" "proc_exit" (func $exit (param i32)))
  (import "{P}" "sock_send" (func $sock_send (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 200) "hi\\n")
  (global $g (mut i32) (i32.const 0))
  (func (export "write_fd") (param $fd i32) (result i32)
    (i32.store (i32.const 16) (i32.const 200)) (i32.store (i32.const 20) (i32.const 3))
    (call $fd_write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24)))
  (func (export "write_oob") (result i32)
    (i32.store (i32.const 16) (i32.const 65530)) (i32.store (i32.const 20) (i32.const 100))
    (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
  (func (export "read_stdin") (result i32)
    (i32.store (i32.const 16) (i32.const 300)) (i32.store (i32.const 20) (i32.const 10))
    (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
    (i32.load (i32.const 24)))
  (func (export "open") (param $fd i32) (result i32)
    (call $path_open (local.get $fd) (i32.const 0) (i32.const 200) (i32.const 2) (i32.const 0)
      (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 40)))
  (func (export "prestat") (param $fd i32) (result i32) (call $prestat (local.get $fd) (i32.const 40)))
  (func (export "seek") (param $fd i32) (result i32)
    (call $seek (local.get $fd) (i64.const 0) (i32.const 0) (i32.const 40)))
  (func (export "filetype") (param $fd i32) (result i32)
    (if (result i32) (call $fdstat (local.get $fd) (i32.const 40))
      (then (i32.const -1)) (else (i32.load8_u (i32.const 40)))))
  (func (export "clock") (param $id i32) (result i32)
    (call $clock (local.get $id) (i64.const 1) (i32.const 48)))
  (func (export "clock_oob") (result i32) (call $clock (i32.const 0) (i64.const 1) (i32.const 65533)))
  (func (export "random_oob") (result i32) (call $random (i32.const 65000) (i32.const 1000)))
  (func (export "env_count") (result i32)
    (drop (call $env_sizes (i32.const 56) (i32.const 60))) (i32.load (i32.const 56)))
  (func (export "env_first_byte") (result i32)
    (drop (call $env_get (i32.const 400) (i32.const 500))) (i32.load8_u (i32.load (i32.const 400))))
  (func (export "arg_count") (result i32)
    (drop (call $arg_sizes (i32.const 56) (i32.const 60))) (i32.load (i32.const 56)))
  (func (export "sleep_ms") (param $ms i64) (result i32)
    ;; one relative monotonic clock subscription at 1000
    (memory.fill (i32.const 1000) (i32.const 0) (i32.const 48))
    (i64.store (i32.const 1000) (i64.const 77))
    (i32.store8 (i32.const 1008) (i32.const 0))
    (i32.store (i32.const 1016) (i32.const 1))
    (i64.store (i32.const 1024) (i64.mul (local.get $ms) (i64.const 1000000)))
    (drop (call $poll (i32.const 1000) (i32.const 2000) (i32.const 1) (i32.const 2100)))
    ;; userdata of the event, which must be 77
    (i32.wrap_i64 (i64.load (i32.const 2000))))
  (func (export "yield") (result i32) (call $yield))
  (func (export "exit") (param $code i32) (global.set $g (i32.const 9)) (call $exit (local.get $code)))
  (func (export "g") (result i32) (global.get $g))
  (func (export "sock") (param $fd i32) (result i32)
    (call $sock_send (local.get $fd) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 40))))
"""


@pytest.fixture
def rt(make_runtime):
    rt = make_runtime()
    rt.deploy(wasmtime.wat2wasm(PROBE), "probe")
    return rt


def call(rt, fn, *args, **kw):
    return [v for _, v in rt.invoke("probe/p", fn, [str(a) for a in args], **kw).results]


def test_stdout_and_stderr_become_log_entries(rt, output):
    assert call(rt, "write_fd", 1, output=output) == [0]
    assert call(rt, "write_fd", 2, output=output) == [0]
    assert output.chunks == [(1, b"hi\n"), (2, b"hi\n")]
    logs = [e for _, e in rt.oplog("probe/p") if isinstance(e, Log)]
    assert [(e.stream, e.data) for e in logs] == [(1, b"hi\n"), (2, b"hi\n")]


@pytest.mark.parametrize("fn, arg, errno", [
    ("write_fd", 0, 8), ("write_fd", 7, 8),          # EBADF
    ("open", 3, 8), ("open", 0, 54),                 # no preopens: EBADF, stdio: ENOTDIR
    ("prestat", 3, 8),                               # libc stops looking for preopens
    ("seek", 1, 70), ("seek", 9, 8),                 # ESPIPE on stdio
    ("clock", 9, 28),                                # EINVAL: unknown clock
    ("sock", 1, 57), ("sock", 5, 8),                 # ENOTSOCK / EBADF
])
def test_errno_for_calls_without_a_target(rt, fn, arg, errno):
    assert call(rt, fn, arg) == [errno]


def test_bad_pointers_get_efault_not_a_crash(rt):
    assert call(rt, "write_oob") == [21]
    assert call(rt, "clock_oob") == [21]
    assert call(rt, "random_oob") == [21]


def test_stdio_descriptors_are_character_devices(rt):
    assert call(rt, "filetype", 1) == [2]
    assert call(rt, "filetype", 5) == [-1]


def test_stdin_is_empty_and_recorded(rt):
    assert call(rt, "read_stdin") == [0]
    assert any(isinstance(e, HostCall) and e.name == "fd_read" for _, e in rt.oplog("probe/p"))


def test_environment_is_fixed_at_create(rt):
    assert call(rt, "env_count", env=[("GREETING", "hello"), ("B", "2")]) == [2]
    assert call(rt, "env_first_byte") == [ord("G")]
    assert call(rt, "arg_count") == [0]


def test_poll_oneoff_sleeps_live_and_not_on_replay(rt, make_runtime):
    t0 = time.monotonic()
    assert call(rt, "sleep_ms", 200) == [77]
    assert time.monotonic() - t0 >= 0.2
    rt.close()
    rt2 = make_runtime()
    t0 = time.monotonic()
    rt2.resume("probe/p")
    assert time.monotonic() - t0 < 0.2


def test_sched_yield(rt):
    assert call(rt, "yield") == [0]


def test_proc_exit_ends_the_invocation_and_rolls_back(rt):
    with pytest.raises(GuestExit, match=r"proc_exit\(3\)"):
        call(rt, "exit", 3)
    assert call(rt, "g") == [0]
    failed = [e for _, e in rt.oplog("probe/p") if isinstance(e, InvokeFailed)]
    assert failed[0].reason == "exit"


def test_deploy_lists_every_missing_import(make_runtime):
    mod = wasmtime.wat2wasm(f"""
      (module
        (import "golemish" "teleport" (func (param i32)))
        (import "{P}" "fd_write" (func (param i32) (result i32)))
        (import "{P}" "not_a_call" (func))
        (import "env" "table" (table 1 funcref)))""")
    with pytest.raises(MissingImportsError) as e:
        make_runtime().deploy(mod, "needy")
    assert e.value.missing == [
        "golemish.teleport",
        f"{P}.fd_write (imported as (i32) -> i32, host has (i32, i32, i32, i32) -> i32)",
        f"{P}.not_a_call",
        "env.table (table imports are not supported)",
    ]


def test_invalid_wasm_is_refused(make_runtime):
    with pytest.raises(InvalidModuleError, match="not a valid WebAssembly module"):
        make_runtime().deploy(b"\0asm\x01\0\0\0garbage", "bad")
