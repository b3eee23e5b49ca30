"""Worker filesystems: a durable /data directory and open descriptors that survive kill -9
(recovered by snapshot and by replay), read-only files a component carries (--file)."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from golemish.runtime.errors import ArgumentError

AGENT = textwrap.dedent('''
    log = None

    def note(text: str) -> int:
        with open("/data/notes/n.txt", "a") as f:
            f.write(text)
        with open("/data/notes/n.txt") as f:
            return len(f.read())

    def start_log() -> int:
        import os
        os.makedirs("/data/notes", exist_ok=True)
        global log
        log = open("/data/log.txt", "w+")
        log.write("abc")
        log.flush()
        return log.tell()

    def more(s: str) -> int:
        log.write(s)
        log.flush()
        return log.tell()

    def content(name: str) -> str:
        with open("/data/" + name) as f:
            return f.read()

    def outside() -> str:
        try:
            open("/tmp/x", "w")
        except OSError as e:
            return type(e).__name__
        return "opened"
''')


#: Snapshots only where the test takes one.
OFF = ("--snapshot-policy", "off")


@pytest.mark.chaos
@pytest.mark.parametrize("snapshot_first", [False, True], ids=["replay", "snapshot"])
def test_python_files_and_open_descriptor_survive_sigkill(cli, tmp_path: Path,
                                                          interpreter: None,
                                                          snapshot_first: bool) -> None:
    src = tmp_path / "files.py"
    src.write_text(AGENT)
    cli("deploy", str(src), check=True)
    assert cli(*OFF, "invoke", "files/w", "start_log", check=True).stdout.strip() == "3"
    assert cli(*OFF, "invoke", "files/w", "note", '"hello "', check=True).stdout.strip() == "6"
    assert cli(*OFF, "invoke", "files/w", "more", '"de"', check=True).stdout.strip() == "5"
    if snapshot_first:
        cli("worker", "snapshot", "files/w", check=True)
    # Killed after the write is recorded as done, before the answer goes out.
    dead = cli(*OFF, "invoke", "files/w", "more", '"fg"', env={"GOLEMISH_CRASH_AT": "after-invocation:1"})
    assert dead.returncode == -signal.SIGKILL, dead.stderr
    after = json.loads(cli("--json", *OFF, "invoke", "files/w", "more", '"h"', check=True).stdout)
    assert after["recovery"]["mode"] == ("snapshot" if snapshot_first else "replay")
    assert after["value"] == 8  # the open descriptor's position came back: abc de fg h
    assert cli(*OFF, "invoke", "files/w", "content", '"log.txt"', check=True).stdout.strip() \
        == '"abcdefgh"'
    assert cli(*OFF, "invoke", "files/w", "note", '"world"', check=True).stdout.strip() == "11"
    # Nothing outside the mounts exists for the guest.
    assert cli(*OFF, "invoke", "files/w", "outside", check=True).stdout.strip() == '"FileNotFoundError"'


def test_c_guest_reads_the_files_its_component_carries(make_runtime, guests,
                                                       tmp_path: Path) -> None:
    rt = make_runtime()
    files = [("/etc/files/greeting.txt", b"hi there", True), ("/data/seed.txt", b"seed", False)]
    rt.deploy(guests["files"].read_bytes(), "files", files=files)
    assert rt.invoke("files/a", "greeting_sum").results[0][1] == sum(b"hi there")
    assert rt.invoke("files/a", "write_refused").results[0][1] == 1
    assert rt.invoke("files/a", "touch_seed").results[0][1] == 5
    assert rt.invoke("files/a", "log", ["3"]).results[0][1] == 3
    rt.snapshot("files/a")
    assert rt.invoke("files/a", "log", ["4"]).results[0][1] == 7
    # Each worker starts from the component's files; its changes are its own.
    assert rt.invoke("files/b", "data_size", ["0"]).results[0][1] == 4
    assert rt.invoke("files/b", "data_size", ["1"]).results[0][1] == -1
    rt.close()
    for i, mode in enumerate(("snapshot", "replay")):
        again = make_runtime(recovery=mode)
        got = again.invoke("files/a", "log", ["1"])  # one more byte each round
        assert got.recovery is not None and got.recovery.mode == mode
        assert got.results[0][1] == 8 + i
        assert again.invoke("files/a", "data_size", ["0"]).results[0][1] == 5
        again.close()


def test_file_option_is_checked(cli, guests, tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("x")
    bad = cli("deploy", str(guests["files"]), "--file", f"{f}:/etc/x.txt")
    assert bad.returncode != 0 and "writable files go in /data/" in bad.stderr
    missing = cli("deploy", str(guests["files"]), "--file", f"{tmp_path}/nope:/etc/a/b:ro")
    assert missing.returncode != 0 and "cannot read" in missing.stderr
    ok = cli("deploy", str(guests["files"]), "--file", f"{f}:/etc/a/x.txt:ro", check=True)
    assert ok.stdout.startswith("deployed files v0")
    assert cli("invoke", "files/a", "write_refused", check=True).stdout.strip() == "1"
    with pytest.raises(ArgumentError):
        from golemish.runtime.component_files import parse_file_spec
        parse_file_spec("a:/data/x:rw")
