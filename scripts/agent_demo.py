#!/usr/bin/env python3
"""The agent demo: a durable agent killed with SIGKILL after every step, paying once.

The agent guest asks a fake LLM (a local HTTP service) what to do, sleeps
durably, waits for a human's approval on a promise, and pays through a payment
endpoint. Every `golemish` process that drives it is killed right after it
makes one step of progress (one oplog entry, or one outside call before its
answer is recorded); the next process resumes where the last one died. At the
end the payment endpoint must have seen each payment exactly once.

    python scripts/agent_demo.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from golemish.runtime.testing import EffectSink

ROOT = Path(__file__).resolve().parent.parent
WORKER = "agent/demo"


def golemish() -> list[str]:
    beside = Path(sys.executable).with_name("golemish")  # this interpreter's install first
    exe = str(beside) if beside.exists() else shutil.which("golemish")
    return [exe] if exe else [sys.executable, "-m", "golemish.runtime.cli"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    subprocess.run([sys.executable, str(ROOT / "guest_examples/build.py"), "agent"], check=True)
    home = tempfile.mkdtemp(prefix="golemish-agent-")
    env = {**os.environ, "GOLEMISH_HOME": home}
    env.pop("GOLEMISH_CRASH_AT", None)

    def run(*cmd: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
        e = dict(env, GOLEMISH_CRASH_AT=crash) if crash else env
        return subprocess.run([*golemish(), *cmd], env=e, capture_output=True, text=True)

    with EffectSink() as sink:
        # Guests reach nothing by default, loopback included: allow the sink only.
        run("deploy", str(ROOT / "guest_examples/build/agent.wasm"), "--allow-http", sink.address)
        print(f"store {home}; fake LLM and payment endpoint at {sink.url}\n")
        start = ["invoke", WORKER, "run", str(args.rounds), "--env", f"AGENT_URL={sink.url}",
                 "--env", "AGENT_SLEEP_MS=2500"]
        cmd = start
        kills = steps = 0
        while steps < 400:
            steps += 1
            # Alternate: die right after one new oplog entry, or right after an outside
            # call ran but before its answer was recorded.
            crash = "after-oplog-append:1" if steps % 3 else "after-host-call:1"
            proc = run(*cmd, crash=crash)
            for line in proc.stdout.splitlines():
                if not line.startswith("worker "):  # recovery reports: one per process
                    print(f"  guest | {line}")
            if proc.returncode == -9:
                kills += 1
                print(f"[kill {kills}] SIGKILL at {crash}")
                # Died before the invocation was recorded? Then it never happened: send
                # it again. Otherwise the next process finishes it.
                shown = run("--json", "worker", "show", WORKER)
                recorded = shown.returncode == 0 and '"invocations": 0' not in shown.stdout
                cmd = ["worker", "resume", WORKER, "--wait"] if recorded else start
                continue
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            if "awaiting promise" in proc.stderr:
                promise = proc.stderr.split("awaiting promise ")[1].split(";")[0]
                print(f"[human] approves {promise}")
                cmd = ["promise", "complete", promise, "approve"]
                continue
            if "sleeping until" in proc.stderr:
                cmd = ["worker", "resume", WORKER, "--wait"]
                continue
            if "done: paid" in proc.stdout or "finished run" in proc.stderr \
                    or "finished the interrupted invocation run" in proc.stdout:
                break
            cmd = ["worker", "resume", WORKER, "--wait"]
        else:
            print("gave up after 400 steps", file=sys.stderr)
            return 1

        print(f"\n{kills} kills. Payment endpoint saw:")
        for key, body in sink.payments.items():
            print(f"  key {key[:12]}…  {body} cents  delivered {sink.deliveries[key]}x")
        expected = [str(100 * r) for r in range(1, args.rounds + 1)]
        ok = sorted(sink.payments.values(), key=int) == expected
        print(f"\n{'OK' if ok else 'FAILED'}: {len(sink.payments)} payments for "
              f"{args.rounds} approved rounds, each one effect at the endpoint "
              "(re-deliveries carry the same Idempotency-Key)")
    shutil.rmtree(home, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
