"""Python workers: the golemish guest API against a real local HTTP sink, typed calls
with records, enums, tuples and bytes, package deploys, @golemish.export.

The agent is guest_examples/python/agent.py, the Python twin of agent.c; its calls
must record the C API's entries and replay without contacting anyone.
"""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from golemish.oplog import EffectBegin, HostCall, Rewind
from golemish.runtime.errors import ComponentError, InvocationFailed, Suspended
from golemish.runtime.executor import Runtime, RuntimeConfig
from golemish.runtime.python.api import wave_value
from golemish.runtime.testing import EffectSink

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "guest_examples" / "python" / "agent.py"


@pytest.fixture
def sink():
    with EffectSink() as s:
        yield s


@pytest.fixture
def rt(make_runtime, interpreter, sink, guests):
    rt = make_runtime()
    rt.deploy_python(AGENT, http_allow=[sink.address])
    rt.deploy(guests["counter"].read_bytes(), "counter")
    rt.invoke("agent/a", "key", [], env=[("AGENT_URL", sink.url)])  # fixes the env
    return rt


def test_every_call_records_the_c_entries_and_replay_contacts_nobody(rt, sink, home):
    assert rt.invoke("agent/a", "fetch", ["3"]).json == 200
    assert rt.invoke("agent/a", "pay", ["250"]).json == 200
    assert rt.invoke("agent/a", "nap", ["10"]).json > 0
    assert rt.invoke("agent/a", "delegate", ["4"]).json == 4
    with pytest.raises(Suspended) as s:
        rt.invoke("agent/a", "approval", [])
    pid = s.value.as_meta()["promise"]
    promise, report = rt.complete_promise(pid, b"yes")
    assert report.finished["ok"] and report.finished["results"] == [("wave", "true")]
    [key] = sink.deliveries
    assert sink.payments == {key: "250"} and len(key) == 32
    assert sink.headers[1]["Content-Type"] == "text/plain"
    before = dict(sink.requests)
    rt.close()
    with Runtime(RuntimeConfig(home=home, recovery="replay")) as again:
        r = again.invoke("agent/a", "delegate", ["1"])
        assert r.recovery.mode == "replay" and r.recovery.replayed_host_calls >= 6
        assert r.json == 5
        names = [e.name for _, e in again.oplog("agent/a") if isinstance(e, HostCall)]
    assert {"http_request", "sleep", "invoke", "promise_create", "promise_await",
            "idempotency_key"} <= set(names)
    assert dict(sink.requests) == before  # replay contacted nobody


def test_a_refused_url_raises_refused_in_the_guest(rt):
    out = rt.invoke("agent/a", "fetch_url", ["80"]).json
    assert out.startswith("refused: GET http://10.255.255.1:80/: refused")


def test_retry_policy_retries_then_goes_back(rt, sink):
    sink.fail_next = 2
    assert rt.invoke("agent/a", "retrying_pay", ["5"]).json == 200
    assert sink.requests["/pay"] == 3 and len(sink.payments) == 1
    sink.fail_next = 1  # the block's policy is gone: one try, its 503 is the answer
    assert rt.invoke("agent/a", "pay", ["6"]).json == 503


def test_keys_and_oplog_index_are_recorded_and_replayed(rt, home):
    first = rt.invoke("agent/a", "key", [])
    shown = [e for _, e in rt.oplog("agent/a") if isinstance(e, HostCall)
             and e.name == "idempotency_key"]
    assert shown[-1].response.decode() == first.json
    rt.close()
    with Runtime(RuntimeConfig(home=home, recovery="replay")) as again:
        out: list[bytes] = []
        again.resume("agent/a", output=lambda s, d: out.append(d))
        assert out == []  # replay shows no output again
        second = again.invoke("agent/a", "key", [])
    assert second.json != first.json


