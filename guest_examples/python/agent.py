"""agent -- a durable agent loop in Python over the golemish host API.

Each round: ask a (fake) LLM endpoint for the next action, sleep durably, wait
on a promise for a human's approval, then pay through a payment endpoint. The
runtime records every step, so killing the process anywhere and resuming never
pays twice: a payment cut off in flight is re-sent with the same
Idempotency-Key, and a recorded one is never sent again. The interpreter's heap
(``paid_total`` below) is the worker's state: no save/load code.

    golemish deploy guest_examples/python/agent.py --allow-http 127.0.0.1:8000
    golemish invoke agent/a run 3 --env AGENT_URL=http://127.0.0.1:8000

AGENT_SLEEP_MS sets the sleep between rounds (default 3000 ms). The smaller
functions exercise one host call each, for tests; the same as guest_examples/agent.c.
"""

import os

import golemish
from golemish import http

paid_total = 0


def _url(path: str) -> str:
    return os.environ.get("AGENT_URL", "http://127.0.0.1:8000") + path


def fetch(n: int) -> int:
    resp = http.get(_url(f"/item?n={n}"), timeout=5)
    print(f"fetched {n}: {resp.text}", flush=True)
    return resp.status


def fetch_url(port: int) -> str:
    """A URL outside loopback, to test the allow-list: 10.255.255.1 is never reached."""
    try:
        http.get(f"http://10.255.255.1:{port}/")
    except golemish.Refused as e:
        return f"refused: {e}"
    return "sent"


def pay(cents: int) -> int:
    resp = http.post(_url("/pay"), str(cents), headers={"Content-Type": "text/plain"},
                     timeout=5)
    print(f"paid {cents} cents: status {resp.status}", flush=True)
    return resp.status


def retrying_pay(cents: int) -> int:
    with golemish.retry(4, min_delay=0.01, max_delay=0.1):
        return pay(cents)


def nap(ms: int) -> int:
    import time
    golemish.sleep(ms / 1000)
    return int(time.time() * 1000)


def _await_approval(what: str) -> bool:
    pid = golemish.promise.create()
    print(f"awaiting approval for {what}: {pid}", flush=True)
    answer = golemish.promise.await_(pid).decode()
    print(f"approval for {what}: {answer}", flush=True)
    return answer.startswith(("yes", "app"))


def approval() -> bool:
    return _await_approval("this")


def delegate(n: int) -> int:
    """Add n on another worker, exactly once (a C counter, or any worker with add)."""
    return golemish.invoke("counter/shared", "add", n)


def key() -> str:
    k = golemish.idempotency_key()
    print(f"key {k} at oplog index {golemish.oplog_index()}", flush=True)
    return k


def atomic_fetch(n: int) -> int:
    """Two fetches that go together: a crash between them runs both again."""
    with golemish.atomic():
        return fetch(n) + fetch(n + 1)


def run(rounds: int) -> int:
    """The agent loop: returns the total paid so far."""
    global paid_total
    sleep_ms = int(os.environ.get("AGENT_SLEEP_MS", "3000"))
    for r in range(1, rounds + 1):
        resp = http.get(_url(f"/next-action?round={r}"), timeout=5)
        if resp.status != 200:
            raise RuntimeError(f"the model answered {resp.status}")
        action = resp.text
        print(f'round {r}: the model says "{action}"', flush=True)
        verb, _, amount = action.partition(" ")
        if verb == "pay" and amount.isdigit() and int(amount) > 0:
            golemish.sleep(sleep_ms / 1000)
            if _await_approval(action) and pay(int(amount)) == 200:
                paid_total += int(amount)
    print(f"done: paid {paid_total} cents in all", flush=True)
    return paid_total
