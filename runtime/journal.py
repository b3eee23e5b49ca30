"""Record and replay of a worker's host calls (DESIGN.md invariants 1 and 2).

While *live*, every non-deterministic host call runs for real and its result is
appended to the oplog before the guest sees it; guest output becomes Log
entries, appended before it is shown.

Appended is not yet written. Entries of internal non-determinism (clocks,
randomness, reads whose results nobody outside has seen, the InvokeStart itself)
wait in the worker's oplog in memory; the journal *commits* them (one batch,
with ``--sync`` one fsync shared with concurrent commits) only where something
leaves the process: before an effect is sent and once its answer is back,
before output is shown live, at the invocation's end (before its result is
returned), at a suspension, in a snapshot's batch, and when a promise is
created (the store holds it, so others can see it). A crash before a commit
loses only what nobody saw: recovery replays what was committed and goes live
from there, drawing new values, which is indistinguishable from a crash a
moment earlier. While *replaying*, the same calls are
answered from the oplog entries that follow the invocation being re-executed,
output is checked against the recorded Log entries and suppressed, and any
mismatch is a :class:`DivergenceError`. When the recorded entries run out in the
middle of an invocation (the process died there), the journal goes live and the
invocation continues as if nothing happened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence

from golemish.oplog import (
    BOOKKEEPING, Op,
    AtomicBegin, AtomicEnd, EffectBegin, Entry, HostCall, InvokeEnd, InvokeFailed, InvokeStart,
    Log, Rewind, WorkerOplog,
)

from .crash import CrashPoints
from .errors import DivergenceError

OutputFn = Callable[[int, bytes], None]


class Deferred:
    """An output function whose caller shows the output only after the invocation
    returns (a server puts it in the response): Log entries need no commit of their
    own then, the invocation's end commits them."""

    deferred = True

    def __init__(self, fn: OutputFn) -> None:
        self._fn = fn

    def __call__(self, stream: int, data: bytes) -> None:
        self._fn(stream, data)

#: Entries that end an invocation's body; the guest must not read past them.
_BOUNDARY = (InvokeStart, InvokeEnd, InvokeFailed)


def describe(entry: Entry) -> str:
    """A short account of a recorded entry for divergence messages."""
    if isinstance(entry, HostCall):
        return f"host call {entry.name}(request {entry.request.hex() or 'empty'})"
    if isinstance(entry, Log):
        return f"output {entry.data[:40]!r} on fd {entry.stream}"
    if isinstance(entry, InvokeEnd):
        return "the end of the invocation"
    if isinstance(entry, InvokeFailed):
        return "a failed end of the invocation"
    return f"a {entry.NAME} entry"


def effect_key(worker_id: str, index: int) -> str:
    """The idempotency key of the effect begun at ``index``: stable across retries."""
    return hashlib.sha256(f"golemish:{worker_id}:{index}".encode()).hexdigest()[:32]


class Cursor:
    """A one-pass reader over (index, entry) pairs with one entry of lookahead.

    ``void`` ranges (inclusive) are skipped: entries an earlier recovery declared
    void with a Rewind. ``limit`` ends the cursor early: entries after it belong to
    an atomic region a crash cut short, which will run again live.
    """

    def __init__(self, entries: Iterator[tuple[int, Entry]],
                 void: Sequence[tuple[int, int]] = (), limit: int | None = None) -> None:
        self._it = entries
        self._void = sorted(void)
        self.limit = limit
        self._peeked: tuple[int, Entry] | None = None
        self._done = False
        #: Index of the last entry handed out.
        self.last = 0

    def _is_void(self, index: int) -> bool:
        while self._void and self._void[0][1] < index:
            self._void.pop(0)
        return bool(self._void) and self._void[0][0] <= index

    def peek(self) -> tuple[int, Entry] | None:
        while self._peeked is None and not self._done:
            item = next(self._it, None)
            if item is None or (self.limit is not None and item[0] > self.limit):
                self._done = True
            elif not self._is_void(item[0]) and not isinstance(item[1], BOOKKEEPING):
                # Snapshot (and Update) entries are bookkeeping, not guest execution:
                # mid-call ones sit inside an invocation's body, and replay passes over them.
                self._peeked = item
        return self._peeked

    def next(self) -> tuple[int, Entry] | None:
        item = self.peek()
        self._peeked = None
        if item is not None:
            self.last = item[0]
        return item

    def skip_through(self, index: int) -> None:
        """Drop entries up to and including ``index``."""
        while (item := self.peek()) is not None and item[0] <= index:
            self._peeked = None