def test_invoke_reaches_a_typed_python_worker_and_errors_are_exceptions(make_runtime,
                                                                        interpreter, tmp_path):
    callee = tmp_path / "shop.py"
    callee.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from enum import Enum

        class Size(Enum):
            SMALL = 1
            EXTRA_LARGE = 2

        @dataclass
        class Item:
            sku: str
            size: Size
            qty: int | None

        def add_item(item: Item, tag: bytes) -> tuple[str, int]:
            return f"{item.sku}/{item.size.name}/{tag.hex()}", item.qty or 0
    '''))
    caller = tmp_path / "caller.py"
    caller.write_text(textwrap.dedent('''
        from enum import Enum
        import golemish

        class Size(Enum):  # cases travel by name: the caller's own Enum will do
            EXTRA_LARGE = 7

        def buy(n: int) -> list[str]:
            out = golemish.invoke("shop/s", "add_item",
                                  {"sku": "w", "size": Size.EXTRA_LARGE, "qty": n}, b"\\x01\\xff")
            try:
                golemish.invoke("shop/s", "nope")
            except golemish.NotFound as e:
                miss = "not found"
            try:
                golemish.invoke("shop/s", "add_item", {"sku": 1}, b"")
            except golemish.NotFound as e:
                bad = "bad args"
            return [out[0], str(out[1]), miss, bad]
    '''))
    rt = make_runtime()
    rt.deploy_python(callee)
    rt.deploy_python(caller)
    assert rt.invoke("caller/c", "buy", ["3"]).json == ["w/EXTRA_LARGE/01ff", "3",
                                                       "not found", "bad args"]
    assert rt.invoke("shop/s", 'add-item({sku: "v", size: small, qty: none}, [])').json \
        == ["v/SMALL/", 0]


def test_wave_results_read_without_types() -> None:
    assert wave_value('{sku: "a", qty: some(2), tags: [red, %true], size: none}') == \
        {"sku": "a", "qty": 2, "tags": ["red", "true"], "size": None}
    assert wave_value("(1, -2.5, 'c', ok(3), err(\"x\"), {:}, {a, b})") == \
        [1, -2.5, "c", {"ok": 3}, {"err": "x"}, {}, ["a", "b"]]
    assert wave_value("5") == 5 and wave_value("") is None and wave_value("1 2") == [1, 2]


TYPED = textwrap.dedent('''
    from dataclasses import dataclass
    from enum import Enum
    import golemish

    class Color(Enum):
        RED = 1
        DARK_BLUE = 2

    @dataclass
    class Point:
        x: int
        y: float

    @dataclass
    class Shape:
        name: str
        points: list[Point]
        color: Color | None

    def helper(x: int) -> int:       # not marked: hidden once another one is
        return x

    @golemish.export
    def flip(b: bytes, t: tuple[int, str]) -> tuple[bytes, str]:
        return b[::-1], t[1] * t[0]

    @golemish.export
    def grow(s: Shape) -> Shape:
        return Shape(s.name.upper(), s.points + [Point(len(s.points), 0.5)], Color.RED)

    @golemish.export
    def paint(c: Color) -> list[Color]:
        return [c, Color.DARK_BLUE]
