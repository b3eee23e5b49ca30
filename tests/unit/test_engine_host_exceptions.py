"""A host function's exception comes back to the thread whose guest called it.

wasmtime-py keeps a host exception in one process-wide slot until the call returns;
with guests on many threads, each must still get its own (a worker's Suspended is
its own, not another worker's, and never a bare trap)."""

from __future__ import annotations

import sys
import threading

import wasmtime

from golemish.runtime.engine import Engine, FuncSig, HostFunc

WAT = """(module (import "h" "boom" (func $boom (param i32)))
  (func (export "run") (param i32) (local.get 0) (call $boom)))"""


class Boom(Exception):
    def __init__(self, n: int) -> None:
        self.n = n


def test_each_thread_gets_its_own_host_exception():
    engine = Engine()
    module = engine.compile(wasmtime.wat2wasm(WAT))

    def boom(n: int) -> None:
        raise Boom(n)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: widen any race
    wrong: list[str] = []
    try:
        def run(k: int) -> None:
            inst = engine.instantiate(module, [HostFunc("h", "boom", FuncSig(("i32",), ()),
                                                        boom)], memory_limit=1 << 20)
            for i in range(300):
                n = k * 1000 + i
                try:
                    inst.call("run", [n], time_limit=10)
                    wrong.append(f"{n}: no exception")
                except Boom as e:
                    if e.n != n:
                        wrong.append(f"{n}: got thread {e.n // 1000}'s {e.n}")
                except Exception as e:
                    wrong.append(f"{n}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
        engine.close()
    assert wrong == []
