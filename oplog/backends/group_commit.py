"""Group commit: concurrent synced writes share one fsync (leader and followers).

Every committer joins a queue. The one at its head is the *leader*: it takes the
batches waiting behind it (up to ``max_batches``), writes them as one merged
batch with one fsync, wakes their committers and hands the lead to whoever
queued meanwhile. The others (*followers*) just wait. Each committer returns only
once its own batch is durable, and batches are applied in the order they
queued; a merged batch is atomic, so each caller's batch still is.

While the leader's fsync runs, later committers queue up behind it, so batches
grow with concurrency by themselves. ``window_s`` lets a leader wait a little
longer for company, but only when the previous group had company (a lone
client would otherwise pay the window on every commit for nothing).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Default longest wait of a leader for more batches, in seconds.
DEFAULT_WINDOW_S = 0.0002
#: Default most batches in one group.
DEFAULT_MAX_BATCHES = 256


def _env_window() -> float:
    text = os.environ.get("GOLEMISH_COMMIT_WINDOW_MS")
    try:
        ms = float(text) if text else DEFAULT_WINDOW_S * 1e3
    except ValueError:
        ms = -1.0
    if not ms >= 0:
        raise ValueError(f"GOLEMISH_COMMIT_WINDOW_MS={text!r}: expected a number of ms >= 0")
    return ms / 1e3


@dataclass(frozen=True)
class GroupConfig:
    """How long a leader may wait for company, and the most batches per fsync.

    ``GOLEMISH_COMMIT_WINDOW_MS`` sets the window (0: no waiting at all).
    """

    window_s: float = field(default_factory=_env_window)
    max_batches: int = DEFAULT_MAX_BATCHES


class _Waiter:
    __slots__ = ("batch", "event", "done", "error")

    def __init__(self, batch: Any) -> None:
        self.batch = batch
        self.event = threading.Event()
        self.done = False
        self.error: BaseException | None = None


class GroupCommit:
    """Runs ``write_synced(batches)`` for groups of concurrently committed batches."""

    def __init__(self, write_synced: Callable[[Sequence[Any]], None], *,
                 window_s: float = DEFAULT_WINDOW_S,
                 max_batches: int = DEFAULT_MAX_BATCHES) -> None:
        if window_s < 0 or max_batches < 1:
            raise ValueError("group commit: window_s >= 0 and max_batches >= 1")
        self._write = write_synced
        self.window_s = window_s
        self.max_batches = max_batches
        self._cv = threading.Condition(threading.Lock())
        self._queue: list[_Waiter] = []
        self._last_group = 1
        self._gathering = False

    def commit(self, batch: Any) -> None:
        """Write ``batch`` durably, in a group with whoever commits at the same time."""
        w = _Waiter(batch)
        with self._cv:
            self._queue.append(w)
            leader = len(self._queue) == 1
            if self._gathering and len(self._queue) >= self.max_batches:
                self._cv.notify()
        if not leader:
            w.event.wait()
            if w.done:
                if w.error is not None:
                    raise w.error
                return
            # Promoted: the group before ours is written and we head the queue.
        with self._cv:
            if self.window_s and self._last_group > 1:
                deadline = time.monotonic() + self.window_s
                self._gathering = True
                while len(self._queue) < self.max_batches:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                self._gathering = False
            group = self._queue[:self.max_batches]
        error: BaseException | None = None
        try:
            self._write([g.batch for g in group])
        except BaseException as e:  # every member of the group gets the same failure
            error = e
        with self._cv:
            del self._queue[:len(group)]
            self._last_group = len(group)
            nxt = self._queue[0] if self._queue else None
        for g in group:
            g.error, g.done = error, True
            if g is not w:
                g.event.set()
        if nxt is not None:
            nxt.event.set()  # it leads the next group
        if error is not None:
            raise error
