"""The in-memory backend under many threads: batches stay whole, scans stay sorted."""

from __future__ import annotations

import sys
import threading

from golemish.oplog.backends.memory import MemoryBackend


def test_concurrent_writes_and_scans_lose_nothing_and_stay_sorted():
    b = MemoryBackend()
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(400):
                # interleaved, out of order across threads: the key list needs sorting
                b.write([("oplog", b"%03d-%05d" % (i % 7, t * 1000 + i), b"v"),
                         ("oplog", b"%03d-%05d-x" % (i % 7, t * 1000 + i), b"w")])
                if i % 5 == 0:
                    b.put("oplog", b"%03d-%05d" % (i % 7, t * 1000 + i), b"again")
                if i % 50 == 0:
                    keys = [k for k, _ in b.scan("oplog", b"")]
                    assert keys == sorted(keys)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[:1]
    keys = [k for k, _ in b.scan("oplog", b"")]
    assert len(keys) == 8 * 400 * 2 and keys == sorted(keys) and len(set(keys)) == len(keys)
