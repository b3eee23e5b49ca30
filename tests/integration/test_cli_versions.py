"""`golemish worker revert | fork | update`, `deploy --update-workers` and the component
lifecycle, through click's CliRunner on a real store."""

from __future__ import annotations

import json

from click.testing import CliRunner

from golemish.runtime.cli import main


def run(home, *args, ok=True):
    res = CliRunner().invoke(main, ["--home", home, *args])
    if ok:
        assert res.exit_code == 0, res.output
    else:
        assert res.exit_code != 0, res.output
        assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    return res.output


def test_revert_fork_update_and_component_lifecycle(home, guests):
    run(home, "deploy", str(guests["bank_v1"]), "--name", "bank")
    for n in ("5", "7", "11"):
        run(home, "invoke", "bank/a", "deposit", n)
    out = run(home, "worker", "revert", "bank/a", "--last-invocations", "1")
    assert "1 invocation(s) undone" in out
    assert run(home, "invoke", "bank/a", "balance").strip() == "12"
    oplog = run(home, "worker", "oplog", "bank/a")
    assert "(skipped)" in oplog and "revert" in oplog
    rows = json.loads(run(home, "--json", "worker", "oplog", "bank/a"))
    assert any(r.get("skipped") for r in rows)

    assert "forked bank/a" in run(home, "worker", "fork", "bank/a", "bank/b")
    run(home, "invoke", "bank/b", "deposit", "100")
    assert run(home, "invoke", "bank/a", "balance").strip() == "12"
    assert run(home, "invoke", "bank/b", "balance").strip() == "112"

    out = run(home, "deploy", str(guests["bank_v2"]), "--name", "bank",
              "--update-workers", "auto")
    assert "bank/a: updated v0 -> v1" in out and "bank/b: updated v0 -> v1" in out
    show = run(home, "worker", "show", "bank/a")
    assert "v0 created" in show and "v0 -> v1 auto update" in show
    listing = run(home, "component", "list")
    line = next(ln for ln in listing.splitlines() if ln.split()[:2] == ["bank", "1"])
    assert line.split()[2] == "2"  # two workers on v1

    run(home, "deploy", str(guests["bank_v4"]), "--name", "bank")
    out = run(home, "worker", "update", "bank/a", "--to", "2", "--mode", "manual")
    assert "v1 -> v2 (manual" in out
    assert run(home, "invoke", "bank/a", "version").strip() == "4"
    run(home, "deploy", str(guests["bank_v3"]), "--name", "bank")
    err = run(home, "worker", "update", "bank/b", "--to", "3", ok=False)
    assert "diverged" in err and "stays on v1" in err  # its deposit of 100 gets a bonus

    err = run(home, "component", "delete", "bank", "--version", "1", ok=False)
    assert "used by 1 worker" in err
    run(home, "component", "delete", "bank", "--version", "0")
    comps = json.loads(run(home, "--json", "component", "list"))
    assert [(c["version"], c["workers"]) for c in comps] == [(1, 1), (2, 1), (3, 0)]
    run(home, "deploy", str(guests["bank_v1"]), "--name", "bank")  # a new number, not 0
    assert [c["version"] for c in json.loads(run(home, "--json", "component", "list"))] \
        == [1, 2, 3, 4]
    err = run(home, "worker", "revert", "bank/a", "--to-index", "1", ok=False)
    assert "no version 0" in err  # its version at index 1 was deleted
    err = run(home, "worker", "revert", "bank/a", ok=False)
    assert "exactly one" in err
