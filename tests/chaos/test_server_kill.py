"""SIGKILL of `golemish serve` under concurrent load, with idempotency keys.

Eight client threads invoke ``add 1`` on four workers, each call with a key of
its own. The server is killed with SIGKILL mid-load and started again. Then a
client does what a careful client does: it sends again, with the same key, every
call whose answer it never got. Afterwards, on every worker:

- every acknowledged key is in the oplog exactly once (nothing acknowledged lost);
- no key is in the oplog twice, and the counter equals the number of keyed calls
  recorded (nothing applied twice, also not the re-sent ones);
- every call is accounted for: acknowledged before the kill, or re-sent after it.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter

import httpx
import pytest

from conftest import golemish_cmd
from serverproc import ServerProc

pytestmark = pytest.mark.chaos

WORKERS = [f"counter/w{i}" for i in range(4)]


def _keys_in_oplog(s: ServerProc, worker: str) -> list[str]:
    keys, start = [], 1
    while True:
        page = s.http.get(f"/workers/{worker}/oplog", params={"start": start,
                                                               "limit": 1000}).json()
        keys += [e["idempotency_key"] for e in page
                 if e["kind"] == "invoke" and e.get("idempotency_key")]
        if len(page) < 1000:
            return keys
        start = page[-1]["index"] + 1


def test_sigkill_under_load_then_restart_every_acknowledged_call_exactly_once(home, guests):
    subprocess.run([*golemish_cmd(), "--home", home, "deploy", str(guests["counter"])],
                   check=True, capture_output=True)
    s = ServerProc(home, "--idle-timeout", "0")
    acked: dict[str, set[str]] = {w: set() for w in WORKERS}
    unknown: dict[str, set[str]] = {w: set() for w in WORKERS}
    lock = threading.Lock()
    stop = threading.Event()
    started = threading.Barrier(9)

    def client(t: int) -> None:
        with httpx.Client(base_url=s.url, timeout=30) as http:
            started.wait()
            i = 0
            while not stop.is_set():
                w, key = WORKERS[(t + i) % len(WORKERS)], f"t{t}-{i}"
                i += 1
                try:
                    r = s.invoke(w, "add", "1", key=key, client=http)
                except httpx.HTTPError:
                    with lock:
                        unknown[w].add(key)  # sent; whether it ran, we cannot tell
                    return
                with lock:
                    (acked if r.status_code == 200 else unknown)[w].add(key)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    started.wait()
    deadline = time.monotonic() + 60
    while sum(len(a) for a in acked.values()) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)  # enough load that the kill lands among many calls
    assert s.stop(signal.SIGKILL) == -signal.SIGKILL
    stop.set()
    for t in threads:
        t.join(60)
    assert all(acked.values()), acked

    s2 = ServerProc(home, "--idle-timeout", "0")  # server.json is stale: replaced
    try:
        for w in WORKERS:
            for key in sorted(unknown[w]):  # the careful client re-sends, same key
                r = s2.invoke(w, "add", "1", key=key)
                assert r.status_code == 200, r.text
        for w in WORKERS:
            keys = _keys_in_oplog(s2, w)
            counts = Counter(keys)
            assert [k for k, n in counts.items() if n > 1] == [], f"{w}: a key ran twice"
            assert acked[w] <= set(keys), f"{w}: acknowledged calls lost"
            assert set(keys) == acked[w] | unknown[w], f"{w}: calls nobody sent"
            assert s2.get(w) == len(keys), f"{w}: the counter disagrees with its oplog"
            info = s2.http.get(f"/workers/{w}").json()
            assert info["status"] == "idle"
    finally:
        assert s2.stop() == 0
