"""The test kit's virtual clock and HTTP stub on their own."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest

from golemish.runtime.testing import HttpStub, VirtualClock


def test_time_stands_still_until_advanced():
    c = VirtualClock(start_ns=10**18)
    assert c.time_ns() == c.time_ns() == 10**18
    m = c.monotonic_ns()
    assert c.advance(days=3, hours=1, ms=5) == 10**18 + (3 * 24 + 1) * 3600 * 10**9 + 5 * 10**6
    assert c.monotonic_ns() - m == (3 * 24 + 1) * 3600 * 10**9 + 5 * 10**6
    c.advance_to(10**18)  # the past: no change
    assert c.elapsed_s == (3 * 24 + 1) * 3600 + 0.005
    with pytest.raises(ValueError):
        c.advance(seconds=-1)


def test_auto_skip_sleeps_return_at_once_with_time_moved():
    c = VirtualClock()
    t0 = time.perf_counter()
    c.sleep(3600)
    assert time.perf_counter() - t0 < 0.1 and c.elapsed_s == 3600


def test_without_auto_skip_a_sleep_waits_for_another_thread_to_advance():
    c = VirtualClock(auto_skip=False)
    woke = threading.Event()
    t = threading.Thread(target=lambda: (c.sleep(60), woke.set()))
    t.start()
    c.advance(seconds=59)
    assert not woke.wait(0.1)
    c.advance(seconds=1)
    assert woke.wait(5)
    t.join()


def test_the_stub_answers_as_told_and_records_every_call():
    with HttpStub() as stub:
        stub.expect("POST", "/pay").respond(201, body=lambda call: f"got {call.text}",
                                           headers={"X-Ok": "1"}).fail_first(1)
        req = urllib.request.Request(f"{stub.url}/pay?x=1", data=b"5", method="POST",
                                     headers={"Idempotency-Key": "k1"})
        with pytest.raises(urllib.error.HTTPError, match="503"):
            urllib.request.urlopen(req)
        with urllib.request.urlopen(req) as r:
            assert (r.status, r.read(), r.headers["X-Ok"]) == (201, b"got 5", "1")
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{stub.url}/other")
        assert [c.status for c in stub.calls] == [503, 201, 404]
        assert stub.calls[1].query == {"x": "1"}
        assert list(stub.effects("POST", "/pay")) == ["k1"]
        assert [c.path for c in stub.unexpected] == ["/other"]
