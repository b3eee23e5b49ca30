"""The test kit's effect sink on its own, over real sockets."""

from __future__ import annotations

import json
import socket
import urllib.request

from golemish.runtime.testing import EffectSink


def _post(sink: EffectSink, key: str, body: bytes) -> int:
    req = urllib.request.Request(sink.url + "/pay", data=body, method="POST",
                                 headers={"Idempotency-Key": key})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status


def test_a_payment_is_recorded_once_per_key():
    with EffectSink() as sink:
        assert _post(sink, "k1", b"150") == 200
        assert _post(sink, "k1", b"150") == 200
        assert _post(sink, "k2", b"7") == 200
        assert sink.payments == {"k1": "150", "k2": "7"}
        assert sink.deliveries == {"k1": 2, "k2": 1}
        with urllib.request.urlopen(sink.url + "/stats", timeout=5) as resp:
            assert json.loads(resp.read())["payments"] == {"k1": "150", "k2": "7"}


def test_a_client_dying_between_headers_and_body_pays_nothing():
    # What a SIGKILL between http.client's two writes leaves: headers promising a body
    # that never comes. Recording it would be a payment nobody made, with no amount.
    with EffectSink() as sink:
        with socket.create_connection(("127.0.0.1", sink.port), timeout=5) as s:
            s.sendall(b"POST /pay HTTP/1.1\r\nHost: x\r\nIdempotency-Key: cut\r\n"
                      b"Content-Length: 3\r\n\r\n1")
            s.shutdown(socket.SHUT_WR)
            assert s.recv(100) == b""          # closed without an answer
        assert _post(sink, "whole", b"100") == 200  # and the sink still serves
        assert sink.payments == {"whole": "100"}
        assert "cut" not in sink.deliveries