class Journal:
    """The host's single door to the oplog for one worker instance."""

    def __init__(self, worker_id: str, oplog: WorkerOplog, crash: CrashPoints,
                 output: OutputFn | None = None,
                 append_invocation: Callable[[WorkerOplog, Entry, str | None], int] | None = None
                 ) -> None:
        self.worker_id = worker_id
        self.store_append_invocation = append_invocation or (lambda log, e, _k: log.buffer(e))
        self.oplog = oplog
        self.crash = crash
        self.output = output
        self._cursor: Cursor | None = None
        self._recording = True
        self._rewind_to: int | None = None
        #: Recording with nothing around the append (no crash points, no Rewind due):
        #: a host call's record goes straight into the oplog's buffer. See _refresh.
        self._plain = False
        self._refresh()
        #: Host calls answered from the oplog since the last reset, for reports.
        self.replayed_calls = 0

    # -- mode ---------------------------------------------------------------
    @property
    def recording(self) -> bool:
        """False for an ephemeral worker: calls run live and nothing is written."""
        return self._recording

    @recording.setter
    def recording(self, value: bool) -> None:
        self._recording = value
        self._refresh()

    @property
    def rewind_to(self) -> int | None:
        """Set when replay stops at an atomic region a crash cut short: the first live
        append then records a Rewind to it, voiding the cut-off entries."""
        return self._rewind_to

    @rewind_to.setter
    def rewind_to(self, value: int | None) -> None:
        self._rewind_to = value
        self._refresh()

    def _refresh(self) -> None:
        self._plain = self._recording and self._rewind_to is None and not self.crash.armed

    @property
    def replaying(self) -> bool:
        return self._cursor is not None

    def replay_from(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def go_live(self) -> None:
        self._cursor = None

    def pending(self) -> tuple[int, Entry] | None:
        """The next recorded entry not yet consumed by replay, if any."""
        return self._cursor.peek() if self._cursor is not None else None

    def _recorded(self, asked: str) -> tuple[int, Entry] | None:
        """The next recorded body entry, or None after switching to live."""
        cursor = self._cursor
        assert cursor is not None
        item = cursor.peek()
        if item is None:
            self._cursor = None  # the oplog ends here: the rest of this call is live
            return None
        index, entry = item
        if isinstance(entry, _BOUNDARY):
            raise DivergenceError(self.worker_id, index, describe(entry), asked)
        cursor.next()
        return item

    # -- recording ------------------------------------------------------------
    def append(self, entry: Entry, *, commit: bool = True) -> int:
        """Append one entry (with the crash points around it); ``commit`` writes it and
        every entry waiting before it, durably, before returning."""
        return self._append(lambda: self.oplog.buffer(entry), commit)

    def append_invocation(self, entry: InvokeStart, key: str | None) -> int:
        """Append an InvokeStart (its idempotency key goes into the same commit); it
        waits for the invocation's first commit point."""
        return self._append(lambda: self.store_append_invocation(self.oplog, entry, key),
                            False)

    def _append(self, write: Callable[[], int], commit: bool) -> int:
        if not self.recording:
            return 0
        if self.rewind_to is not None:  # void what a cut-off atomic region left behind
            to, self.rewind_to = self.rewind_to, None
            self.append(Rewind(to), commit=False)
        self.crash.hit("before-oplog-append")
        index = write()
        if commit:
            self.commit()
        self.crash.hit("after-oplog-append")
        return index

    def commit(self, extra: Sequence[Op] = ()) -> None:
        """Write the waiting entries (and ``extra``) durably: something is about to
        leave the process. Nothing to do when nothing waits and ``extra`` is empty."""
        if not self.recording or (not self.oplog.pending and not extra):
            return
        self.crash.hit("before-commit")
        self.oplog.commit(extra)
        self.crash.hit("after-commit")

    def host_call(self, name: str, request: bytes, perform: Callable[[], bytes], *,
                  commit: bool = False) -> bytes:
        """Run a non-deterministic call live and record it, or answer it from the oplog.

        The record waits for the next commit unless ``commit``: the call itself made
        something others can see (a promise in the store)."""
        if self._cursor is not None:
            item = self._recorded(f"host call {name}(request {request.hex() or 'empty'})")
            if item is not None:
                index, entry = item
                if type(entry) is not HostCall or entry.name != name or entry.request != request:
                    raise DivergenceError(self.worker_id, index, describe(entry),
                                          f"host call {name}(request {request.hex() or 'empty'})")
                self.replayed_calls += 1
                return entry.response
        response = perform()
        if self._plain:  # the hot path: one per recorded call
            self.oplog.buffer_host_call(name, request, response)
            if commit:
                self.commit()
        elif self._recording:
            self.crash.hit("after-host-call")
            self.append(HostCall(name, request, response), commit=commit)
        return response

    def effect(self, name: str, request: bytes, perform: Callable[[str], bytes]) -> bytes:
        """A call with an outside effect, bracketed by EffectBegin and its recorded answer.

        ``perform(key)`` runs the effect with an idempotency key derived from the worker
        and the Begin's oplog index. A recorded answer is never sent again; a Begin
        without one is sent again with the same key (at-least-once, deduplicated).
        Both are committed at once: the Begin (and everything before it) before the
        request leaves, the answer as soon as it is back, so that the outside is asked
        again only if the process dies while it is being asked.
        """
        asked = f"{name}(request {request[:40]!r})"
        if self._cursor is not None:
            item = self._recorded(asked)
            if item is not None:
                index, entry = item
                if type(entry) is not EffectBegin or entry.name != name \
                        or entry.request != request:
                    raise DivergenceError(self.worker_id, index, describe(entry), asked)
                answer = self._recorded(f"the answer to {name}")
                if answer is not None:
                    a_index, a_entry = answer
                    if type(a_entry) is not HostCall or a_entry.name != name:
                        raise DivergenceError(self.worker_id, a_index, describe(a_entry),
                                              f"the answer to {name}")
                    self.replayed_calls += 1
                    return a_entry.response
                response = perform(entry.idempotency_key)  # may have gone out: send again
                self.crash.hit("after-host-call")
                self.append(HostCall(name, b"", response))
                return response
        key = effect_key(self.worker_id, self.oplog.last_index + 1)
        if not self.recording:
            return perform(key)
        self.append(EffectBegin(name, request, key))
        response = perform(key)
        self.crash.hit("after-host-call")
        self.append(HostCall(name, b"", response))
        return response

    def atomic_begin(self) -> int:
        """Open an atomic region; returns its id (the AtomicBegin's oplog index)."""
        if self._cursor is not None:
            item = self._recorded("atomic_begin")
            if item is not None:
                if type(item[1]) is not AtomicBegin:
                    raise DivergenceError(self.worker_id, item[0], describe(item[1]),
                                          "atomic_begin")
                return item[0]
        return self.append(AtomicBegin(), commit=False) if self.recording else 0

    def atomic_end(self, begin: int) -> None:
        if self._cursor is not None:
            item = self._recorded(f"atomic_end({begin})")
            if item is not None:
                if type(item[1]) is not AtomicEnd or item[1].begin != begin:
                    raise DivergenceError(self.worker_id, item[0], describe(item[1]),
                                          f"atomic_end({begin})")
                return
        self.append(AtomicEnd(begin), commit=False)

    def position(self) -> int:
        """The oplog index the guest has reached: the same live and on replay."""
        if self._cursor is not None and self._cursor.peek() is not None:
            return self._cursor.last
        return self.oplog.last_index

    def log(self, stream: int, data: bytes) -> None:
        """Guest output: recorded then shown when live; checked and suppressed on replay.

        Output shown as it happens is committed first; output a :class:`Deferred`
        caller shows after the invocation (or nobody shows) waits for its end."""
        if self._cursor is not None:
            asked = f"output {data[:40]!r} on fd {stream}"
            item = self._recorded(asked)
            if item is not None:
                index, entry = item
                if type(entry) is not Log or entry.stream != stream or entry.data != data:
                    raise DivergenceError(self.worker_id, index, describe(entry), asked)
                return
        out = self.output
        self.append(Log(stream, data), commit=out is not None
                    and not getattr(out, "deferred", False))
        if out is not None:
            out(stream, data)
