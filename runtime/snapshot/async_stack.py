"""Run time of stackful invocations: unwinding and rewinding an asyncified instance.

An *asyncified* module can unwind its wasm call stack into a buffer in its own
linear memory and rebuild it later. golemish uses that to snapshot inside an
invocation, at a host call, with no replay afterwards:

1. a host function that wants to pause calls :meth:`AsyncStack.start_unwind`
   and returns a dummy value of its result type (0). The guest unwinds: every
   instrumented frame saves its locals and call position into the buffer and
   returns, until the export the host called returns (a meaningless value);
2. the host calls :meth:`AsyncStack.stop_unwind`. Memory and the mutable
   globals now hold the whole invocation (the wasm stack in the buffer, C's
   shadow stack and ``__stack_pointer`` as they were at the host call, and
   asyncify's own ``__asyncify_state``/``__asyncify_data`` globals), so a
   normal snapshot (``snapshots.MemoryImage.capture``) captures it;
3. later, possibly in another process: restore the snapshot into a fresh
   instance (``_initialize`` not run), bind an :class:`AsyncStack` to it with
   the *same buffer pointer*, call :meth:`AsyncStack.start_rewind` and call the
   *same export with the same arguments*. The guest skips forward through its
   frames, restoring their locals, until it re-enters the import that unwound;
4. **that import is entered a second time.** Its host function sees
   ``state() == REWINDING``, calls :meth:`AsyncStack.stop_rewind` and only now
   does its work and returns the real answer. The runtime must count the two
   entries as ONE host call: the first one did nothing but unwind (it must not
   record, perform or consume anything), the second is the call. The helper
   :meth:`AsyncStack.resuming` does the state check and the stop in one step.

:func:`call_stackful` runs that loop for one invocation.

The buffer
----------
Layout per Binaryen (wasm32): at ``ptr`` an i32 *current position* and an i32
*end*, then the stack area ``[ptr + 8, end)``. Unwinding pushes, for each frame
being unwound, the call index and the live locals, upwards from ``ptr + 8``;
rewinding pops them back. **Binaryen does no bounds check while unwinding**:
a buffer that is too small is overrun (guest memory after it is overwritten)
and only ``asyncify_stop_unwind`` notices and traps with ``unreachable``.
:meth:`AsyncStack.stop_unwind` reads the header first and raises
:class:`AsyncStackOverflow` (a :class:`GuestTrap`: the invocation fails and the
instance must be thrown away, since memory after the buffer may be damaged).
:meth:`AsyncStack.used` says how much an unwind took, to size buffers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import GuestTrap
from .asyncify import ASYNCIFY_EXPORTS, AsyncifyError

if TYPE_CHECKING:
    from ..engine import Instance

#: Values of ``asyncify_get_state()``.
NORMAL, UNWINDING, REWINDING = 0, 1, 2
#: Default size of the unwind buffer (header included).
DEFAULT_STACK_SIZE = 64 * 1024
_HEADER = struct.Struct("<II")  # current position, end
#: Time limit of the calls to asyncify_* made between calls into the guest.
_CONTROL_TIME_LIMIT = 1.0


class AsyncStackOverflow(GuestTrap):
    """An unwind needed more than the buffer holds. Memory after the buffer was overrun."""

    reason = "trap"


class AsyncStack:
    """Drives unwinding and rewinding of one instance of an asyncified module.

    ``ptr``: where the buffer is (at least 8-byte aligned, ``size`` bytes, header
    included). Without it the buffer is allocated with the guest's
    ``cabi_realloc`` export (so the guest's allocator owns it and never hands it
    out again). A buffer lives in guest memory and so in every snapshot: an
    :class:`AsyncStack` for an instance restored from a snapshot taken during an
    unwind must be given the same ``ptr`` (and size) — keep them with the
    snapshot, e.g. in the manifest's host bytes.

    Allocation calls into the guest (it changes the guest's heap), so do it at
    a deterministic moment — at worker creation, right after ``_initialize``,
    whether or not the worker ever unwinds — so that a replay from Create
    reproduces it; never lazily in the middle of an invocation. Any call into
    the guest (``call_nested``) must happen in the NORMAL state, never while
    unwinding or rewinding.
    """

    def __init__(self, inst: Instance, ptr: int | None = None,
                 size: int = DEFAULT_STACK_SIZE) -> None:
        if size < 64 or size % 8:
            raise ValueError("the asyncify buffer needs a size that is a multiple of 8, >= 64")
        if not all(inst.has_export(n) for n in ASYNCIFY_EXPORTS):
            raise AsyncifyError("the module is not asyncified (no asyncify_* exports); "
                                "run golemish.runtime.snapshot.asyncify.asyncify on it at deploy")
        self.inst = inst
        self.size = size
        if ptr is None:
            if not inst.has_export("cabi_realloc"):
                raise AsyncifyError("the guest exports no cabi_realloc to allocate the "
                                    "asyncify buffer with; pass a pointer instead")
            ptr = int(inst.call_nested("cabi_realloc", [0, 0, 16, size]))
            if ptr == 0:
                raise AsyncifyError(f"cabi_realloc could not allocate {size} bytes for the "
                                    "asyncify buffer")
        if ptr % 8 or not inst.check(ptr, size):
            raise AsyncifyError(f"asyncify buffer [{ptr}, {ptr + size}) is misaligned or "
                                "outside linear memory")
        self.ptr = ptr
        #: How many bytes the last unwind used (header excluded).
        self.last_used = 0

    # -- the header -------------------------------------------------------------
    def _header(self) -> tuple[int, int]:
        return _HEADER.unpack(self.inst.read(self.ptr, _HEADER.size))

    def used(self) -> int:
        """Bytes of stack data in the buffer now (after an unwind: what it took)."""
        cur, _ = self._header()
        return cur - (self.ptr + _HEADER.size)

    # -- the five operations ----------------------------------------------------
    # Inside a host function they are nested calls under the invocation's deadline;
    # between calls (stop_unwind, start_rewind) each gets a fresh one, so an invocation
    # that returned just before its deadline can still be inspected.
    def _between_calls(self, name: str, args: Sequence[int]) -> list[Any]:
        return self.inst.call(name, args, time_limit=_CONTROL_TIME_LIMIT)

    def state(self) -> int:
        """NORMAL (0), UNWINDING (1) or REWINDING (2). Works inside host functions too."""
        return int(self.inst.call_nested("asyncify_get_state", []))

    def state_between_calls(self) -> int:
        """The state, asked between calls into the guest (after an export returned)."""
        return int(self._between_calls("asyncify_get_state", [])[0])

    def start_unwind(self) -> None:
        """From inside a host function for a listed import: begin unwinding.

        Afterwards the host function must return at once, with a dummy value of
        its result type (0); the value is never seen by guest code. It must not
        perform, record or consume anything: the import is entered again on rewind
        and that second entry is the real call.
        """
        self.inst.write(self.ptr, _HEADER.pack(self.ptr + _HEADER.size, self.ptr + self.size))
        self.inst.call_nested("asyncify_start_unwind", [self.ptr])

    def stop_unwind(self) -> None:
        """After the export returned in state UNWINDING: the stack is in the buffer.

        Raises :class:`AsyncStackOverflow` if the unwind ran past the buffer's end
        (Binaryen does not check while unwinding: memory after the buffer has been
        overwritten, so the instance must be discarded).
        """
        cur, end = self._header()
        used = cur - (self.ptr + _HEADER.size)
        if cur > end:
            raise AsyncStackOverflow(
                f"the asyncify unwind needed {used} bytes, the buffer holds "
                f"{self.size - _HEADER.size}; guest memory after the buffer (at {end}) was "
                "overwritten, so the invocation fails; use a bigger buffer")
        self.last_used = used
        self._between_calls("asyncify_stop_unwind", [])

    def start_rewind(self) -> None:
        """Before calling the export that unwound again, with the same arguments."""
        cur, end = self._header()
        if end != self.ptr + self.size or not self.ptr + _HEADER.size < cur <= end:
            raise AsyncifyError(f"no unwound stack in the buffer at {self.ptr} (size "
                                f"{self.size}): wrong pointer or size, or nothing unwound")
        self._between_calls("asyncify_start_rewind", [self.ptr])

    def stop_rewind(self) -> None:
        """Inside the re-entered host function: the stack is rebuilt, run normally."""
        self.inst.call_nested("asyncify_stop_rewind", [])

    def resuming(self) -> bool:
        """For host functions: True (after stop_rewind) if this entry is the re-entry
        after a rewind, i.e. the second entry of the call that unwound."""
        if self.state() == REWINDING:
            self.stop_rewind()
            return True
        return False


def call_stackful(stack: AsyncStack, name: str, args: Sequence[int | float], *,
                  time_limit: float,
                  on_unwind: Callable[[AsyncStack], AsyncStack | None] | None = None,
                  ) -> list[Any]:
    """Call an export of an asyncified instance, resuming it after every unwind.

    Call; if the export returned while UNWINDING: ``stop_unwind``, then
    ``on_unwind(stack)`` — snapshot it there, or restore the snapshot into a fresh
    instance and return an :class:`AsyncStack` bound to it (same ``ptr``) to
    continue there; None continues on the same instance — then ``start_rewind``
    and call the same export with the same arguments again. Repeats until the
    export returns normally; returns its results. ``time_limit`` applies to each
    call separately.

    If the export returns while still REWINDING, the rewind never reached the
    import that unwound (another export or other arguments, or the host function
    did not call stop_rewind): :class:`AsyncifyError`.
    """
    while True:
        try:
            out = stack.inst.call(name, args, time_limit=time_limit)
        except GuestTrap as e:
            # An unwind that overran the buffer up to the end of linear memory traps
            # out of bounds on the way out.
            try:
                unwinding = stack.state_between_calls() == UNWINDING
            except Exception:
                unwinding = False
            if unwinding:
                raise AsyncStackOverflow(f"{e} while unwinding: the asyncify buffer of "
                                         f"{stack.size} bytes is too small") from None
            raise
        state = stack.state_between_calls()
        if state == NORMAL:
            return out
        if state == REWINDING:
            raise AsyncifyError(f"{name} returned while rewinding: the rewind did not reach "
                                "the import that unwound (same export and arguments? did the "
                                "host function call stop_rewind?)")
        stack.stop_unwind()
        if on_unwind is not None:
            stack = on_unwind(stack) or stack
        stack.start_rewind()
