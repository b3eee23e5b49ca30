"""Pure replay: re-execute a worker's recorded history without touching the world.

Two uses. ``golemish test-replay`` replays an oplog (from a store or an exported
file, :mod:`golemish.oplog.export`) against a component file, a new build, and
reports the first divergence: a determinism check to run in CI before an update.
The crash helpers (:mod:`.crashes`) rebuild a worker by replay from Create in
one uninterrupted pass and compare it with the recovered one.

Pure means: every host call is answered from the oplog, nothing is written to
any store, no output is emitted, no HTTP is sent. Where the recorded history
ends (inside a suspended or cut-off invocation) replay stops instead of going
live; a component that returned or failed earlier than recorded diverges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from golemish.oplog import Create, Entry, InvokeFailed, InvokeStart
from golemish.oplog.export import OplogFile

from ..errors import DivergenceError, GolemishError, NotFoundError, Suspended
from ..journal import Journal
from ..worker import RecoveryReport, Worker

if TYPE_CHECKING:
    from ..executor import Runtime


class ReplayEnded(GolemishError):
    """The recorded history ends here; a pure replay stops instead of going live."""


class PureJournal(Journal):
    """A journal that only answers from the oplog: it never performs or writes."""

    def _recorded(self, asked: str) -> tuple[int, Entry] | None:
        item = super()._recorded(asked)
        if item is None:
            raise ReplayEnded(f"the oplog ends where the guest asks for {asked}")
        return item

    def host_call(self, name: str, request: bytes, perform: Callable[[], bytes], *,
                  commit: bool = False) -> bytes:
        if self._cursor is None:
            raise ReplayEnded(f"host call {name} after the recorded history")
        return super().host_call(name, request, perform, commit=commit)

    def effect(self, name: str, request: bytes, perform: Callable[[str], bytes]) -> bytes:
        if self._cursor is None:
            raise ReplayEnded(f"{name} after the recorded history")
        return super().effect(name, request, perform)

    def append(self, entry: Entry, *, commit: bool = True) -> int:
        if isinstance(entry, InvokeFailed):
            # Recorded: the invocation went on (the oplog ends inside it); replayed: it failed.
            raise DivergenceError(self.worker_id, self.oplog.last_index,
                                  "an invocation still running where the oplog ends",
                                  f"a failure ({entry.message})")
        raise ReplayEnded(f"a {entry.NAME} entry after the recorded history")

    def append_invocation(self, entry: InvokeStart, key: str | None) -> int:
        raise ReplayEnded("a new invocation")

    def log(self, stream: int, data: bytes) -> None:
        if self._cursor is None:
            raise ReplayEnded("output after the recorded history")
        super().log(stream, data)

    @property
    def last_read(self) -> int:
        """The index of the last entry replay consumed."""
        return self._cursor.last if self._cursor is not None else self.oplog.last_index


class ReplayWorker(Worker):
    """A worker rebuilt by replay from Create only (no snapshot), through a PureJournal."""

    def __init__(self, runtime: Runtime, meta: dict[str, Any]) -> None:
        super().__init__(runtime, meta, None)
        self.journal = PureJournal(self.id, self.oplog, runtime.crash, None)
        self.journal.recording = True

    def _restore_latest(self, create: Create, report: RecoveryReport) -> None:
        return None

    def _track(self, base: Any) -> None:
        pass  # nothing will be snapshotted

    def _track_fresh(self, inst: Any) -> None:
        pass  # nor is a base stored

    def _set_meta(self, **changes: Any) -> None:
        pass  # pure: the worker's record in the store is not this replay's business


@dataclass
class ReplayOutcome:
    """What a pure replay found."""

    worker_id: str
    entries: int
    invocations: int = 0
    host_calls: int = 0
    #: The first divergence, if any.
    divergence: DivergenceError | None = None
    #: True when the history ends inside an invocation (suspended or cut off).
    open_end: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return self.divergence is None


def replay(worker: ReplayWorker) -> ReplayOutcome:
    """Replay ``worker``'s oplog from Create; the instance stays on ``worker`` (if any)."""
    entries = worker.oplog.last_index
    out = ReplayOutcome(worker.id, entries)
    out.invocations = sum(1 for _, k in worker.oplog.kinds() if k == InvokeStart.KIND)
    try:
        report = worker.recover()
        out.host_calls = report.replayed_host_calls
    except ReplayEnded as e:
        out.open_end = True
        out.host_calls = worker.journal.replayed_calls
        out.notes.append(str(e))
        worker.discard()
    except Suspended:
        out.open_end = True  # a sleep still in the future where the history ends
        worker.discard()
    except DivergenceError as e:
        out.divergence = e
        worker.discard()
    except NotFoundError as e:  # the build lacks an export the history invokes
        assert isinstance(worker.journal, PureJournal)
        index = worker.journal.last_read
        entry = worker.oplog.get(index)
        out.divergence = DivergenceError(
            worker.id, index, f"an invocation of {getattr(entry, 'function', '?')}", str(e))
        worker.discard()
    return out


def replay_file(oplog: OplogFile, wasm: bytes, *, wit: str | None = None,
                stackful: bool | None = None) -> ReplayOutcome:
    """Replay an exported oplog against ``wasm`` in a throwaway in-memory runtime."""
    from ..executor import Runtime, RuntimeConfig
    from .clock import VirtualClock

    comp = oplog.component
    meta_in = oplog.header.get("limits", {})
    # Far in the future: every recorded sleep is over, so replay never waits.
    clock = VirtualClock(start_ns=1 << 62)
    with Runtime(RuntimeConfig(home="memory://", clock=clock, snapshot_policy=_off())) as rt:
        res = rt.deploy(wasm, comp["name"], wit if wit is not None else comp.get("wit"),
                        stackful=bool(comp.get("stackful")) if stackful is None else stackful)
        entries = oplog.entries()
        create = entries[0][1]
        meta = {"id": oplog.worker_id, "component": comp["name"],
                "version": res.meta["version"], "status": "idle",
                "memory_limit": meta_in.get("memory_limit", rt.config.memory_limit),
                "time_limit": meta_in.get("time_limit", rt.config.time_limit),
                "durable": True}
        rt.store.create_worker(meta, create)
        log = rt.store.oplog(oplog.worker_id)
        for _, entry in entries[1:]:
            log.append(entry)
        worker = ReplayWorker(rt, meta)
        try:
            return replay(worker)
        finally:
            worker.discard()


def _off() -> Any:
    from ..snapshot.policy import SnapshotPolicy
    return SnapshotPolicy.parse("off")


def export_header(rt: Runtime, worker_id: str) -> dict[str, Any]:
    """The header of ``worker export``: the worker, its component identity and limits."""
    meta = rt.store.get_worker(worker_id)
    if meta is None:
        raise NotFoundError(f"no worker {worker_id}")
    comp = rt.component(meta["component"], meta["version"])
    return {"worker": worker_id,
            "component": {"name": comp["name"], "version": comp["version"],
                          "hash": comp["hash"], "wit": comp.get("wit"),
                          "stackful": bool(comp.get("stackful"))},
            "limits": {"memory_limit": meta.get("memory_limit"),
                       "time_limit": meta.get("time_limit")},
            "exported_at_ns": rt.clock.time_ns()}

