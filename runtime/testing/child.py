"""The process the crash helpers kill: one runtime action on the test's store.

    python -m golemish.runtime.testing.child SPEC.json

SPEC names the store, the action (``invoke``, ``resume`` or ``complete``) and
its arguments, the runtime settings of the test's runtime (HTTP allow-list,
limits, snapshot policy, crash points) and, for a virtual clock, the instant
it stands at. Guest output goes to stdout as it is recorded (the parent can kill
on a line). The virtual time is written to ``clock_file`` whenever it moves, so
the parent continues from the time the child reached. With ``kill_on_output``
the child kills itself with SIGKILL as soon as its guest has printed that text.
The outcome is written
as JSON to ``result_file``; exit code 0 (done) or 3 (suspended).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ..crash import CrashPoints
from ..errors import Suspended
from ..executor import Runtime, RuntimeConfig
from ..snapshot.policy import SnapshotPolicy
from .clock import VirtualClock


#: The line on stderr that says the runtime is open and the action begins.
READY = "golemish-child: running"


class _RecordedClock(VirtualClock):
    def __init__(self, path: Path, **kw: Any) -> None:
        super().__init__(**kw)
        self._path = path

    def _moved(self) -> None:
        self._path.write_text(str(self.time_ns()))

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self._moved()


class _Output:
    """Guest output to our stdout/stderr; SIGKILL once ``marker`` has been printed."""

    def __init__(self, marker: str | None) -> None:
        self.marker = marker
        self.seen = ""

    def __call__(self, stream: int, data: bytes) -> None:
        out = sys.stdout if stream == 1 else sys.stderr
        out.buffer.write(data)
        out.flush()
        if self.marker is not None:
            self.seen = (self.seen + data.decode("utf-8", "replace"))[-4096:]
            if self.marker in self.seen:
                # The line is recorded and shown: die here, as a kill -9 from outside
                # at this moment would, without racing the rest of the invocation.
                os.kill(os.getpid(), signal.SIGKILL)


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    cfg = spec["config"]
    clock_spec = spec.get("clock")
    clock = (_RecordedClock(Path(spec["clock_file"]), start_ns=clock_spec["time_ns"],
                            monotonic_start_ns=clock_spec["monotonic_ns"],
                            auto_skip=clock_spec["auto_skip"])
             if clock_spec else None)
    config = RuntimeConfig(home=spec["home"], http_allow=tuple(cfg["http_allow"]),
                           time_limit=cfg["time_limit"], memory_limit=cfg["memory_limit"],
                           snapshot_policy=SnapshotPolicy.parse(cfg["snapshot_policy"]),
                           suspend_after_s=cfg["suspend_after_s"], sync=cfg["sync"],
                           recovery=cfg["recovery"], crash=CrashPoints(spec.get("crash")))
    if clock is not None:
        config.clock = clock
    _write = _Output(spec.get("kill_on_output"))
    result: dict[str, Any] = {}
    code = 0
    with Runtime(config) as rt:
        # The parent times an outside kill from here, not from our start-up.
        sys.stderr.write(f"{READY}\n")
        sys.stderr.flush()
        try:
            if spec["action"] == "invoke":
                res = rt.invoke(spec["worker"], spec["function"], spec["args"],
                                idempotency_key=spec.get("key"), output=_write,
                                env=[tuple(p) for p in spec.get("env", [])])
                result["results"] = res.results
            elif spec["action"] == "resume":
                rt.resume(spec["worker"], output=_write)
            else:
                rt.complete_promise(spec["promise"], bytes.fromhex(spec["data"]), output=_write)
        except Suspended as s:
            result["suspended"] = s.as_meta()
            code = 3
    Path(spec["result_file"]).write_text(json.dumps(result))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
