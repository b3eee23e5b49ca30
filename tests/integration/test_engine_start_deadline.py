"""A start function that runs past an epoch slice in an interruptible engine.

Before any call sets a deadline the instance's deadline is +inf; the epoch
callback computed ``int(inf)`` and raised OverflowError inside a ctypes
callback, which crashed the process (SIGSEGV) instead of letting the start
function finish. Python workers' interpreter module hit it intermittently.
"""

from __future__ import annotations

import wasmtime

from golemish.runtime.engine import Engine

# A start function that spins ~3e8 iterations: several epoch slices.
SPIN = wasmtime.wat2wasm('''
(module
  (global $g (mut i32) (i32.const 0))
  (func $spin (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 300000000))))
    (global.set $g (local.get $i)))
  (func (export "get") (result i32) (global.get $g))
  (start $spin))
''')


def test_start_function_longer_than_a_slice_completes() -> None:
    engine = Engine()
    engine.catch_signals()
    try:
        engine._start_ticker()
        inst = engine.instantiate(engine.compile(SPIN), [], memory_limit=1 << 20)
        assert inst.call("get", [], time_limit=5.0) == [300000000]
        inst.close()
    finally:
        engine.close()
