"""The epoch ticker starts once, however many threads instantiate at the same time.

Two tickers would advance epochs twice as fast and so halve every time limit."""

from __future__ import annotations

import sys
import threading

from golemish.runtime.engine import Engine


def test_concurrent_first_instantiations_start_one_ticker():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: widen any race
    try:
        for _ in range(20):
            engine = Engine()
            before = {t for t in threading.enumerate() if t.name == "golemish-epoch"}
            barrier = threading.Barrier(16)

            def start() -> None:
                barrier.wait()
                engine._start_ticker()

            threads = [threading.Thread(target=start) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            started = {t for t in threading.enumerate()
                       if t.name == "golemish-epoch"} - before
            engine.close()
            assert len(started) == 1
    finally:
        sys.setswitchinterval(old)
