"""``server.json``: where a running `golemish serve` says it serves.

The server writes it into the store directory once its API answers (pid, URL,
whether it wants a token) and removes it when it exits; CLI commands on the same
``--home`` read it to go through the server. Nothing here loads the runtime
(the executor, the engine): a command that a server answers never does.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from golemish.oplog.store import store_path

SERVER_FILE = "server.json"


def server_file(home: str) -> Path | None:
    path = store_path(home)
    return Path(path) / SERVER_FILE if path is not None else None


def read_server_file(home: str) -> dict[str, Any] | None:
    """The running server's record for ``home``, if its process is alive."""
    f = server_file(home)
    if f is None:
        return None
    try:
        info = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and _alive(info.get("pid")) else None


def _alive(pid: Any) -> bool:
    """A live golemish server process with this pid (not a reused pid)."""
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust kill(0)
    return b"serve" in cmdline


def stale_server_file(home: str) -> dict[str, Any] | None:
    """A server.json whose process is gone (killed with -9, say): removed, and its
    record returned so that the caller can say so. None if there is none or it is live."""
    f = server_file(home)
    if f is None:
        return None
    try:
        raw = f.read_bytes()
        info = json.loads(raw)
    except OSError:
        return None
    except ValueError:
        info = {"pid": None}
    if not isinstance(info, dict):
        info = {"pid": None}
    if _alive(info.get("pid")):
        return None
    try:
        if f.read_bytes() == raw:  # not replaced by a server starting just now
            f.unlink()
    except OSError:
        pass
    return info


def wait_until_serving(home: str, proc: subprocess.Popen, timeout: float = 30.0) -> str | None:
    """The URL of the server ``proc`` started for ``home``, once it has written its record;
    None if it exits or the timeout passes first (for tests and benchmarks)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        info = read_server_file(home)
        if info is not None and info.get("pid") == proc.pid:
            return str(info["url"])
        time.sleep(0.005)
    return None
