"""kill -9 at every crash point of a Python worker's invocation, with an HTTP effect.

The Python agent (guest_examples/python/agent.py) pays through the test kit's HTTP
stub while a child process is killed at each point in turn; recovery here must
finish the invocation, pay exactly once (one Idempotency-Key at the stub) and
leave the interpreter's memory byte for byte equal to a pure replay from Create
(the crash-free run of the recorded history, see runtime/testing/crashes.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from golemish.oplog import Log
from golemish.runtime.errors import Suspended

pytestmark = pytest.mark.chaos

AGENT = Path(__file__).resolve().parents[2] / "guest_examples" / "python" / "agent.py"

# pay() on an existing worker appends InvokeStart, EffectBegin, HostCall (the
# response), Log (the "paid" line), InvokeEnd: every n below is reached.
POINTS = [*(f"{p}:{n}" for p in ("before-oplog-append", "after-oplog-append")
            for n in range(1, 6)),
          "after-host-call:1", "before-invocation:1", "after-invocation:1"]


@pytest.fixture
def agent(golemish_runtime, http_stub):
    golemish_runtime.deploy_python(AGENT)
    http_stub.expect("GET", "/next-action").respond(
        200, body=lambda call: f"pay {100 * int(call.query['round'])}")
    http_stub.expect("POST", "/pay").respond(200, body="ok")
    env = {"AGENT_URL": http_stub.url, "AGENT_SLEEP_MS": "1000"}
    golemish_runtime.call("agent/a", "key", env=env)  # created; its environment fixed
    return "agent/a"


@pytest.mark.parametrize("point", POINTS)
def test_a_python_payment_recovers_the_crash_free_state(golemish_runtime, golemish_crash,
                                                        http_stub, agent, point):
    golemish_runtime.call(agent, "pay", 100)
    name, n = point.split(":")
    out = golemish_crash.crash_at(name, int(n)).invoke(agent, "pay", 250)
    assert out.killed and out.value == "200" and out.equivalent
    paid = http_stub.effects("POST", "/pay")
    assert sorted(c[0].body for c in paid.values()) == [b"100", b"250"]  # one key each
    # Recorded once; shown at most once (by the child, or live by recovery; a line
    # recorded just before the kill is not shown again by replay).
    logs = [e.data for _, e in golemish_runtime.oplog(agent) if isinstance(e, Log)]
    assert sum(b"paid 250 cents" in d for d in logs) == 1
    shown = out.child_stdout + golemish_runtime.stdout(agent)
    assert shown.count("paid 250 cents") <= 1


def test_the_python_agent_loop_killed_mid_payment_pays_once(
        golemish_runtime, golemish_crash, golemish_promises, http_stub, agent):
    with pytest.raises(Suspended):
        golemish_runtime.call(agent, "run", 1)
    promise = golemish_promises.awaited(agent)
    # The approval resumes the loop in a child (host call 1: the promise's answer), which
    # pays and is killed before the answer is recorded; recovery here sends it again
    # with the same key.
    out = golemish_crash.crash_at("after-host-call", 2).complete(promise, "yes")
    assert out.killed and out.value == "100" and out.equivalent
    [(key, calls)] = http_stub.effects("POST", "/pay").items()
    assert len(calls) == 2 and {c.idempotency_key for c in calls} == {key}


def test_the_python_agent_demo_pays_exactly_once_with_a_kill_after_every_step():
    script = Path(__file__).resolve().parents[2] / "scripts" / "agent_demo.py"
    proc = subprocess.run([sys.executable, str(script), "--python", "--rounds", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: 1 payments for 1 approved rounds" in proc.stdout
    assert proc.stdout.count("SIGKILL") >= 8
