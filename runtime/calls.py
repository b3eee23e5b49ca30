"""Worker-to-worker calls (the host API's ``call`` and ``call-wave``), part of Runtime.

A call runs the callee's invocation in the caller's thread under the callee's turn,
at most once per idempotency key; the chain of callers on this thread, and the
turns' own cycle check across threads, refuse a call cycle instead of deadlocking.
"""

from __future__ import annotations

import struct
from typing import Any

from .errors import GolemishError
from .locks import CallCycle


class WorkerCalls:
    """Runtime's worker-to-worker calls (a mixin: it uses the Runtime's turns, worker
    cache and signatures)."""

    _calls: Any
    _turns: Any

    def call_worker(self, caller: str, callee: str, function: str, args: list[int],
                    key: str) -> list[int]:
        """A worker-to-worker call, run at most once per key on the callee."""
        stack = getattr(self._calls, "stack", [])
        if callee == caller or callee in stack:
            raise LookupError(f"call cycle: {' -> '.join([*stack, caller, callee])}")
        try:
            sig = self.signature(callee, function)
        except GolemishError as e:
            raise LookupError(str(e)) from None
        if len(args) != len(sig.params):
            raise LookupError(f"{callee} {function} takes {len(sig.params)} arguments")
        params = [(t, _from_i64(t, v)) for t, v in zip(sig.params, args)]
        self._calls.stack = [*stack, caller]
        try:
            with self._turns.hold(callee):
                w = self._get(callee, None, create=True)
                res = w.invoke(function, params, key)
        except CallCycle as e:  # a cycle through another thread's call chain
            raise LookupError(str(e)) from None
        finally:
            self._calls.stack = stack
        return [_to_i64(t, v) for t, v in res.results]

    def call_worker_wave(self, caller: str, callee: str, call: str, key: str) -> str:
        """A typed worker-to-worker call: WAVE call text in, WAVE result text out."""
        stack = getattr(self._calls, "stack", [])
        if callee == caller or callee in stack:
            raise LookupError(f"call cycle: {' -> '.join([*stack, caller, callee])}")
        try:
            function, params = self.prepare(callee, call, ())
        except GolemishError as e:
            raise LookupError(str(e)) from None
        self._calls.stack = [*stack, caller]
        try:
            with self._turns.hold(callee):
                res = self._get(callee, None, create=True).invoke(function, params, key)
        except CallCycle as e:
            raise LookupError(str(e)) from None
        finally:
            self._calls.stack = stack
        return " ".join(str(v) for _, v in res.results)


def _from_i64(ty: str, v: int) -> int | float:
    """Worker-to-worker values travel as i64; floats as their IEEE-754 bits."""
    if ty == "i32":
        v &= 0xFFFFFFFF
        return v - (1 << 32) if v >= 1 << 31 else v
    if ty == "f32":
        return struct.unpack("<f", struct.pack("<I", v & 0xFFFFFFFF))[0]
    if ty == "f64":
        return struct.unpack("<d", struct.pack("<q", v))[0]
    return v


def _to_i64(ty: str, v: int | float) -> int:
    if ty == "f32":
        return struct.unpack("<I", struct.pack("<f", v))[0]
    if ty == "f64":
        return struct.unpack("<q", struct.pack("<d", v))[0]
    return int(v)
