"""Mid-call snapshots for stackful (asyncified) components.

A stackful worker can snapshot in the middle of a long invocation. At a host
call the policy picks, the host asks the guest to unwind (Binaryen Asyncify):
the guest's call stack is written into a buffer in linear memory and the
export returns. Memory and globals are then captured like any snapshot, the
stack with them. The runtime rewinds at once (the export is called again with
the same arguments; the guest rebuilds its stack and re-enters the same host
call, which now runs for real), so the invocation goes on in this process.

Recovery restores such a snapshot, rewinds into the interrupted call and
answers the remaining host calls from the oplog tail: no replay of the steps
before it. A worker that must wait (a pending promise, a long sleep) unwinds,
snapshots and releases everything; when it may continue it is restored and
rewound directly, with no replay at all.

After every rewind the buffer and asyncify's own globals are put back as they
were before the unwind, so an instance that unwound is byte for byte the same
as one that never did (snapshot + tail, full replay and a crash-free run agree).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..engine import HostFunc, Instance
from ..errors import Suspended
from . import asyncify
from .async_stack import AsyncStack, call_stackful, DEFAULT_STACK_SIZE

if TYPE_CHECKING:
    from ..worker import Worker

STACK_SIZE = DEFAULT_STACK_SIZE


def unwindable(module: str, name: str) -> bool:
    """Whether the deploy-time transform lets this import unwind (see asyncify)."""
    for mod, pattern in asyncify.DEFAULT_IMPORTS:
        if mod == module and (pattern == name or
                              (pattern.endswith("*") and name.startswith(pattern[:-1]))):
            return True
    return False


class Stackful:
    """The unwind/rewind side of one stackful worker's live instance."""

    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.stack: AsyncStack | None = None
        #: A rewind is under way: the next unwindable host call is its re-entry.
        self.rewinding = False
        #: Why the guest is unwinding: "policy" (snapshot and go on) or a Suspended.
        self.pending: str | Suspended | None = None
        #: The InvokeStart index of the running invocation, and the oplog index the
        #: current host call began at (where a restored snapshot's tail starts).
        self.invocation = 0
        self.entry_index = 0
        self.invocation_t0 = 0.0
        self.calls = 0  # live host calls since the last mid-call snapshot
        #: Live host calls of the running invocation since it began or was snapshotted
        #: (what the adaptive policy's replay estimate counts, beside its running time).
        self.in_call = 0
        self._saved_globals: dict[str, tuple[str, int]] = {}
        #: Inside :meth:`call`: only there may a host call unwind (never in a nested
        #: call such as the allocator, a post-return function or ``_initialize``).
        self.active = False
        #: The core arguments of the running typed (WIT) call: lowered into guest
        #: memory once, so a resumed call must reuse them. None for a core export.
        self.core_args: list[int | float] | None = None
        #: Set by a restore of a mid-call snapshot of a typed call: its core arguments.
        self.resume_args: list[int | float] | None = None

    # -- set-up ------------------------------------------------------------------
    def attach(self, inst: Instance, ptr: int | None = None, size: int = STACK_SIZE) -> None:
        """Bind to an instance; a new buffer is allocated (and zeroed) when ptr is None.

        Allocation calls the guest's allocator, so it happens at the same point on
        every path that builds the instance from Create (live and replay alike).
        """
        self.stack = AsyncStack(inst, ptr=ptr, size=size)
        if ptr is None:
            inst.zero(self.stack.ptr, size)
        self.rewinding = False
        self.pending = None

    def wrap(self, funcs: Sequence[HostFunc]) -> list[HostFunc]:
        return [HostFunc(f.module, f.name, f.sig, self._wrapped(f.func))
                if unwindable(f.module, f.name) else f for f in funcs]

    def state(self) -> list[int] | None:
        return None if self.stack is None else [self.stack.ptr, self.stack.size]

    # -- the host side -------------------------------------------------------------
    def _wrapped(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            if self.rewinding:
                assert self.stack is not None
                self.stack.stop_rewind()
                self.rewinding = False
                self._reset_after_rewind()
                return fn(*args)  # the real call: the first entry only unwound
            j = self.w.journal
            live = (self.active and not j.replaying and self.w.durable
                    and self.stack is not None)
            if live:
                self.entry_index = j.oplog.last_index + 1
                self.calls += 1
                self.in_call += 1
                if self.w.midcall_due(self):
                    return self._unwind("policy")
            try:
                return fn(*args)
            except Suspended as e:
                if live and not self.w.journal.replaying:
                    return self._unwind(e)
                raise
        return call

    def _unwind(self, why: str | Suspended) -> int:
        assert self.stack is not None
        inst = self.stack.inst
        names = self.w.layout.globals
        before = {n: inst.get_global(n) for n in names}
        self.stack.start_unwind()
        # asyncify's own state globals are the ones start_unwind changed: put them back
        # after the rewind so the instance matches one that never unwound.
        self._saved_globals = {n: v for n, v in before.items() if inst.get_global(n) != v}
        self.pending = why
        return 0  # a dummy result the guest never sees

    def _reset_after_rewind(self) -> None:
        assert self.stack is not None
        inst = self.stack.inst
        inst.zero(self.stack.ptr, self.stack.size)
        for name, (ty, bits) in self._saved_globals.items():
            inst.set_global(name, ty, bits)

    # -- the export side -------------------------------------------------------------
    def call(self, function: str, args: Sequence[int | float], limit: float) -> list[Any]:
        assert self.stack is not None
        self.invocation_t0 = time.perf_counter()
        self.in_call = 0
        self.active = True
        try:
            return call_stackful(self.stack, function, args, time_limit=limit,
                                 on_unwind=self._on_unwind)
        finally:
            self.active = False

    def _on_unwind(self, stack: AsyncStack) -> None:
        why, self.pending = self.pending, None
        self.w.snapshot_midcall(self.invocation, self.entry_index)
        if isinstance(why, Suspended):
            raise why  # released: it continues from the snapshot, with no replay
        self.rewinding = True

    def resume(self) -> None:
        """After a restore of a mid-call snapshot: the next call of the export rewinds."""
        assert self.stack is not None
        self.stack.start_rewind()
        self.rewinding = True
