"""Guest HTTP: default deny (loopback included), allow-lists, bad requests, the Host header.

Each test runs a real guest (a WAT module calling ``golemish.http_request`` with a
request laid out in its data segments) against a real local HTTP server.
"""

from __future__ import annotations

import json
import struct

import pytest

from golemish.oplog import EffectBegin
from golemish.runtime.host import http
from golemish.runtime.errors import ArgumentError
from golemish.runtime.host.api import ERR_INVALID, ERR_REFUSED, OK
from golemish.runtime.testing import EffectSink

from conftest import wat


def _escape(blob: bytes) -> str:
    return "".join("\\%02x" % b for b in blob)


def http_guest(url: str, method: str = "GET", headers: str = "") -> bytes:
    """A guest whose ``go`` sends one request (return code) and ``status`` reads the answer."""
    parts = [(1024, method.encode()), (2048, url.encode()), (4096, headers.encode())]
    req = struct.pack("<9I", 1024, len(parts[0][1]), 2048, len(parts[1][1]),
                      4096, len(parts[2][1]), 0, 0, 5000)
    data = "\n".join(f'  (data (i32.const {at}) "{_escape(blob)}")'
                     for at, blob in [(256, req), *parts] if blob)
    return wat(f"""
(module
  (import "golemish" "http_request" (func $req (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 65536))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get 3)))
    (local.get $p))
  (func (export "go") (result i32) (call $req (i32.const 256) (i32.const 512)))
  (func (export "status") (result i32) (i32.load (i32.const 512)))
{data})
""")


@pytest.fixture
def sink():
    with EffectSink() as s:
        yield s


def go(rt, name: str, wasm: bytes) -> int:
    rt.deploy(wasm, name)
    return rt.invoke(f"{name}/w", "go").results[0][1]


# -- item 10: a bad request is GOLEMISH_ERR_INVALID for the guest, not a host error ----

@pytest.mark.parametrize("url,method,headers", [
    ("http://127.0.0.1:99999/", "GET", ""),                     # port out of range
    ("http://127.0.0.1:http/", "GET", ""),                      # port not a number
    ("http://127.0.0.1:0/", "GET", ""),                         # port 0
    ("http://[::1/", "GET", ""),                                # unclosed IPv6 bracket
    ("http://exa mple.com/", "GET", ""),                        # space in the URL
    ("ftp://127.0.0.1/", "GET", ""),                            # not http(s)
    ("http:///path", "GET", ""),                                # no host
    ("http://127.0.0.1/caf\u00e9", "GET", ""),                  # non-ASCII URL
    ("http://127.0.0.1/", "GE T", ""),                          # bad method
    ("http://127.0.0.1/", "GET", "Bad Header: x\n"),            # bad header name
    ("http://127.0.0.1/", "GET", "X-Note: na\u00efve \u20ac\n"),  # non-ASCII value
    ("http://127.0.0.1/", "GET", "X-Note: caf\u00e9\n"),        # Latin-1, still not ASCII
    ("http://127.0.0.1/", "GET", "no colon here\n"),            # not a header line
])
def test_a_malformed_request_is_err_invalid_and_records_nothing(make_runtime, url, method,
                                                                headers):
    rt = make_runtime(http_allow=("*",))  # refusals would hide the point
    assert go(rt, "bad", http_guest(url, method, headers)) == ERR_INVALID
    assert not [e for _, e in rt.oplog("bad/w") if isinstance(e, EffectBegin)]
    assert rt.invoke("bad/w", "go").results[0][1] == ERR_INVALID  # the worker is fine


def test_a_malformed_request_is_refused_alike_on_replay(make_runtime, home):
    rt = make_runtime(http_allow=("*",))
    assert go(rt, "bad", http_guest("http://127.0.0.1:99999/")) == ERR_INVALID
    rt.close()
    again = make_runtime(recovery="replay")
    report = again.resume("bad/w")
    assert report is None or report.replayed_invocations == 1
    assert again.invoke("bad/w", "go").results[0][1] == ERR_INVALID


# -- item 17: default deny, loopback included; allow-lists per runtime, component, worker --

def test_loopback_is_refused_by_default(make_runtime, sink):
    rt = make_runtime()
    assert go(rt, "g", http_guest(f"{sink.url}/item?n=1")) == ERR_REFUSED
    assert sink.requests == {}
    failed = [e for _, e in rt.oplog("g/w") if "allow-list" in e.summary()]
    assert failed, "the refusal is recorded with its reason"


def test_a_worker_allow_entry_with_a_port_allows_only_that_port(make_runtime, sink):
    rt = make_runtime()
    rt.deploy(http_guest(f"{sink.url}/item?n=1"), "g")
    rt.invoke("g/w", "status")  # create the worker
    other = sink.port + 1 if sink.port < 65535 else sink.port - 1
    rt.configure("g/w", allow_http=[f"127.0.0.1:{other}"])
    assert rt.invoke("g/w", "go").results[0][1] == ERR_REFUSED
    rt.configure("g/w", allow_http=[sink.address])
    assert rt.invoke("g/w", "go").results[0][1] == OK
    assert rt.invoke("g/w", "status").results[0][1] == 200
    rt.configure("g/w", deny_http=[sink.address])
    assert rt.invoke("g/w", "go").results[0][1] == ERR_REFUSED
    rt.configure("g/w", allow_http=["127.0.0.1"])  # a host without a port: any port
    assert rt.invoke("g/w", "go").results[0][1] == OK
    assert sink.requests["/item"] == 2


