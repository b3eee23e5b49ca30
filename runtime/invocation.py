"""One invocation of a worker: record InvokeStart, run the export with the journal live,
record InvokeEnd (or InvokeFailed, after which the instance is thrown away, DESIGN.md
invariant 5); and the recorded outcome of an invocation an idempotency key names.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from golemish.oplog import GolemishError, InvokeEnd, InvokeFailed, InvokeStart, TypedValue

from .errors import (
    ArgumentError, DivergenceError, Interrupted, InvocationFailed, Suspended,
    WorkerSuspendedError,
)
from .journal import describe
from .typed.values import format_value, same_values, typed

if TYPE_CHECKING:
    from .engine import Instance
    from .worker import Worker
    from .worker_recovery import RecoveryReport


@dataclass
class InvocationResult:
    function: str
    results: list[TypedValue]
    index: int  # oplog index of the InvokeStart
    seconds: float
    recovery: RecoveryReport | None = field(default=None)
    #: True when an idempotency key matched: the recorded result, nothing ran.
    deduplicated: bool = False
    #: The result as JSON, for functions of a WIT interface.
    json: Any = None


def execute(w: Worker, function: str, params: Sequence[TypedValue],
             limit: float) -> list[TypedValue]:
    """Call the export (through the Canonical ABI for a WIT function)."""
    inst = w.instance
    assert inst is not None
    func = w.iface.find(function) if w.iface is not None else None
    if func is not None:
        assert w.iface is not None
        if w.midcall is None or not w.durable:
            results, w.last_json = w.iface.run(inst, func, params, limit)
            return results
        return execute_typed_stackful(w, inst, func, params, limit)
    args = [v for _, v in params]
    if w.midcall is not None and w.durable:
        values = w.midcall.call(function, args, limit)
    else:
        values = inst.call(function, args, time_limit=limit)
    w.last_json = None
    return typed(w.signatures[function].results, values)


def execute_typed_stackful(w: Worker, inst: Instance, func: Any, params: Sequence[TypedValue],
                            limit: float) -> list[TypedValue]:
    """A WIT function of a stackful worker: its core export may unwind mid-call.

    The arguments are lowered into guest memory once; a mid-call snapshot records
    the core arguments, and a call resumed from one reuses them instead of lowering
    again (that would allocate in the guest a second time).
    """
    sf = w.midcall
    assert sf is not None and w.iface is not None
    lowered, sf.resume_args = sf.resume_args, None

    def lowered_now(args: list[int | float]) -> None:
        sf.core_args = args

    try:
        results, w.last_json = w.iface.run(
            inst, func, params, limit, lowered=lowered, on_lowered=lowered_now,
            call_export=lambda name, args: sf.call(name, args, limit))
    finally:
        sf.core_args = None
    return results


def run(w: Worker, function: str, params: Sequence[TypedValue],
         limits: tuple[int, float]) -> list[TypedValue]:
    """Run the body of an invocation whose InvokeStart is recorded; record its end."""
    t0 = time.perf_counter_ns()
    try:
        assert w.instance is not None
        w.instance.set_memory_limit(limits[0])
        results = execute(w, function, params, limits[1])
    except InvocationFailed as e:
        w.discard()
        w.journal.append(InvokeFailed(e.reason, str(e)))
        if isinstance(e, Interrupted):
            # Abandoned like `worker interrupt` does: the state is from before it.
            e.worker_id, e.function = w.id, function
        raise
    except Suspended as e:
        # The invocation stays open in the oplog; its state is rebuilt on resume.
        # What it waits on (a sleep's deadline) is committed with the metadata that
        # says so: the waker and promise completers act on that.
        w.discard()
        w._set_meta(status="suspended", suspended=e.as_meta(), commit=True)
        if e.until_ns is not None:
            for tell in w.rt.sleep_listeners:
                tell(w.id, e.until_ns)
        raise
    except DivergenceError:
        raise
    except GolemishError:
        w.discard()
        raise
    except Exception as e:  # a host function bug must not leave the invocation open
        w.discard()
        failure = InvocationFailed(f"host error: {type(e).__name__}: {e}")
        w.journal.append(InvokeFailed("host-error", str(failure)))
        raise failure from e
    except BaseException:
        # KeyboardInterrupt without catch_signals: the instance may be half-way
        # through; like a crash, the open invocation is finished by recovery.
        w.discard()
        raise
    if w.journal.replaying:
        left = w.journal.pending()
        if left is not None:
            raise DivergenceError(w.id, left[0], describe(left[1]),
                                  "nothing more (the guest had returned)")
        # Every recorded call was consumed and the guest returned: the crash came
        # just before the end was recorded. Whatever follows is live.
        w.journal.go_live()
    w.journal.append(InvokeEnd(tuple(results), time.perf_counter_ns() - t0))
    w.rt.crash.hit("after-invocation")
    return results


def recorded_result(w: Worker, index: int, function: str, key: str,
                    params: Sequence[TypedValue] = ()) -> InvocationResult:
    """The outcome of the invocation recorded at ``index`` (an idempotency key hit).

    Only the same call gets it: a key reused for another function or other
    arguments is refused, as payment APIs do, rather than answered with the
    result of a call that was not asked for.
    """
    start = w.oplog.get(index)
    if not isinstance(start, InvokeStart) or start.function != function \
            or not same_values(start.params, params):
        recorded = (f"{start.function}({', '.join(map(format_value, start.params))})"
                    if isinstance(start, InvokeStart) else f"oplog index {index}")
        raise ArgumentError(
            f"idempotency key {key!r} was already used for {recorded} on {w.id}, "
            f"not {function}({', '.join(map(format_value, params))}); use a new key")
    for _, entry in w.oplog.read_kinds(_BOUNDS, index + 1):
        if isinstance(entry, InvokeEnd):
            return InvocationResult(function, list(entry.results), index, 0.0,
                                    deduplicated=True,
                                    json=result_json(w, function, entry.results))
        if isinstance(entry, InvokeFailed):
            raise InvocationFailed(f"{entry.message} (recorded for idempotency key {key!r})")
        if isinstance(entry, InvokeStart):
            break
    susp = w.meta.get("suspended") or {}
    raise WorkerSuspendedError(w.id, **susp) if susp else \
        InvocationFailed(f"the invocation with idempotency key {key!r} has no outcome")


#: What ends or follows an invocation; its host calls between (10,000 in a long one)
#: are skimmed, not decoded, when an idempotency key's outcome is looked up.
_BOUNDS = frozenset({InvokeEnd.KIND, InvokeFailed.KIND, InvokeStart.KIND})


def result_json(w: Worker, function: str, results: Sequence[TypedValue]) -> Any:
    """The JSON form of a recorded WIT result, as a live call would give it."""
    func = w.iface.find(function) if w.iface is not None else None
    if func is None or func.result is None or len(results) != 1:
        return None
    from .typed import wave  # WAVE only for components with a WIT interface
    from .typed.wave_json import to_json
    return to_json(wave.parse(str(results[0][1]), func.result), func.result)


def invoke(w: Worker, function: str, params: Sequence[TypedValue],
           idempotency_key: str | None = None) -> InvocationResult:
    t0 = time.perf_counter()
    recovery = w.ensure_ready()
    if idempotency_key is not None:
        seen = w.rt.store.idempotent_index(w.id, idempotency_key)
        if seen is not None:
            return recorded_result(w, seen, function, idempotency_key, params)
    limits = (w.memory_limit, w.time_limit)
    changed = (0, 0.0) if limits == w.created_limits else limits
    start = w.journal.append_invocation(
        InvokeStart(function, tuple(params), idempotency_key, w.rt.clock.time_ns(),
                    *changed),
        idempotency_key)
    w.rt.crash.hit("before-invocation")
    if w.midcall is not None:
        w.midcall.invocation = start
    t_run = time.perf_counter()
    try:
        results = run(w, function, params, limits)
    except DivergenceError as e:
        w.discard()
        w._fail(e)
        raise
    w.policy_state.invoked(time.perf_counter() - max(t_run, w.policy_state.last_perf))
    w.maybe_snapshot()
    if w.instance is not None:
        w.instance.memory_size()  # refreshes .size, which eviction reads unlocked
    return InvocationResult(function, results, start, time.perf_counter() - t0, recovery,
                            json=w.last_json)
