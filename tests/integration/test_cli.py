"""The `golemish` command, run as a real subprocess: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
import wasmtime

from conftest import ROOT, golemish_cmd


def one_line_error(proc, *fragments):
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.fixture
def counter(cli, guests):
    cli("deploy", str(guests["counter"]), check=True)
    return guests["counter"]


def test_deploy_invoke_and_inspect(cli, counter):
    again = cli("deploy", str(counter), check=True)
    assert "already has these bytes" in again.stdout
    first = cli("invoke", "counter/alice", "add", "5", check=True)
    assert first.stdout.splitlines() == ["add 5 -> total 5 (entry 1)", "5"]
    assert cli("invoke", "counter/alice", "add", "-2", check=True).stdout.endswith("3\n")
    res = json.loads(cli("--json", "invoke", "counter/alice", "get", check=True).stdout)
    assert res["results"] == [{"type": "i64", "value": 3}]

    listing = cli("worker", "list", check=True).stdout
    assert "counter/alice" in listing and "idle" in listing
    oplog = json.loads(cli("--json", "worker", "oplog", "counter/alice", "--from", "2",
                           "--to", "3", check=True).stdout)
    assert [e["index"] for e in oplog] == [2, 3]
    assert oplog[0]["kind"] == "invoke" and oplog[0]["function"] == "add"
    text = cli("worker", "oplog", "counter/alice", check=True).stdout
    assert "stdout 'add 5 -> total 5 (entry 1)'" in text
    shown = cli("component", "show", "counter", check=True).stdout
    assert "add (i64) -> i64" in shown and "wasi_snapshot_preview1.random_get" in shown
    assert "counter" in cli("component", "list", check=True).stdout
    assert cli("worker", "delete", "counter/alice", check=True).returncode == 0
    assert "counter/alice" not in cli("worker", "list", check=True).stdout


def test_bad_wasm_and_missing_imports(cli, tmp_path):
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"this is not wasm")
    one_line_error(cli("deploy", str(bad)), "not a valid WebAssembly module")
    needy = tmp_path / "needy.wasm"
    needy.write_bytes(wasmtime.wat2wasm(
        '(module (import "golemish" "sleep" (func)) (import "x" "y" (func)))'))
    one_line_error(cli("deploy", str(needy)), "golemish.sleep", "x.y")
    one_line_error(cli("deploy", str(tmp_path / "absent.wasm")), "absent.wasm")


def test_invocation_errors(cli, counter):
    one_line_error(cli("invoke", "counter/a", "nope"), "exports no function 'nope'", "add")
    one_line_error(cli("invoke", "counter/a", "add"), "add(i64) takes 1 argument, got 0")
    one_line_error(cli("invoke", "counter/a", "add", "five"), "'five' is not a valid i64")
    one_line_error(cli("invoke", "nothing/a", "add", "1"), "no component named 'nothing'")
    one_line_error(cli("invoke", "counter", "add", "1"), "COMPONENT/NAME")
    one_line_error(cli("worker", "show", "counter/ghost"), "no worker counter/ghost")


def test_guest_failures_are_one_line_and_the_worker_goes_on(cli, counter):
    cli("invoke", "counter/a", "add", "5", check=True)
    one_line_error(cli("invoke", "counter/a", "add_then_trap", "1"), "guest trapped")
    one_line_error(cli("invoke", "counter/a", "spin", env={"GOLEMISH_TIME_LIMIT": "0.3"}),
                   "time limit")
    bomb = cli("invoke", "counter/b", "hog", "500", "--memory-limit", "16", check=True)
    assert int(bomb.stdout.split()[-1]) < 16
    assert cli("invoke", "counter/a", "get", check=True).stdout.strip() == "5"


def test_corrupt_store_is_reported_not_used(cli, counter, home):
    from golemish.oplog import open_store

    cli("invoke", "counter/a", "add", "5", check=True)
    with open_store(home) as store:
        key = b"counter/a\0" + (2).to_bytes(8, "big")
        raw = bytearray(store.backend.get("oplog", key))
        raw[-1] ^= 0xFF
        store.backend.put("oplog", key, bytes(raw))
    one_line_error(cli("--recovery", "replay", "invoke", "counter/a", "get"),
                   "corrupt oplog entry at counter/a index 2")


def test_busy_store_names_the_owner(cli, counter, home):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from golemish.oplog import open_store; "
         f"s = open_store({home!r}); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        one_line_error(cli("invoke", "counter/a", "get"), f"in use by pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert cli("invoke", "counter/a", "get", check=True).returncode == 0


def test_crash_at_flag_kills_and_the_next_command_recovers(cli, counter):
    cli("invoke", "counter/a", "add", "1", check=True)
    # After the invocation's first commit (its entries are written before its output
    # leaves the process), before the output is shown.
    dead = cli("invoke", "counter/a", "add", "10", "--crash-at", "after-commit:1")
    assert dead.returncode == -9
    assert dead.stdout == ""  # killed after the line was recorded, before it was shown
    shown = cli("worker", "show", "counter/a", check=True).stdout
    assert "interrupted" in shown
    resumed = cli("worker", "resume", "counter/a", check=True)
    assert "finished the interrupted invocation add" in resumed.stdout
    assert "-> 11" in resumed.stdout
    # The line was recorded once before the kill; recovery does not print it again.
    assert "add 10 -> total 11" not in resumed.stdout
    oplog = cli("worker", "oplog", "counter/a", check=True).stdout
    assert oplog.count("add 10 -> total 11") == 1, oplog
    assert cli("invoke", "counter/a", "get", check=True).stdout.strip() == "11"


def test_help_runs_without_a_store(tmp_path):
    proc = subprocess.run([*golemish_cmd(), "--help"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0 and "invoke" in proc.stdout
    assert not (tmp_path / ".golemish").exists()


def _spawn(home, args, **popen):
    """Run golemish with the given stdout; (returncode, stderr)."""
    env = {**os.environ, "GOLEMISH_HOME": home, "GOLEMISH_TIME_LIMIT": "10"}
    env.pop("GOLEMISH_CRASH_AT", None)
    proc = subprocess.run([*golemish_cmd(), *args], stderr=subprocess.PIPE, text=True,
                          env=env, timeout=120, **popen)
    return proc.returncode, proc.stderr


def _took_effect_once(cli, total):
    assert cli("invoke", "counter/a", "get", check=True).stdout.strip() == str(total)
    oplog = json.loads(cli("--json", "worker", "oplog", "counter/a", check=True).stdout)
    assert [e["kind"] for e in oplog].count("failed") == 0
    assert [e.get("function") for e in oplog].count("add") == 2


def test_a_full_stdout_does_not_roll_back_the_invocation(cli, counter, home):
    cli("invoke", "counter/a", "add", "5", check=True)
    with open("/dev/full", "w") as full:
        rc, err = _spawn(home, ["invoke", "counter/a", "add", "7"], stdout=full)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "No space left on device" in lines[0] and "completed" in lines[0]
    _took_effect_once(cli, 12)


def test_a_closed_stdout_does_not_roll_back_the_invocation(cli, counter, home):
    cli("invoke", "counter/a", "add", "5", check=True)
    rc, err = _spawn(home, ["invoke", "counter/a", "add", "7"],
                     preexec_fn=lambda: os.close(1))
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "closed" in lines[0], err
    _took_effect_once(cli, 12)
    assert cli("store", "check", check=True).returncode == 0  # nothing landed in the store


@pytest.mark.parametrize("as_json", [False, True])
def test_a_reader_that_exits_early_stops_us_quietly(cli, counter, home, as_json):
    cli("invoke", "counter/a", "add", "5", check=True)
    r, w = os.pipe()
    os.close(r)  # the reader is gone before anything is written (`| head -0`)
    try:
        rc, err = _spawn(home, [*(["--json"] if as_json else []), "invoke", "counter/a",
                                "add", "7"], stdout=w)
    finally:
        os.close(w)
    assert rc == 141  # as if SIGPIPE had ended us, like other Unix tools
    assert "Traceback" not in err and "Exception" not in err
    assert err == ("add 7 -> total 12 (entry 2)\n" if as_json else "")  # the guest's line
    _took_effect_once(cli, 12)


def test_a_reused_idempotency_key_is_refused_for_another_call(cli, counter):
    assert cli("invoke", "counter/a", "add", "5", "-k", "pay-1", check=True).stdout \
        .endswith("5\n")
    one_line_error(cli("invoke", "counter/a", "add", "6", "-k", "pay-1"),
                   "'pay-1'", "already used for add(5)", "not add(6)")
    one_line_error(cli("invoke", "counter/a", "get", "-k", "pay-1"),
                   "'pay-1'", "already used for add(5)", "not get()")
    same = cli("invoke", "counter/a", "add", "5", "-k", "pay-1", check=True)
    assert same.stdout == "5\n" and "seen before" in same.stderr
    assert cli("invoke", "counter/a", "get", check=True).stdout.strip() == "5"


@pytest.fixture
def cart(cli, guests):
    cli("deploy", str(guests["cart"]), "--wit", str(ROOT / "guest_examples/cart.wit"),
        check=True)


def test_a_deduplicated_json_invoke_carries_the_value(cli, cart):
    cli("invoke", "cart/a", 'add-item({sku: "apple", qty: 2, price-cents: 150})', check=True)
    first = json.loads(cli("--json", "invoke", "cart/a", "items", "-k", "i", check=True).stdout)
    again = json.loads(cli("--json", "invoke", "cart/a", "items", "-k", "i", check=True).stdout)
    assert first["value"] == [{"sku": "apple", "qty": 2, "price-cents": 150}]
    assert again["deduplicated"] and again["value"] == first["value"]
    assert again["results"] == first["results"]
    one_line_error(cli("invoke", "cart/a", 'add-item({sku: "pear", qty: 1, price-cents: 99})',
                       "-k", "i"), "'i'", "already used for items()")


def test_json_and_debug_work_after_the_command_too(cli, counter):
    res = json.loads(cli("invoke", "counter/a", "add", "-3", "--json", check=True).stdout)
    assert res["results"] == [{"type": "i64", "value": -3}]
    oplog = json.loads(cli("worker", "oplog", "counter/a", "--json", "--to", "2",
                           check=True).stdout)
    assert [e["kind"] for e in oplog] == ["create", "invoke"]
    debug = cli("invoke", "counter/a", "add", "x", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    # After `--`, a guest argument that looks like our option is the guest's.
    one_line_error(cli("invoke", "counter/a", "add", "--", "--json"), "'--json' is not a valid")


def test_version_and_click_usage_errors_are_one_line(cli, tmp_path):
    version = subprocess.run([*golemish_cmd(), "--version"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=60)
    from importlib.metadata import version as installed
    assert version.returncode == 0 and version.stdout == f"golemish {installed('golemish')}\n"
    for args, fragment in [(["invoke"], "missing argument 'WORKER'"),
                           (["frob"], "no such command 'frob'"),
                           (["--snapshot-policy", "bogus", "worker", "list"], "bogus"),
                           (["invoke", "counter/a", "add", "1", "--time-limit", "x"],
                            "'--time-limit'")]:
        proc = cli(*args)
        assert proc.returncode == 2
        one_line_error(proc, fragment, "--help'")


def test_crash_at_help_lists_every_crash_point(cli):
    from golemish.runtime.crash import POINTS

    text = cli("invoke", "--help", check=True).stdout
    for point, what in POINTS.items():
        assert f"{point}" in text and what in text
    readme = (ROOT / "README.md").read_text()
    for point in POINTS:
        assert f"`{point}`" in readme, point


def test_worker_oplog_cuts_long_values_unless_full(cli, cart):
    sku = "x" * 300
    cli("invoke", "cart/a", "add-item", f'{{sku: "{sku}", qty: 1, price-cents: 5}}', check=True)
    short = cli("worker", "oplog", "cart/a", check=True).stdout
    assert sku not in short and "xxx…" in short
    assert max(len(line) for line in short.splitlines()) < 140
    full = cli("worker", "oplog", "cart/a", "--full", check=True).stdout
    assert f'add-item({{sku: "{sku}", qty: 1, price-cents: 5}})' in full


def _readme_commands(title):
    """The commands of the first ```sh block after a README heading, as argv lists."""
    section = (ROOT / "README.md").read_text().split(f"\n{title}\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_the_readme_commands_run_as_written(guests, home):
    env = {**os.environ, "GOLEMISH_HOME": home, "GOLEMISH_TIME_LIMIT": "10"}
    env.pop("GOLEMISH_CRASH_AT", None)
    out = {}
    for title in ("## Using it", "## Snapshots", "## Typed interfaces: WIT and WAVE"):
        for argv in _readme_commands(title):
            if argv[0] != "golemish":
                continue  # building the guests: the guests fixture has done it
            proc = subprocess.run([*golemish_cmd(), *argv[1:]], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode == (-9 if "--crash-at" in argv else 0), (argv, proc.stderr)
            assert "|" not in argv, argv  # nothing that reads as a shell pipe
            out[tuple(argv)] = proc.stdout
    checkout = [o for argv, o in out.items() if "checkout" in argv]
    assert checkout == ["ok(200)\n"]  # what the README's comment says it prints
