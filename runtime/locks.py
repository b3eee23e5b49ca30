"""Per-worker turns for a Runtime shared by many threads.

Invocations of one worker run one at a time, in the order they asked (a ticket
lock, unlike ``threading.Lock``, which lets a newcomer barge past waiters);
different workers run in parallel. A worker's entry exists only while some
thread holds or waits for it, so deleted and idle workers leave nothing behind.

A thread holding worker A's turn that asks for B's (a worker-to-worker call)
while B's holder, directly or through others, waits for A would deadlock: that
cycle is detected when the turn is asked for, and refused with ``CallCycle``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class CallCycle(LookupError):
    """Waiting for this worker would deadlock: its holder waits for one of ours."""


class _Turn:
    __slots__ = ("cond", "next", "serving", "users", "holder")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.next = 0  # next ticket to hand out
        self.serving = 0  # ticket whose turn it is
        self.users = 0  # threads holding or waiting (guarded by WorkerLocks._guard)
        self.holder: int | None = None  # thread ident (guarded by WorkerLocks._guard)


class WorkerLocks:
    """Turns by worker id, in arrival order, with cross-thread cycle detection."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._turns: dict[str, _Turn] = {}
        self._waiting: dict[int, str] = {}  # thread ident -> worker id it waits for

    def busy(self, worker_id: str) -> bool:
        """Someone holds or waits for this worker's turn."""
        with self._guard:
            return worker_id in self._turns

    @contextlib.contextmanager
    def hold(self, worker_id: str) -> Iterator[None]:
        me = threading.get_ident()
        with self._guard:
            turn = self._turns.get(worker_id)
            if turn is None:
                turn = self._turns[worker_id] = _Turn()
            elif turn.holder is not None:
                self._check_cycle(me, worker_id, turn.holder)
            turn.users += 1
            self._waiting[me] = worker_id
            with turn.cond:
                ticket = turn.next
                turn.next += 1
        with turn.cond:
            while turn.serving != ticket:
                turn.cond.wait()
        with self._guard:
            self._waiting.pop(me, None)
            turn.holder = me
        try:
            yield
        finally:
            self._leave(me, worker_id, turn)

    def _leave(self, me: int, worker_id: str, turn: _Turn) -> None:
        with self._guard:
            turn.holder = None
            turn.users -= 1
            if turn.users == 0:
                self._turns.pop(worker_id, None)
        with turn.cond:
            turn.serving += 1
            turn.cond.notify_all()

    def _check_cycle(self, me: int, wanted: str, holder: int) -> None:
        chain = [wanted]
        seen: set[int] = set()
        h: int | None = holder
        while h is not None and h not in seen:
            if h == me:
                raise CallCycle(f"call cycle: {' -> '.join(reversed(chain))} -> {wanted}")
            seen.add(h)
            w = self._waiting.get(h)
            if w is None:
                return
            chain.append(w)
            t = self._turns.get(w)
            h = t.holder if t is not None else None