def test_a_component_allow_list_applies_to_its_workers(make_runtime, sink):
    rt = make_runtime()
    res = rt.deploy(http_guest(f"{sink.url}/item?n=1"), "g", http_allow=[sink.address])
    assert res.meta["http_allow"] == [sink.address]
    assert rt.invoke("g/a", "go").results[0][1] == OK
    rt.configure_component("g", deny_http=[sink.address])
    assert rt.invoke("g/b", "go").results[0][1] == ERR_REFUSED
    assert rt.component("g")["http_allow"] == []


def test_the_host_header_is_the_hosts(make_runtime, sink):
    rt = make_runtime(http_allow=(sink.address,))
    guest = http_guest(f"{sink.url}/item?n=1", headers="Host: admin.internal\nX-Ok: 1\n")
    assert go(rt, "g", guest) == OK
    seen = sink.headers[-1]
    assert seen["Host"] == sink.address and seen["X-Ok"] == "1"
    assert "admin.internal" not in json.dumps(seen)


# -- item 16: entries are normalised and validated where they are given ----------------

@pytest.mark.parametrize("entry,canonical", [
    ("VM", "vm"), ("LocalHost:8080", "localhost:8080"), (" api.Example.com ", "api.example.com"),
    ("[0:0::1]:80", "[::1]:80"), ("::1", "[::1]"), ("[::1]", "[::1]"), ("*", "*"),
    ("10.0.0.1", "10.0.0.1"), ("example.com.", "example.com"),
])
def test_allow_entries_are_normalised(entry, canonical):
    assert http.normalize_rule(entry) == canonical


@pytest.mark.parametrize("entry", [
    "", "  ", "a b", "host:", "host:0", "host:65536", "host:http", "http://host",
    "host/path", "[::1", "[::1]x", "[zz::1]", "127.1", "-bad.example", "a:b:c:d:e:f:g:h:i",
])
def test_bad_allow_entries_are_refused(entry):
    with pytest.raises(ArgumentError) as e:
        http.normalize_rule(entry)
    assert "\n" not in str(e.value)


def test_matching_is_case_insensitive_and_knows_ipv6():
    assert http.is_allowed("vm", 80, ["VM"])  # stored before normalisation
    assert http.is_allowed("[::1]", 8080, ["[0::1]:8080"])
    assert not http.is_allowed("[::1]", 8081, ["[::1]:8080"])
    assert http.prepare("GET", "http://[::1]:8080/x", []).address == "[::1]:8080"
    assert http.prepare("GET", "http://VM/", []).address == "vm:80"


def test_worker_config_normalises_and_refuses_bad_entries(cli, guests, sink):
    cli("deploy", str(guests["agent"]), check=True)
    cli("invoke", "agent/a", "key", "--env", f"AGENT_URL=http://localhost:{sink.port}",
        check=True)
    assert cli("invoke", "agent/a", "fetch", "1", check=True).stdout.splitlines()[-1] == "-1"
    done = cli("--json", "worker", "config", "agent/a", "--allow-http",
               f"LOCALHOST:{sink.port}", check=True)
    assert json.loads(done.stdout)["http_allow"] == [f"localhost:{sink.port}"]
    assert cli("invoke", "agent/a", "fetch", "1", check=True).stdout.splitlines()[-1] == "200"
    for bad in ["", "a b", "vm:99999"]:
        out = cli("worker", "config", "agent/a", "--allow-http", bad)
        assert out.returncode == 1 and out.stderr.startswith("error: ") \
            and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_component_config_and_deploy_allow_http(cli, guests, sink):
    out = cli("deploy", str(guests["agent"]), "--allow-http", "NOPE.example", check=True)
    assert "HTTP allow-list: nope.example" in out.stdout
    cli("invoke", "agent/a", "key", "--env", f"AGENT_URL={sink.url}", check=True)
    assert cli("invoke", "agent/a", "fetch", "1", check=True).stdout.splitlines()[-1] == "-1"
    done = cli("component", "config", "agent", "--allow-http", sink.address, check=True)
    assert f"nope.example, {sink.address}" in done.stdout
    assert cli("invoke", "agent/a", "fetch", "1", check=True).stdout.splitlines()[-1] == "200"
    cli("component", "config", "agent", "--version", "0", "--deny-http", sink.address,
        check=True)
    assert cli("invoke", "agent/a", "fetch", "1", check=True).stdout.splitlines()[-1] == "-1"
    bad = cli("deploy", str(guests["agent"]), "--allow-http", "")
    assert bad.returncode == 1 and "empty HTTP allow-list entry" in bad.stderr
    env_bad = cli("component", "list", env={"GOLEMISH_HTTP_ALLOW": "ok.example,a b"})
    assert env_bad.returncode == 1 and "bad HTTP allow-list entry 'a b'" in env_bad.stderr
