"""Ctrl-C and SIGTERM stop a running `golemish invoke` at once, leaving the worker usable.

A real subprocess runs a guest that prints one line (so the test knows guest code
runs) and then loops forever or sleeps for long; the test sends the signal and
checks that the process ends quickly with 128+signal, says what it did, and that
the worker's state is the one from before the interrupted call.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import time

import pytest

from conftest import golemish_cmd, wat

P = "wasi_snapshot_preview1"

# poll_oneoff subscription: userdata, clock tag, monotonic clock, 30 s timeout, relative.
_SUB = struct.pack("<QB7xI4xQQH6x", 7, 0, 1, 30_000_000_000, 0, 0)
_SUB_TEXT = "".join("\\%02x" % b for b in _SUB)

GUEST = wat(f"""
(module
  (import "{P}" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "{P}" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 200) "started\\n")
  (data (i32.const 300) "{_SUB_TEXT}")
  (func $bump (i32.store (i32.const 100) (i32.add (i32.load (i32.const 100)) (i32.const 1))))
  (func $say
    (i32.store (i32.const 16) (i32.const 200)) (i32.store (i32.const 20) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))))
  (func (export "add") (result i32) (call $bump) (i32.load (i32.const 100)))
  (func (export "get") (result i32) (i32.load (i32.const 100)))
  (func (export "spin") (result i32)
    (call $bump) (call $say)
    (loop $l (br $l))
    (i32.const 0))
  (func (export "wait") (result i32)
    (call $bump) (call $say)
    (drop (call $poll (i32.const 300) (i32.const 400) (i32.const 1) (i32.const 24)))
    (i32.const 0)))
""")


@pytest.fixture
def spinner(cli, tmp_path):
    path = tmp_path / "spinner.wasm"
    path.write_bytes(GUEST)
    cli("deploy", str(path), check=True)
    assert cli("invoke", "spinner/w", "add", check=True).stdout.strip() == "1"
    return "spinner/w"


@pytest.mark.parametrize("function", ["spin", "wait"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_interrupts_the_invocation_and_the_worker_stays_as_before(
        spinner, cli, home, sig, function):
    env = {**os.environ, "GOLEMISH_HOME": home, "GOLEMISH_TIME_LIMIT": "60"}
    env.pop("GOLEMISH_CRASH_AT", None)
    proc = subprocess.Popen([*golemish_cmd(), "invoke", spinner, function], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "started\n"  # guest code is running
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:  # it did not stop: kill it, and reap it and its pipes
            proc.kill()
            proc.communicate()
    assert elapsed < 5, f"took {elapsed:.2f} s to stop"  # about 0.05 s when idle
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines() == [
        f"interrupted: {spinner} {function} was abandoned (recorded as failed, as "
        "`worker interrupt` does); the worker's state is as before the call"]
    # The next command finds the worker as it was before the call, with nothing pending.
    assert "status:         idle" in cli("worker", "show", spinner, check=True).stdout
    resumed = cli("worker", "resume", spinner, check=True)
    assert "finished the interrupted invocation" not in resumed.stdout
    assert cli("invoke", spinner, "get", check=True).stdout.strip() == "1"
    oplog = cli("worker", "oplog", spinner, check=True).stdout
    assert f"interrupted by {sig.name}" in oplog