''')


def test_records_enums_tuples_bytes_and_export_marks(cli, tmp_path, interpreter):
    src = tmp_path / "shapes.py"
    src.write_text(TYPED)
    cli("deploy", str(src), check=True)
    shown = cli("component", "show", "shapes", check=True).stdout
    assert "enum color { red, dark-blue }" in shown
    assert "record point { x: s64, y: f64 }" in shown
    assert "record shape { name: string, points: list<point>, color: option<color> }" in shown
    assert "export flip: func(b: list<u8>, t: tuple<s64, string>) -> tuple<list<u8>, " \
           "string>;" in shown
    assert "helper" not in shown
    out = json.loads(cli("--json", "invoke", "shapes/a", "flip", "[1, 2, 255]", '(2, "ab")',
                         check=True).stdout)
    assert out["value"] == [[255, 2, 1], "abab"]
    grown = json.loads(cli("--json", "invoke", "shapes/a",
                           'grow({name: "tri", points: [{x: 1, y: 2.0}], color: none})',
                           check=True).stdout)
    assert grown["value"] == {"name": "TRI", "points": [{"x": 1, "y": 2.0}, {"x": 1, "y": 0.5}],
                              "color": "red"}
    assert cli("invoke", "shapes/a", "paint", "dark-blue", check=True).stdout.strip() == \
        "[dark-blue, dark-blue]"
    bad = cli("invoke", "shapes/a", "paint", "green")
    assert bad.returncode != 0 and "green" in bad.stderr


def test_a_hint_without_wit_names_its_file_and_line(make_runtime, tmp_path, interpreter):
    rt = make_runtime()
    src = tmp_path / "rec.py"
    src.write_text("from dataclasses import dataclass\n\n@dataclass\nclass Node:\n"
                   "    next: 'Node | None'\n\ndef walk(n: Node) -> int:\n    return 0\n")
    with pytest.raises(ComponentError, match=r"rec.py:7: walk \(Node.next\): Node refers to itself; WIT has no recursive"):
        rt.deploy_python(src)
    src.write_text("def f(x: set[int]) -> int:\n    return 0\n")
    with pytest.raises(ComponentError, match=r"rec.py:1: f: type hint 'set\[int\]' has no WIT"):
        rt.deploy_python(src)


def _package(root: Path) -> Path:
    pkg = root / "shop"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "prices.py").write_text("from dataclasses import dataclass\n\n@dataclass\n"
                                   "class Quote:\n    sku: str\n    cents: int\n\n"
                                   "def price(sku: str) -> int:\n    return 100 * len(sku)\n")
    (pkg / "main.py").write_text("from .prices import Quote, price\n\n"
                                 "def quote(sku: str) -> Quote:\n"
                                 "    return Quote(sku, price(sku))\n")
    return pkg


def test_a_package_directory_deploys_with_its_entry_module(cli, tmp_path, interpreter):
    pkg = _package(tmp_path)
    assert cli("deploy", str(pkg), check=True).stdout.startswith("deployed shop v0")
    shown = cli("component", "show", "shop", check=True).stdout
    assert "python package, entry shop.main" in shown and "quote: func(sku: string) -> quote" \
        in shown
    assert cli("invoke", "shop/a", "quote", '"abc"', check=True).stdout.strip() == \
        '{sku: "abc", cents: 300}'
    assert "already has these bytes" in cli("deploy", str(pkg), check=True).stdout
    # The parent directory with an explicit entry is the same package.
    again = cli("deploy", str(tmp_path), "--entry", "shop.main", "--name", "shop", check=True)
    assert "already has these bytes" in again.stdout
    (pkg / "prices.py").write_text((pkg / "prices.py").read_text() + "\nimport no_such_mod\n")
    failed = cli("deploy", str(pkg))
    assert failed.returncode != 0 and failed.stderr.startswith(
        "error: shop/prices.py:11: ModuleNotFoundError: No module named 'no_such_mod'")
    assert len(failed.stderr.strip().splitlines()) == 1
    (pkg / "broken.py").write_text("def f(:\n")
    broken = cli("deploy", str(pkg))
    assert broken.stderr.startswith("error: shop/broken.py:1: syntax error")
    missing = cli("deploy", str(tmp_path), "--entry", "shop.nope")
    assert "entry module 'shop.nope' is not in the directory" in missing.stderr
    # Still only v0: nothing that failed was stored.
    assert "v1" not in cli("component", "list", check=True).stdout


def test_host_calls_at_import_are_refused_at_deploy(make_runtime, tmp_path, interpreter):
    src = tmp_path / "eager.py"
    src.write_text("import golemish\nKEY = golemish.idempotency_key()\n\n"
                   "def f() -> str:\n    return KEY\n")
    with pytest.raises(ComponentError, match=r"eager.py:2: golemish.InvalidRequest: "
                                             r"golemish.idempotency_key at import time"):
        make_runtime().deploy_python(src)


@pytest.mark.chaos
def test_an_atomic_block_cut_short_runs_again_from_its_start(cli, sink, home, interpreter):
    cli("deploy", str(AGENT), "--allow-http", sink.address, check=True)
    cli("invoke", "agent/t", "key", "--env", f"AGENT_URL={sink.url}", check=True)
    # Appends: InvokeStart, AtomicBegin, EffectBegin, HostCall, Log, EffectBegin ...: die
    # after the first fetch finished, inside the block.
    dead = cli("invoke", "agent/t", "atomic_fetch", "1", "--crash-at", "after-oplog-append:5")
    assert dead.returncode == -signal.SIGKILL
    assert sink.requests["/item"] == 1
    cli("worker", "resume", "agent/t", check=True)
    assert sink.requests["/item"] == 3  # the whole block again: both fetches
    with Runtime(RuntimeConfig(home=home, recovery="replay")) as rt:
        entries = rt.oplog("agent/t")
        assert len([e for _, e in entries if isinstance(e, Rewind)]) == 1
        assert rt.invoke("agent/t", "atomic_fetch", ["5"]).json == 400  # replays cleanly
    assert len([e for _, e in entries if isinstance(e, EffectBegin)]) == 3


def test_a_failed_call_to_another_worker_is_call_failed(make_runtime, interpreter, tmp_path):
    (tmp_path / "a.py").write_text("import golemish\n\ndef go() -> str:\n    try:\n"
                                   "        golemish.invoke('b/x', 'boom')\n"
                                   "    except golemish.CallFailed as e:\n"
                                   "        return str(e)\n    return 'no'\n")
    (tmp_path / "b.py").write_text("def boom() -> int:\n    raise KeyError('k')\n")
    rt = make_runtime()
    rt.deploy_python(tmp_path / "a.py")
    rt.deploy_python(tmp_path / "b.py")
    assert "boom: KeyError: 'k'" in rt.invoke("a/a", "go", []).json
    with pytest.raises(InvocationFailed, match="KeyError"):
        rt.invoke("b/x", "boom", [])
