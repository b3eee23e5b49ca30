"""Crashes on demand: kill a real process mid-invocation, recover, compare.

How a crash is made. The in-process runtime of the test closes its store and a
child process (:mod:`.child`) runs the action on the same store with the
test's settings and virtual time: either with ``GOLEMISH_CRASH_AT=point:n``
semantics (the child kills itself with SIGKILL the n-th time it reaches the
point, see runtime/crash.py), or it is killed with SIGKILL from here when its
guest prints a given line or after a delay. Nothing is flushed or cleaned up:
it is a real kill -9, so whatever RocksDB's write-ahead log holds is what the
next process finds. The test's runtime then reopens the store and recovers the
worker in-process, as the next command would: it finishes the invocation the
crash cut off (a client whose call was never recorded retries it instead).

What "equals the crash-free state" means. A crash-free run of the same
invocation would draw other random numbers and clock values, so the
reference is the recorded history itself executed in one uninterrupted pass:
a fresh instance rebuilt by pure replay from the Create entry (no snapshot, no
crash, nothing live). :meth:`Crashes.check` compares that instance's linear
memory and globals with the recovered worker's, byte for byte, and the helpers
also check that the invocation is recorded exactly once and finished. Effects
are counted by whoever receives them (``http_stub.effects(...)``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golemish.oplog import InvokeEnd, InvokeStart

from ..crash import POINTS
from ..errors import CrashPointError, Suspended, WorkerSuspendedError
from ..worker import RecoveryReport
from .child import READY
from .harness import RuntimeUnderTest, value_of
from .replay import ReplayWorker, replay


@dataclass
class CrashOutcome:
    """What happened to one crashed action and its recovery."""

    #: The result of the invocation once recovered (None if it still waits).
    value: Any = None
    #: The child was killed (False: it finished before the point was reached).
    killed: bool = False
    #: The in-process recovery that followed.
    recovery: RecoveryReport | None = None
    #: The invocation had not been recorded when the child died, so it was sent again.
    retried: bool = False
    #: Set when the recovered invocation waits (a promise, or a timer without auto-skip).
    suspended: Suspended | None = None
    #: What the child's guest printed before it died.
    child_stdout: str = ""
    #: Recovered memory and globals equal a pure replay from Create (None: not compared,
    #: the worker waits).
    equivalent: bool | None = None
    notes: list[str] = field(default_factory=list)


class Crashes:
    """Crash helpers bound to one test runtime (the ``golemish_crash`` fixture)."""

    def __init__(self, rt: RuntimeUnderTest, workdir: Path) -> None:
        self.rt = rt
        self.workdir = workdir
        self._n = 0

    def crash_at(self, point: str, n: int = 1) -> _Planned:
        """Plan a SIGKILL at the n-th arrival at ``point`` (see runtime/crash.py)."""
        if point not in POINTS:
            raise CrashPointError(f"unknown crash point {point!r}; known: "
                                  f"{', '.join(sorted(POINTS))}")
        if n < 1:
            raise CrashPointError("the count must be >= 1")
        return _Planned(self, crash=f"{point}:{n}")

    def kill_when(self, printed: str | None = None, *, after_s: float | None = None
                  ) -> _Planned:
        """Plan a SIGKILL once the guest has printed ``printed`` (the child kills itself
        right after that output is recorded and shown), or ``after_s`` seconds after
        the child began the action (a kill from outside, at a moment nobody chose)."""
        if printed is None and after_s is None:
            raise ValueError("say when to kill: printed='text the guest prints' or after_s=…")
        return _Planned(self, when=printed, after_s=after_s)

    def kill_and_recover(self, worker_id: str, function: str | None = None, *args: Any,
                         when: str | None = None, after_s: float | None = None,
                         key: str | None = None,
                         env: dict[str, str] | None = None) -> CrashOutcome:
        """Run ``function(*args)`` (or resume the worker's pending invocation) in a child,
        kill -9 it when its guest prints ``when`` (or after ``after_s`` seconds), then
        recover in-process and check the state (see :meth:`kill_when`)."""
        planned = self.kill_when(when, after_s=after_s)
        if function is None:
            return planned.resume(worker_id)
        return planned.invoke(worker_id, function, *args, key=key, env=env)

    # -- the comparison -----------------------------------------------------------
    def check(self, worker_id: str) -> bool | None:
        """Assert the worker's live state equals a pure replay of its oplog from Create.

        Returns True when compared, None when the worker waits (nothing to compare:
        a waiting worker holds no instance).
        """
        try:
            with self.rt.using(worker_id) as live:  # held: nothing changes it meanwhile
                assert live.instance is not None
                ref = ReplayWorker(self.rt, dict(live.meta))
                try:
                    outcome = replay(ref)
                    if outcome.divergence is not None:
                        raise AssertionError(
                            f"the recovered oplog does not replay: {outcome.divergence}")
                    if ref.instance is None:
                        raise AssertionError(
                            f"replay of {worker_id} stopped early: {outcome.notes}")
                    _compare(worker_id, live, ref)
                finally:
                    ref.discard()
        except WorkerSuspendedError:
            return None
        return True

    # -- the child ------------------------------------------------------------------
    def _spawn(self, spec: dict[str, Any], *, when: str | None, after_s: float | None
               ) -> tuple[bool, str, dict[str, Any]]:
        rt = self.rt
        spec["kill_on_output"] = when
        self._n += 1
        tmp = Path(tempfile.mkdtemp(prefix=f"crash{self._n}-", dir=self.workdir))
        clock = rt.virtual_clock
        cfg = rt.config
        spec.update(
            home=cfg.home, result_file=str(tmp / "result.json"),
            clock_file=str(tmp / "clock"),
            clock=None if clock is None else {"time_ns": clock.time_ns(),
                                              "monotonic_ns": clock.monotonic_ns(),
                                              "auto_skip": clock.auto_skip},
            config={"http_allow": list(cfg.http_allow), "time_limit": cfg.time_limit,
                    "memory_limit": cfg.memory_limit, "snapshot_policy": str(cfg.snapshot_policy),
                    "suspend_after_s": cfg.suspend_after_s, "sync": cfg.sync,
                    "recovery": cfg.recovery})
        (tmp / "spec.json").write_text(json.dumps(spec))
        env = dict(os.environ)
        env.pop("GOLEMISH_CRASH_AT", None)  # the spec says where, or nowhere
        rt.close()  # one process owns a RocksDB store at a time
        try:
            with subprocess.Popen([sys.executable, "-m", "golemish.runtime.testing.child",
                                   str(tmp / "spec.json")], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
                seen = _watch(proc, after_s)
        finally:
            rt.reopen()
        if clock is not None and (tmp / "clock").is_file():
            clock.advance_to(int((tmp / "clock").read_text()))
        result = json.loads((tmp / "result.json").read_text()) \
            if (tmp / "result.json").is_file() else {}
        if proc.returncode not in (0, 3, -signal.SIGKILL):
            raise AssertionError(f"the child failed (exit {proc.returncode}): {seen[1]}")
        return proc.returncode == -signal.SIGKILL, seen[0], result


class _Planned:
    """One planned crash: pick the action to run under it."""

    def __init__(self, crashes: Crashes, *, crash: str | None = None, when: str | None = None,
                 after_s: float | None = None) -> None:
        self.c, self.crash, self.when, self.after_s = crashes, crash, when, after_s

    def invoke(self, worker_id: str, function: str, *args: Any, key: str | None = None,
               env: dict[str, str] | None = None) -> CrashOutcome:
        """Invoke under the crash, recover, finish, compare."""
        rt = self.c.rt
        start = rt.store.oplog(worker_id).last_index if rt.store.get_worker(worker_id) else 0
        spec = {"action": "invoke", "worker": worker_id, "function": function,
                "args": [str(a) for a in args], "key": key, "crash": self.crash,
                "env": sorted((env or {}).items())}
        out = self._run(spec, worker_id)
        if not out.killed:
            return out
        invoked = [i for i, e in rt.oplog(worker_id, start + 1)
                   if isinstance(e, InvokeStart)] if rt.store.get_worker(worker_id) else []
        if not invoked:
            # The child died before its invocation was recorded: it never happened, and
            # a client retries it (with an idempotency key, at most once).
            out.retried = True
            try:
                out.value = rt.call(worker_id, function, *args, key=key, env=env or {})
            except Suspended as s:
                out.suspended = s
        elif len(invoked) > 1:
            raise AssertionError(f"{worker_id}: one invocation recorded {len(invoked)} times "
                                 f"(oplog indexes {invoked})")
        elif out.value is None and out.suspended is None:
            # It had finished and been recorded before the kill: the result is the
            # recorded one (what a retry with its idempotency key returns).
            start = rt.store.oplog(worker_id).get(invoked[0])
            assert isinstance(start, InvokeStart)
            with rt.using(worker_id) as w:
                recorded = w.recorded_result(invoked[0], function, key or "(crash test)",
                                             start.params)
            out.value = value_of(recorded.results)
        self._check(out, worker_id)
        return out

    def resume(self, worker_id: str) -> CrashOutcome:
        """Resume the worker's pending invocation under the crash, then recover."""
        out = self._run({"action": "resume", "worker": worker_id, "crash": self.crash},
                        worker_id)
        if out.killed:
            self._check(out, worker_id)
        return out

    def complete(self, promise_id: str, data: bytes | str = b"") -> CrashOutcome:
        """Complete a promise under the crash (the worker resumes in the child)."""
        rt = self.c.rt
        p = rt.store.get_promise(promise_id)
        if p is None:
            raise AssertionError(f"no promise {promise_id}")
        raw = data.encode() if isinstance(data, str) else data
        out = self._run({"action": "complete", "promise": promise_id, "data": raw.hex(),
                         "crash": self.crash}, p["worker"])
        if out.killed:
            if rt.store.get_promise(promise_id)["state"] != "completed":
                out.retried = True  # the completion itself was lost: complete again
                try:
                    out.value = rt.complete(promise_id, raw)
                except Suspended as s:
                    out.suspended = s
            self._check(out, p["worker"])
        return out

    # -- shared ---------------------------------------------------------------------------
    def _run(self, spec: dict[str, Any], worker_id: str) -> CrashOutcome:
        rt = self.c.rt
        killed, printed, result = self.c._spawn(spec, when=self.when, after_s=self.after_s)
        out = CrashOutcome(killed=killed, child_stdout=printed)
        if not killed:
            if self.crash is not None:
                raise AssertionError(f"the child never reached crash point {self.crash}; "
                                     "it finished normally")
            out.notes.append("the child finished before it was killed")
        if "results" in result:
            out.value = value_of([tuple(r) for r in result["results"]])
        if "suspended" in result:
            out.suspended = Suspended(worker_id, **result["suspended"])
        if killed and rt.store.get_worker(worker_id) is not None:
            try:
                out.recovery = rt.resume(worker_id, output=rt.sink(worker_id))
                if out.recovery is not None and out.recovery.finished is not None:
                    out.value = _value(out.recovery)
            except WorkerSuspendedError as s:
                out.suspended = s  # it waits for something that is not due
            except Suspended as s:
                try:
                    out.value = rt._carry_on(s)
                except Suspended as s2:
                    out.suspended = s2
        return out

    def _check(self, out: CrashOutcome, worker_id: str) -> None:
        rt = self.c.rt
        if out.suspended is None:
            last = [e for _, e in rt.oplog(worker_id) if isinstance(e, (InvokeStart, InvokeEnd))]
            if last and isinstance(last[-1], InvokeStart):
                raise AssertionError(f"{worker_id}: the crashed invocation never finished")
        out.equivalent = self.c.check(worker_id)


def _value(report: RecoveryReport) -> Any:
    f = report.finished
    assert f is not None
    if not f["ok"]:
        raise AssertionError(f"the recovered invocation {f['function']} failed: {f['error']}")
    return value_of(f["results"])


def _watch(proc: subprocess.Popen[bytes], after_s: float | None) -> tuple[str, str]:
    """Wait for the child, killing it ``after_s`` seconds after it began the action;
    returns (stdout, stderr)."""
    assert proc.stdout is not None and proc.stderr is not None
    stderr, lines = proc.stderr, []
    errors: list[str] = []
    ready = threading.Event()

    def read_errors() -> None:
        for raw in iter(stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            if line.strip() == READY:
                ready.set()
            else:
                errors.append(line)
        ready.set()  # it ended: nothing left to time

    def kill_later() -> None:
        ready.wait()
        if not done.wait(after_s):
            _kill(proc)

    done = threading.Event()
    threads = [threading.Thread(target=read_errors, daemon=True)]
    if after_s is not None:
        threads.append(threading.Thread(target=kill_later, daemon=True))
    for t in threads:
        t.start()
    for raw in iter(proc.stdout.readline, b""):
        lines.append(raw.decode("utf-8", "replace"))
    proc.wait(timeout=120)
    done.set()
    for t in threads:
        t.join(timeout=10)
    return "".join(lines), "".join(errors).strip()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _compare(worker_id: str, live: Any, ref: Any) -> None:
    a, b = live.instance, ref.instance
    size_a, size_b = a.memory_size(), b.memory_size()
    if size_a != size_b:
        raise AssertionError(f"{worker_id}: recovered memory is {size_a} bytes, "
                             f"the crash-free replay's {size_b}")
    step = 1 << 20
    for off in range(0, size_a, step):
        n = min(step, size_a - off)
        x, y = a.read(off, n), b.read(off, n)
        if x != y:
            first = off + next(i for i in range(n) if x[i] != y[i])
            raise AssertionError(f"{worker_id}: recovered memory differs from the crash-free "
                                 f"replay at byte {first:#x}")
    for name in live.layout.globals:
        if a.get_global(name) != b.get_global(name):
            raise AssertionError(f"{worker_id}: global {name} differs after recovery: "
                                 f"{a.get_global(name)} vs {b.get_global(name)}")


__all__ = ["Crashes", "CrashOutcome"]
