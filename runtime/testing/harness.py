"""An in-process Runtime with the helpers a test of a worker needs.

:class:`RuntimeUnderTest` is a real :class:`~golemish.runtime.executor.Runtime`
(on a temporary RocksDB store in the ``golemish_runtime`` fixture) plus:

- ``call(worker, function, *args)``: invoke and get the plain result value;
  with a virtual clock in auto-skip mode, durable sleeps the invocation
  suspends on are skipped (the clock jumps to the wake time and the worker
  resumes) until it returns or awaits a promise;
- ``settle()``: resume every worker whose timer is due or whose promise was
  completed, skipping the clock to the next timer while nothing else can run;
- promise helpers: ``promises()``, ``complete(promise_or_worker, data)``;
- ``stdout(worker)``: what the worker printed (live only: replay is silent);
- ``restart()``: close and reopen on the same store, as a new process would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from golemish.oplog import TypedValue

from ..errors import InvocationFailed, PromiseError, Suspended, WorkerSuspendedError
from ..executor import Runtime, RuntimeConfig
from ..journal import OutputFn
from ..worker import RecoveryReport
from .clock import VirtualClock


def value_of(results: Sequence[TypedValue]) -> Any:
    """Results as a test wants them: None, the one value, or a tuple of values."""
    if not results:
        return None
    if len(results) == 1:
        return results[0][1]
    return tuple(v for _, v in results)


class RuntimeUnderTest(Runtime):
    """A Runtime for tests; see the module docstring."""

    def __init__(self, config: RuntimeConfig) -> None:
        super().__init__(config)
        self.output: dict[str, list[tuple[int, bytes]]] = {}
        self.closed = False
        #: Invocations waiting for their time: (realtime ns, worker, function, args).
        self.scheduled: list[tuple[int, str, str, tuple[Any, ...]]] = []

    # -- lifecycle -------------------------------------------------------------
    @property
    def virtual_clock(self) -> VirtualClock | None:
        return self.clock if isinstance(self.clock, VirtualClock) else None

    def close(self) -> None:
        """Release the store (so that the CLI or another process may open it); idempotent."""
        if not self.closed:
            self.closed = True
            super().close()

    def restart(self) -> None:
        """Close the store and open it again: every worker is recovered on next use."""
        self.close()
        self.reopen()

    def reopen(self) -> None:
        """Open the store again after :meth:`close`."""
        if self.closed:
            Runtime.__init__(self, self.config)
            self.closed = False

    def allow_http(self, *hosts: str) -> None:
        """Let every worker of this runtime reach these hosts (``host:port``)."""
        self.config.http_allow = (*self.config.http_allow,
                                  *(h for h in hosts if h not in self.config.http_allow))

    # -- components and invocations -----------------------------------------------------
    def deploy_file(self, path: str | Path, name: str | None = None, *,
                    wit: str | Path | None = None, stackful: bool = False) -> dict[str, Any]:
        """Deploy a .wasm file (named after the file by default); returns its metadata."""
        p = Path(path)
        wit_text = Path(wit).read_text() if wit is not None else None
        return self.deploy(p.read_bytes(), name or p.name.removesuffix(".wasm"), wit_text,
                           str(wit) if wit else None, stackful).meta

    def sink(self, worker_id: str) -> OutputFn:
        chunks = self.output.setdefault(worker_id, [])
        return lambda stream, data: chunks.append((stream, data))

    def stdout(self, worker_id: str) -> str:
        return b"".join(d for s, d in self.output.get(worker_id, []) if s == 1).decode()

    def call(self, worker_id: str, function: str, *args: Any, key: str | None = None,
             env: Sequence[tuple[str, str]] | dict[str, str] = ()) -> Any:
        """Invoke ``function`` with ``args`` (numbers, or WAVE text for WIT functions).

        Returns the result value. Sleeps are skipped in auto-skip mode; an invocation
        left awaiting a promise raises :class:`Suspended` (complete it with
        :meth:`complete`).
        """
        pairs = list(env.items()) if isinstance(env, dict) else list(env)
        try:
            res = self.invoke(worker_id, function, [str(a) for a in args], idempotency_key=key,
                              output=self.sink(worker_id), env=pairs)
        except WorkerSuspendedError:
            raise  # the worker was already waiting: this call did not run
        except Suspended as s:
            return self._carry_on(s)
        return value_of(res.results)

    def _carry_on(self, s: Suspended) -> Any:
        """Follow a suspended invocation through skipped timers until it finishes."""
        clock = self.virtual_clock
        while s.until_ns is not None and clock is not None and clock.auto_skip:
            clock.advance_to(s.until_ns)
            try:
                report = self.resume(s.worker_id, output=self.sink(s.worker_id))
            except Suspended as again:
                s = again
                continue
            return _finished_value(report)
        raise s

    def schedule(self, worker_id: str, function: str, *args: Any, at_ns: int | None = None,
                 after_s: float = 0.0) -> int:
        """Invoke ``function(*args)`` once the clock reaches ``at_ns`` (or now +
        ``after_s``); :meth:`settle` fires it. Returns the due time in ns.

        A test-side scheduler on the runtime's clock (golemish itself has none in
        process), so scheduled work follows virtual time like timers do.
        """
        due = at_ns if at_ns is not None else self.clock.time_ns() + int(after_s * 1e9)
        self.scheduled.append((due, worker_id, function, args))
        self.scheduled.sort(key=lambda s: s[0])
        return due

    def suspended(self) -> dict[str, dict[str, Any]]:
        """Workers waiting, by id: ``{"promise": id}`` or ``{"until_ns": t}``."""
        return {m["id"]: m["suspended"] for m in self.store.list_workers() if m.get("suspended")}

    def settle(self) -> dict[str, Any]:
        """Run everything that can run; returns ``{worker: result}`` of finished invocations.

        Resumes workers whose timer is due or whose promise is completed, and runs
        scheduled invocations that are due. With a virtual clock in auto-skip mode,
        when only timers are left the clock jumps to the earliest one, again and
        again, until every worker is idle or awaits a promise.
        """
        finished: dict[str, Any] = {}
        clock = self.virtual_clock
        while True:
            progressed, timers = False, [s[0] for s in self.scheduled[:1]]
            while self.scheduled and self.scheduled[0][0] <= self.clock.time_ns():
                _, wid, function, args = self.scheduled.pop(0)
                progressed, timers = True, []
                try:
                    finished[wid] = self.call(wid, function, *args)
                except Suspended:
                    pass  # it waits: a later round resumes it
            for wid in self.suspended():
                try:
                    report = self.resume(wid, output=self.sink(wid))
                except WorkerSuspendedError as e:  # not due yet
                    if e.until_ns is not None:
                        timers.append(e.until_ns)
                    continue
                except Suspended:  # it ran, and waits again
                    progressed = True
                    continue
                progressed = True
                if report is not None and report.finished is not None:
                    finished[wid] = _finished_value(report)
            if progressed:
                continue
            if timers and clock is not None and clock.auto_skip:
                clock.advance_to(min(timers))
                continue
            return finished

    # -- promises ---------------------------------------------------------------
    def promises(self, worker_id: str | None = None, state: str | None = "pending"
                 ) -> list[dict[str, Any]]:
        """Promises (pending ones by default), optionally of one worker."""
        return [p for p in self.list_promises()
                if (worker_id is None or p["worker"] == worker_id)
                and (state is None or p["state"] == state)]

    def awaited_promise(self, worker_id: str) -> str:
        """The id of the promise ``worker_id`` is suspended on."""
        susp = self.suspended().get(worker_id) or {}
        if "promise" not in susp:
            raise PromiseError(f"worker {worker_id} awaits no promise "
                               f"({'sleeping' if susp else 'not suspended'})")
        return str(susp["promise"])

    def complete(self, promise_or_worker: str, data: bytes | str = b"") -> Any:
        """Complete a promise (or the one a worker awaits) and carry on the worker.

        Returns the value of the invocation it finishes; raises Suspended if the
        invocation goes on to await another promise.
        """
        pid = promise_or_worker if "#" in promise_or_worker \
            else self.awaited_promise(promise_or_worker)
        payload = data.encode() if isinstance(data, str) else data
        p = self.store.get_promise(pid)
        out = self.sink(p["worker"]) if p else None
        _, outcome = self.complete_promise(pid, payload, output=out)
        if isinstance(outcome, Suspended):
            return self._carry_on(outcome)
        return _finished_value(outcome)


def _finished_value(report: RecoveryReport | None) -> Any:
    if report is None or report.finished is None:
        return None
    f = report.finished
    if not f["ok"]:
        raise InvocationFailed(f"{f['function']} failed: {f['error']}")
    return value_of(f["results"])


__all__ = ["RuntimeUnderTest", "value_of"]
