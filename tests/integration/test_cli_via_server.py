"""Every CLI command gives the same output, --json and exit status in-process and
through a server.

Two identical stores (one built, then copied) get the same command list: one
in-process, one while a `golemish serve` owns it, so that each command there goes
through the API (an in-process CLI could not even open the store). Timings, the
creation time of a worker made during the run, the clock and random values that
invocations during the run recorded (and so the compressed size of snapshot pages
that hold them), and residency (the server keeps workers loaded; in-process nothing
stays loaded) are masked; everything else
must be equal, command by command.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import golemish_cmd
from serverproc import ServerProc

COMMANDS: list[tuple[str, ...]] = [
    ("worker", "list"),
    ("--json", "worker", "list"),
    ("worker", "show", "counter/a"),
    ("--json", "worker", "show", "counter/a"),
    ("invoke", "counter/a", "add", "2"),
    ("invoke", "counter/a", "add", "3", "-k", "key-1"),
    ("invoke", "counter/a", "add", "3", "-k", "key-1"),
    ("worker", "oplog", "counter/a", "--to", "8"),
    ("--json", "worker", "oplog", "counter/a", "--from", "2", "--to", "4"),
    ("worker", "oplog", "counter/a", "--from", "5", "--full"),
    ("worker", "logs", "counter/a"),
    ("--json", "worker", "logs", "counter/a", "--from", "6"),
    ("worker", "snapshot", "counter/a"),
    ("--json", "worker", "snapshot", "counter/b", "--full"),
    ("worker", "config", "counter/a", "--snapshot-policy", "every:5"),
    ("--json", "worker", "config", "counter/b", "--allow-http", "example.com"),
    ("worker", "interrupt", "counter/a"),
    ("worker", "resume", "counter/a"),
    ("component", "list"),
    ("--json", "component", "list"),
    ("component", "show", "counter"),
    ("component", "show", "counter", "--version", "0"),
    ("--json", "component", "show", "counter"),
    ("component", "config", "counter", "--allow-http", "api.example.com"),
    ("promise", "list"),
    ("worker", "fork", "counter/a", "counter/c", "--at", "5"),
    ("invoke", "counter/c", "get"),
    ("worker", "revert", "counter/a", "--last-invocations", "1"),
    ("invoke", "counter/a", "get"),
    ("worker", "update", "counter/b", "--to", "0"),
    ("deploy", "{counter}"),
    ("worker", "delete", "counter/b"),
    ("--json", "worker", "list"),
    # errors: the same one line and exit status
    ("worker", "show", "counter/zz"),
    ("worker", "show", "nonsense"),
    ("worker", "oplog", "counter/zz"),
    ("worker", "snapshot", "counter/zz"),
    ("worker", "delete", "counter/zz"),
    ("worker", "logs", "counter/zz"),
    ("worker", "config", "counter/a", "--snapshot-policy", "bogus"),
    ("invoke", "counter/a", "nope"),
    ("invoke", "counter/a", "add"),
    ("invoke", "nosuch/a", "add", "1"),
    ("component", "show", "nosuch"),
    ("component", "delete", "counter", "--version", "0"),
    ("worker", "revert", "counter/a", "--to-index", "999"),
    ("promise", "complete", "no-such-promise", "x"),
]

_MASKS = [
    (re.compile(r"\d+(\.\d+)? ms\b"), "<t> ms"),
    (re.compile(r'"(seconds|restore_seconds|duration_ns|created_at|uptime_s)": [0-9.e+-]+'),
     r'"\1": <t>'),
    (re.compile(r'"resident": (true|false)'), '"resident": <r>'),
    # clocks and randomness recorded by invocations made during the run
    (re.compile(r"(clock_time_get|random_get) req=(\S+) resp=[0-9a-f]+"), r"\1 req=\2 resp=<v>"),
    (re.compile(r"resident: +(yes|no) \([^)]*\)"), "resident: <r>"),
    # compressed snapshot sizes: the pages hold those random values, and zstd's output
    # for them varies by a few bytes
    (re.compile(r"[\d,]+ bytes stored"), "<n> bytes stored"),
    (re.compile(r'"(snapshot_stored_bytes|stored_bytes|compression_ratio)": [0-9.e+-]+'),
     r'"\1": <n>'),
]


def _masked(text: str, created: list[str]) -> str:
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    for stamp in created:  # the creation time of a worker made during the run
        text = text.replace(stamp, "<created>")
    return text


def _run(home: str, args: tuple[str, ...], guests) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOLEMISH_SERVER", "GOLEMISH_SERVER_TOKEN")}
    env["GOLEMISH_HOME"] = home
    argv = [a.format(**{k: str(v) for k, v in guests.items()}) for a in args]
    return subprocess.run([*golemish_cmd(), *argv], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, guests):
    base = tmp_path_factory.mktemp("parity")
    local, remote = str(base / "local"), str(base / "remote")
    for args in (("deploy", "{counter}"), ("invoke", "counter/a", "add", "5"),
                 ("invoke", "counter/b", "add", "1")):
        assert _run(local, args, guests).returncode == 0
    shutil.copytree(local, remote)
    here = [_run(local, c, guests) for c in COMMANDS]
    server = ServerProc(remote, "--idle-timeout", "0")
    try:
        there = [_run(remote, c, guests) for c in COMMANDS]
    finally:
        assert server.stop() == 0
    return here, there


def _created_stamps(results: list[subprocess.CompletedProcess[str]]) -> list[str]:
    """Date-times in the output that name when counter/c was created (by the fork)."""
    out = []
    for r in results:
        for line in r.stdout.splitlines():
            if line.startswith("counter/c"):
                out += re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line)
    return out


@pytest.mark.parametrize("i", range(len(COMMANDS)), ids=[" ".join(c) for c in COMMANDS])
def test_same_output_in_process_and_through_the_server(outcomes, i):
    here, there = outcomes
    created = _created_stamps(here) + _created_stamps(there)
    a, b = here[i], there[i]
    assert (a.returncode, _masked(a.stdout, created), _masked(a.stderr, created)) == \
        (b.returncode, _masked(b.stdout, created), _masked(b.stderr, created))


def test_the_server_run_really_went_through_the_api(outcomes):
    """While the server owned the store, no command opened it in-process."""
    _, there = outcomes
    assert not any("in use" in r.stderr for r in there)
    assert there[0].returncode == 0


#: Runs the CLI (argv after the output path) and writes which of the runtime's heavy
#: modules it loaded to that path, at exit.
_PROBE = """
import atexit, runpy, sys
out = sys.argv.pop(1)
sys.argv[0] = "golemish"
heavy = ("wasmtime", "golemish.runtime.engine", "golemish.runtime.executor")
atexit.register(lambda: open(out, "w").write(" ".join(m for m in heavy if m in sys.modules)))
runpy.run_module("golemish.runtime.cli", run_name="__main__")
"""


def test_commands_a_server_answers_never_load_the_engine(tmp_path, guests):
    home = str(tmp_path / "store")
    assert _run(home, ("deploy", "{counter}"), guests).returncode == 0
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GOLEMISH_")},
           "GOLEMISH_HOME": home}
    out = tmp_path / "loaded.txt"

    def loaded(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(out), *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return out.read_text()

    server = ServerProc(home)
    try:
        for args in (("invoke", "counter/a", "add", "1"), ("worker", "show", "counter/a"),
                     ("--json", "worker", "list"), ("worker", "oplog", "counter/a"),
                     ("worker", "logs", "counter/a"), ("component", "show", "counter"),
                     ("promise", "list"), ("server", "status"), ("--help",)):
            assert loaded(*args) == "", args
    finally:
        assert server.stop() == 0
    # The same command in-process needs them all: what the probe sees is real.
    assert loaded("invoke", "counter/a", "add", "1").split() == [
        "wasmtime", "golemish.runtime.engine", "golemish.runtime.executor"]
