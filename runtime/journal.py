"""Record and replay of a worker's host calls (DESIGN.md invariants 1 and 2).

While *live*, every non-deterministic host call runs for real and its result is
appended to the oplog before the guest sees it; guest output becomes Log
entries, appended before it is shown. While *replaying*, the same calls are
answered from the oplog entries that follow the invocation being re-executed,
output is checked against the recorded Log entries and suppressed, and any
mismatch is a :class:`DivergenceError`. When the recorded entries run out in the
middle of an invocation (the process died there), the journal goes live and the
invocation continues as if nothing happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from golemish.oplog import (
    Entry, HostCall, InvokeEnd, InvokeFailed, InvokeStart, Log, Snapshot, WorkerOplog,
)

from .crash import CrashPoints
from .errors import DivergenceError

OutputFn = Callable[[int, bytes], None]

#: Entries that end an invocation's body; the guest must not read past them.
_BOUNDARY = (InvokeStart, InvokeEnd, InvokeFailed, Snapshot)


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


class Cursor:
    """A one-pass reader over (index, entry) pairs with one entry of lookahead."""

    def __init__(self, entries: Iterator[tuple[int, Entry]]) -> None:
        self._it = entries
        self._peeked: tuple[int, Entry] | None = None
        self._done = False

    def peek(self) -> tuple[int, Entry] | None:
        if self._peeked is None and not self._done:
            self._peeked = next(self._it, None)
            self._done = self._peeked is None
        return self._peeked

    def next(self) -> tuple[int, Entry] | None:
        item = self.peek()
        self._peeked = None
        return item

    def skip_through(self, index: int) -> None:
        """Drop entries up to and including ``index``."""
        while (item := self.peek()) is not None and item[0] <= index:
            self._peeked = None


class Journal:
    """The host's single door to the oplog for one worker instance."""

    def __init__(self, worker_id: str, oplog: WorkerOplog, crash: CrashPoints,
                 output: OutputFn | None = None) -> None:
        self.worker_id = worker_id
        self.oplog = oplog
        self.crash = crash
        self.output = output
        self._cursor: Cursor | None = None
        #: False for an ephemeral worker: calls run live and nothing is written.
        self.recording = True
        #: Host calls answered from the oplog since the last reset, for reports.
        self.replayed_calls = 0

    # -- mode ---------------------------------------------------------------
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
    def append(self, entry: Entry) -> int:
        """Append one entry durably (with the crash points around it)."""
        if not self.recording:
            return 0
        self.crash.hit("before-oplog-append")
        index = self.oplog.append(entry)
        self.crash.hit("after-oplog-append")
        return index

    def host_call(self, name: str, request: bytes, perform: Callable[[], bytes]) -> bytes:
        """Run a non-deterministic call live and record it, or answer it from the oplog."""
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
        if not self.recording:
            return response
        if self.crash.armed:
            self.crash.hit("after-host-call")
            self.append(HostCall(name, request, response))
        else:
            self.oplog.append_host_call(name.encode(), request, response)
        return response

    def log(self, stream: int, data: bytes) -> None:
        """Guest output: recorded then shown when live; checked and suppressed on replay."""
        if self._cursor is not None:
            asked = f"output {data[:40]!r} on fd {stream}"
            item = self._recorded(asked)
            if item is not None:
                index, entry = item
                if type(entry) is not Log or entry.stream != stream or entry.data != data:
                    raise DivergenceError(self.worker_id, index, describe(entry), asked)
                return
        self.append(Log(stream, data))
        if self.output is not None:
            self.output(stream, data)
