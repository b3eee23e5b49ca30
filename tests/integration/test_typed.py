"""Typed invocation through WIT and WAVE, end to end through the CLI."""

from __future__ import annotations

import json
import signal

import pytest

from conftest import ROOT

WIT = ROOT / "guest_examples" / "cart.wit"
ITEM = '{sku: "apple", qty: 2, price-cents: 150}'


@pytest.fixture
def cart(cli, guests):
    cli("deploy", str(guests["cart"]), "--wit", str(WIT), check=True)
    return cli


def test_typed_values_in_both_call_forms_and_wave_or_json_out(cart):
    assert cart("invoke", "cart/a", "add-item", ITEM, check=True).stdout.strip() == "1"
    assert cart("invoke", "cart/a", f"add-item({ITEM})", check=True).stdout.strip() == "1"
    assert cart("invoke", "cart/a", "items", check=True).stdout.strip() == \
        '[{sku: "apple", qty: 4, price-cents: 150}]'
    found = json.loads(cart("--json", "invoke", "cart/a", "find", '"apple"', check=True).stdout)
    assert found["value"] == {"sku": "apple", "qty": 4, "price-cents": 150}
    assert found["results"] == [{"type": "wave",
                                 "value": 'some({sku: "apple", qty: 4, price-cents: 150})'}]
    assert cart("invoke", "cart/a", "find", '"kiwi"', check=True).stdout.strip() == "none"
    bad = cart("invoke", "cart/a", "checkout", 'some("BOGUS")', check=True)
    assert bad.stdout.strip() == 'err("unknown coupon: BOGUS")'
    assert cart("invoke", "cart/a", "checkout(none)", check=True).stdout.strip() == "ok(600)"


@pytest.mark.parametrize("args, fragment", [
    (["add-item", '{sku: 5, qty: 1, price-cents: 1}'], "expected string at 1:7, got 5"),
    (["add-item", '{sku: "a", qty: -1, price-cents: 1}'], "u32"),
    (["add-item"], "missing argument item"),
    (["remove-item", "nope"], "remove-item"),
    (["frobnicate"], "no function 'frobnicate'"),
])
def test_a_type_mismatch_points_at_the_argument(cart, args, fragment):
    proc = cart("invoke", "cart/a", *args)
    assert proc.returncode == 1 and fragment in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_deploy_refuses_a_wit_the_module_does_not_implement(cli, guests, tmp_path):
    wrong = tmp_path / "wrong.wit"
    wrong.write_text(WIT.read_text().replace("export total: func() -> u64;",
                                             "export total: func() -> string;\n"
                                             "  export refund: func(cents: u64);"))
    proc = cli("deploy", str(guests["cart"]), "--wit", str(wrong))
    assert proc.returncode == 1
    assert "does not match its WIT" in proc.stderr and "refund" in proc.stderr \
        and "total" in proc.stderr
    broken = tmp_path / "broken.wit"
    broken.write_text("package a:b;\nworld w {\n  export f: func(x: list<u8) -> u8;\n}\n")
    proc = cli("deploy", str(guests["cart"]), "--wit", str(broken))
    assert proc.returncode == 1 and "broken.wit:3:" in proc.stderr


def test_typed_invocations_are_recorded_as_wave_and_survive_a_crash(cart):
    cart("invoke", "cart/a", "add-item", ITEM, check=True)
    dead = cart("invoke", "cart/a", 'add-item({sku: "pear", qty: 1, price-cents: 99})',
                "--crash-at", "after-commit:1")  # recorded, then cut off
    assert dead.returncode == -signal.SIGKILL
    cart("worker", "resume", "cart/a", check=True)
    assert cart("invoke", "cart/a", "total", check=True).stdout.strip() == "399"
    oplog = cart("worker", "oplog", "cart/a", check=True).stdout
    assert f"add-item({ITEM})" in oplog and "-> (2)" in oplog
    shown = cart("component", "show", "cart", check=True).stdout
    assert "checkout: func(coupon: option<string>) -> result<u64, string>" in shown


@pytest.mark.parametrize("point", ["after-host-call:1", "after-invocation:1"])
def test_a_typed_call_between_workers_runs_once(cart, guests, point):
    cart("deploy", str(guests["agent"]), check=True)
    dead = cart("invoke", "agent/a", "shop", "3", "--crash-at", point)
    assert dead.returncode == -signal.SIGKILL
    assert "-> 1" in cart("worker", "resume", "agent/a", check=True).stdout
    assert cart("invoke", "cart/shared", "items", check=True).stdout.strip() == \
        '[{sku: "widget", qty: 3, price-cents: 250}]'
