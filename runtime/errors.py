"""Errors raised by the runtime. Every one is a :class:`GolemishError`.

::

    GolemishError                      (golemish.oplog.errors)
    ├── StoreError …                   storage; see golemish.oplog.errors
    ├── ComponentError                 deploy refused or component unusable
    │   ├── InvalidModuleError         not a valid wasm module
    │   └── MissingImportsError        imports the host does not provide
    ├── NotFoundError                  unknown component, worker or function
    ├── ExistsError                    creating something that already exists
    ├── ArgumentError                  wrong argument count or types
    ├── InvocationFailed               the guest failed; the worker keeps its prior state
    │   ├── GuestTrap                  wasm trap (unreachable, out of bounds, …)
    │   ├── TimeLimitExceeded          runaway loop stopped by the epoch deadline
    │   ├── MemoryLimitExceeded        the worker hit its memory cap
    │   ├── Interrupted                a signal (Ctrl-C, SIGTERM) stopped the guest
    │   └── GuestExit                  the guest called proc_exit
    ├── DivergenceError                replay asked for something other than what was recorded
    ├── WorkerFailedError              the worker is marked failed (after a divergence)
    ├── UpdateError                    an update was refused; the worker stays as it was
    ├── Suspended                      the invocation waits (promise, long sleep): not a failure
    │   └── WorkerSuspendedError       …and the worker cannot take other work until it resumes
    ├── PromiseError                   unknown promise, or completed twice
    ├── ClosedError                    the Runtime was closed (shutting down)
    └── CrashPointError                a bad GOLEMISH_CRASH_AT specification

``InvocationFailed`` is terminal for that invocation but not for the worker:
the next invocation runs on the state from before the failed one.
"""

from __future__ import annotations

from golemish.oplog.errors import GolemishError


class ComponentError(GolemishError):
    """A component cannot be deployed or loaded."""


class InvalidModuleError(ComponentError):
    """The bytes are not a valid WebAssembly module for this engine."""


class MissingImportsError(ComponentError):
    """The module imports functions the host does not provide (or with other types)."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(f"component needs {len(missing)} thing(s) the host does not "
                         f"provide: {', '.join(missing)}")


class NotFoundError(GolemishError):
    """An unknown component, worker, function or oplog index."""


class ExistsError(GolemishError):
    """Creating a worker (or other named thing) that already exists."""


class ArgumentError(GolemishError):
    """Invocation arguments do not match the export's signature."""


class InvocationFailed(GolemishError):
    """The guest failed during an invocation. ``reason`` is what the oplog records."""

    reason = "trap"


class GuestTrap(InvocationFailed):
    reason = "trap"


class TimeLimitExceeded(InvocationFailed):
    reason = "time-limit"


class MemoryLimitExceeded(InvocationFailed):
    reason = "memory-limit"


class Interrupted(InvocationFailed):
    """SIGINT or SIGTERM stopped guest code (see ``Engine.catch_signals``).

    An invocation it stops is recorded as failed with reason "interrupted", as
    ``golemish worker interrupt`` records one: the worker's state is the state
    from before it. ``worker_id``/``function`` name that invocation; both stay
    None when nothing was recorded (the signal came during recovery).
    """

    reason = "interrupted"

    def __init__(self, signum: int) -> None:
        import signal as _signal
        self.signum = signum
        self.worker_id: str | None = None
        self.function: str | None = None
        #: The worker whose recovery the signal stopped (nothing recorded).
        self.recovering: str | None = None
        try:
            name = _signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        super().__init__(f"interrupted by {name}")

    def outcome(self) -> str:
        """One line saying what became of the worker."""
        if self.function is not None:
            return (f"{self.worker_id} {self.function} was abandoned (recorded as failed, as "
                    "`worker interrupt` does); the worker's state is as before the call")
        if self.recovering is not None:
            return (f"recovery of {self.recovering} stopped; nothing was recorded, the next "
                    "command recovers it")
        return "stopped before an invocation was recorded; nothing changed"


class GuestExit(InvocationFailed):
    reason = "exit"

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"guest called proc_exit({code})")


class DivergenceError(GolemishError):
    """Replay met a call other than the recorded one (DESIGN.md invariant 2)."""

    def __init__(self, worker_id: str, index: int, recorded: str, asked: str) -> None:
        self.worker_id = worker_id
        self.index = index
        self.recorded = recorded
        self.asked = asked
        super().__init__(f"worker {worker_id} diverged from its oplog at index {index}: "
                         f"recorded {recorded}, but the guest asked for {asked}")


class WorkerFailedError(GolemishError):
    """The worker is marked failed and refuses invocations until it is deleted."""


class UpdateError(GolemishError):
    """A worker update failed (divergence, no save/load exports, …); nothing changed."""


class Suspended(GolemishError):
    """The invocation is waiting on a promise or a long sleep; its state is in the oplog.

    Raised out of the guest by the host; the worker's instance is released and the
    invocation is finished later by `golemish worker resume` or the next command.
    """

    retryable = True

    def __init__(self, worker_id: str, *, promise: str | None = None,
                 until_ns: int | None = None) -> None:
        self.worker_id = worker_id
        self.promise = promise
        self.until_ns = until_ns
        super().__init__(f"worker {worker_id} suspended, {self.waiting_for()}")

    def waiting_for(self) -> str:
        if self.promise is not None:
            return f"awaiting promise {self.promise}"
        import datetime as _dt
        when = _dt.datetime.fromtimestamp((self.until_ns or 0) / 1e9).isoformat(" ", "seconds")
        return f"sleeping until {when}"

    def as_meta(self) -> dict[str, object]:
        return {"promise": self.promise} if self.promise is not None \
            else {"until_ns": self.until_ns}


class WorkerSuspendedError(Suspended):
    """An invocation was asked of a worker that is still suspended."""


class PromiseError(GolemishError):
    """An unknown promise, or a promise completed twice."""


class ClosedError(GolemishError):
    """The Runtime is closed: a server shutting down takes no new invocations."""


class CrashPointError(GolemishError):
    """GOLEMISH_CRASH_AT names an unknown point or a bad count."""


__all__ = [
    "GolemishError", "ComponentError", "InvalidModuleError", "MissingImportsError",
    "NotFoundError", "ExistsError", "ArgumentError", "InvocationFailed", "GuestTrap", "TimeLimitExceeded",
    "MemoryLimitExceeded", "Interrupted", "GuestExit", "DivergenceError", "WorkerFailedError",
    "CrashPointError", "Suspended", "WorkerSuspendedError", "PromiseError",
]
