"""At start, the invocations that a crash of the previous owner cut off are finished.

`golemish serve` starts this as soon as its event loop serves, before the first
request is read (not earlier, beside the imports of the HTTP stack: see
server/process.py). Requests that arrive meanwhile take their turn on the worker
as usual (the Runtime keeps one worker's calls in order), so an invocation is
finished once, by whichever comes first; the other finds it done.

Telling a cut-off worker from an idle one must not read every worker's whole
oplog (a 10,000-step invocation is 10,000 entries): :func:`ends_open` looks at the
last few entries only, and only a tail it cannot judge (a Rewind or Revert just
before it) falls back to the Runtime's full status.
"""

from __future__ import annotations

import threading
from typing import Any

from golemish.oplog import GolemishError
from golemish.oplog.entries import (
    AtomicBegin, AtomicEnd, Create, EffectBegin, HostCall, InvokeEnd, InvokeFailed,
    InvokeStart, Log, peek_kind, Snapshot, Update, UpdateFailed,
)
from golemish.oplog.store import Store

from ..executor import Runtime

#: After one of these no invocation is open.
_CLOSED = frozenset({Create.KIND, InvokeEnd.KIND, InvokeFailed.KIND})
#: Recorded inside an invocation (a host call, an atomic region). Should one be
#: recorded between (by a guest's start-up, say), the worker is merely loaded.
_INSIDE = frozenset({InvokeStart.KIND, HostCall.KIND, EffectBegin.KIND,
                     AtomicBegin.KIND, AtomicEnd.KIND})
#: Recorded inside or between invocations: look at the entry before.
_EITHER = frozenset({Snapshot.KIND, Update.KIND, UpdateFailed.KIND, Log.KIND})
#: How far back through _EITHER entries to look before asking for the full status.
_LOOK_BACK = 8


def ends_open(store: Store, worker_id: str) -> bool | None:
    """True if the worker's oplog ends inside an invocation, False if between two,
    None if its tail does not say (a Rewind or Revert voids entries before it, a
    damaged oplog): the caller then asks for the full status."""
    try:
        log = store.oplog(worker_id)
        index = log.last_index
        for _ in range(_LOOK_BACK):
            if index < 1:
                return None
            raw = next((r for _, r in log.raw(index, index)), None)
            if raw is None:
                return None
            kind = peek_kind(raw)
            if kind in _CLOSED:
                return False
            if kind in _INSIDE:
                return True
            if kind not in _EITHER:
                return None
            index -= 1
    except GolemishError:
        return None
    return None


def cut_off(rt: Runtime, meta: dict[str, Any]) -> bool:
    """Whether the worker described by ``meta`` has an invocation a crash cut off."""
    if meta.get("status") in ("failed", "suspended"):
        return False  # a suspended one is the waker's, a failed one nobody's
    verdict = ends_open(rt.store, meta["id"])
    if verdict is None:
        verdict = rt.worker_info(meta["id"])["status"] == "interrupted"
    return verdict


class CutOffRecovery:
    """A thread finishing cut-off invocations, one worker after another."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._stop = threading.Event()
        self.finished: list[str] = []
        self._thread = threading.Thread(target=self._run, name="golemish-cut-off",
                                        daemon=True)

    def start(self) -> CutOffRecovery:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Start no further recovery (the one running finishes; close waits for it)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            metas = self.rt.store.list_workers()
        except GolemishError:
            return  # closing, or a store error that the API reports to callers
        for meta in metas:
            if self._stop.is_set():
                return
            try:
                if cut_off(self.rt, meta):
                    # Finishes the invocation; a durable sleep in it suspends the
                    # worker and the waker hears of it (or finds it at its first scan).
                    self.rt.resume(meta["id"])
                    self.finished.append(meta["id"])
            except GolemishError:
                pass  # recorded in the worker; reported when someone asks for it
