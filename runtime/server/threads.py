"""The server's thread hop: run a blocking call in a worker thread, await it on the loop.

``anyio.to_thread.run_sync`` costs about 100 µs of GIL time per call here (a capacity
limiter, a cancel scope, a weak-keyed per-loop lookup, a ``queue.Queue`` with its
condition variables, measured with py-spy under 64 concurrent invocations). This hop
is a ``queue.SimpleQueue`` (C, no condition variable) of jobs, at most ``threads``
threads started as needed, and ``call_soon_threadsafe`` to hand the result back.

As with anyio's default, cancelling the awaiting task does not stop the call: the
thread finishes it (an invocation is never cut off half-way by a client going away)
and its result is dropped.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = None


class ThreadHop:
    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError("threads should be at least 1")
        self.max = threads
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0  # threads waiting for a job (a hint: read under _lock)
        self._threads: list[threading.Thread] = []

    async def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._jobs.put((loop, fut, fn, args, kw))
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # that thread takes the job
            elif self._started < self.max:
                self._started += 1
                t = threading.Thread(target=self._work, name=f"golemish-api-{self._started}",
                                     daemon=True)
                self._threads.append(t)
                t.start()
        return await fut

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            loop, fut, fn, args, kw = job
            try:
                result = fn(*args, **kw)
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
                _hand(loop, fut, None, e)
            else:
                _hand(loop, fut, result, None)
            with self._lock:
                self._idle += 1

    def stop(self) -> None:
        """Let the threads end once the jobs queued before have run."""
        with self._lock:
            n, self._started = self._started, self.max  # no new threads from now
        for _ in range(n):
            self._jobs.put(_STOP)


def _hand(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], result: Any,
          error: BaseException | None) -> None:
    def settle() -> None:
        if fut.cancelled():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop has closed: nobody awaits the result any more
        pass
