#!/usr/bin/env python3
"""The golemish demo: deploy, invoke, kill -9 mid-invocation, recover.

Runs the real `golemish` command against the embedded default store
(./.golemish, or $GOLEMISH_HOME) and prints each command as a shell would.
Exits non-zero if recovery does not reach the right state.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER = "counter/demo"


def golemish() -> list[str]:
    beside = Path(sys.executable).with_name("golemish")  # this interpreter's install first
    exe = str(beside) if beside.exists() else shutil.which("golemish")
    return [exe] if exe else [sys.executable, "-m", "golemish.runtime.cli"]


def run(*args: str, crash: str | None = None, quiet: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    prefix = ""
    if crash:
        env["GOLEMISH_CRASH_AT"] = crash
        prefix = f"GOLEMISH_CRASH_AT={crash} "
    if not quiet:
        print(f"\n$ {prefix}golemish {shlex.join(args)}", flush=True)
    # stderr joins stdout so messages appear in the order a terminal would show them.
    proc = subprocess.run([*golemish(), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env)
    if not quiet:
        sys.stdout.write(proc.stdout)
        if proc.returncode < 0:
            print(f"[process killed by signal {-proc.returncode} (SIGKILL)]")
    return proc


def main() -> int:
    print("building the counter guest (the first build fills zig's cache: ~20 s)…", flush=True)
    subprocess.run([sys.executable, str(ROOT / "guest_examples/build.py"), "counter"],
                   check=True)
    wasm = ROOT / "guest_examples/build/counter.wasm"
    run("worker", "delete", WORKER, quiet=True)  # start the demo afresh

    run("deploy", str(wasm.relative_to(Path.cwd()) if wasm.is_relative_to(Path.cwd()) else wasm))
    for n in ("5", "7", "30"):
        run("invoke", WORKER, "add", n)

    print("\n# Snapshot the worker's memory now (the adaptive policy would do it on its own")
    print("# once replaying the oplog tail would take long enough to matter):")
    run("worker", "snapshot", WORKER)

    print("\n# Kill the process with SIGKILL inside the next invocation: its clock and random")
    print("# draws and its output line are recorded (committed together, just before the line")
    print("# would leave the process), then the process dies before printing it:")
    dead = run("invoke", WORKER, "add", "100", crash="after-commit:1")
    if dead.returncode != -9:
        print("expected the invocation to be killed", file=sys.stderr)
        return 1
    run("worker", "show", WORKER)

    print("\n# The next command recovers the worker from the snapshot plus the oplog tail,")
    print("# finishes add(100) where it stopped (its line is already recorded, so it is not")
    print("# printed again: `worker oplog` shows it), then runs its own invocation:")
    after = run("invoke", WORKER, "add", "1")
    oplog = run("worker", "oplog", WORKER, "--from", "16")

    cart_ok = cart_demo()

    total = after.stdout.strip().splitlines()[-1] if after.stdout.strip() else ""
    ok = (after.returncode == 0 and total == "143"
          and "finished the interrupted invocation add" in after.stdout
          and "recovered from the snapshot" in after.stdout
          and "add 100 -> total 142" not in after.stdout
          and oplog.stdout.count("add 100 -> total 142") == 1)
    print(f"\n{'OK' if ok else 'FAILED'}: total {total or '?'} (expected 5+7+30+100+1 = 143), "
          "add(100) ran exactly once, its line recorded once")
    print(f"{'OK' if cart_ok else 'FAILED'}: the typed cart kept both items across the kill")
    return 0 if ok and cart_ok else 1


def cart_demo() -> bool:
    """A typed component (WIT + WAVE values) killed mid-invocation, then recovered."""
    print("\n# A typed component: records, lists and options, described in WIT.")
    subprocess.run([sys.executable, str(ROOT / "guest_examples/build.py"), "cart"], check=True,
                   stdout=subprocess.DEVNULL)
    run("worker", "delete", "cart/demo", quiet=True)
    run("deploy", str(ROOT / "guest_examples/build/cart.wasm"), "--wit",
        str(ROOT / "guest_examples/cart.wit"))
    run("invoke", "cart/demo", 'add-item({sku: "apple", qty: 2, price-cents: 150})')
    run("invoke", "cart/demo", 'add-item({sku: "pear", qty: 1, price-cents: 99})',
        crash="after-commit:1")  # its result recorded, then killed before it is printed
    items = run("invoke", "cart/demo", "items")
    run("worker", "oplog", "cart/demo", "--from", "2", "--to", "5")
    return 'sku: "pear"' in items.stdout and 'sku: "apple"' in items.stdout


if __name__ == "__main__":
    sys.exit(main())
