"""The host side of the ``golemish`` module of Python workers (see guest_lib.py).

Each request names a call of the golemish host API and carries JSON (plus raw
bytes for an HTTP body); it is answered by the worker's :class:`GolemishHost`
through the very methods the C API's imports use, so a Python worker records
the same oplog entries as a C guest (``http_request``, ``sleep``,
``promise_create``, ``promise_await``, ``invoke``, ``idempotency_key``,
AtomicBegin/AtomicEnd) and replays them the same way. Errors become
``{"error": KIND, "message": ...}``, which the guest raises as exceptions.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..host import api as h
from ..host.api import GolemishHost
from ..typed.wave_lex import Lexer, Tok, WaveError

_KINDS = {h.ERR_REFUSED: "refused", h.ERR_NETWORK: "network", h.ERR_INVALID: "invalid",
          h.ERR_UNKNOWN: "unknown", h.ERR_FAILED: "failed"}


class ApiError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def answer(obj: Any, raw: bytes = b"") -> bytes:
    return json.dumps(obj).encode() + b"\n" + raw


def handle(host: GolemishHost, name: str, arg: Any, raw: bytes) -> bytes:
    """Answer one guest request (may raise Suspended, Interrupted, DivergenceError)."""
    try:
        return answer(*_dispatch(host, name, arg if isinstance(arg, dict) else {}, raw))
    except ApiError as e:
        return answer({"error": e.kind, "message": str(e)})


def _dispatch(host: GolemishHost, name: str, a: dict[str, Any], raw: bytes
              ) -> tuple[Any, bytes]:
    if name == "sleep":
        ms = a.get("ms")
        if not isinstance(ms, int) or host.sleep_ms(ms) != h.OK:
            raise ApiError("invalid", f"cannot sleep {ms!r} ms")
        return None, b""
    if name == "http":
        timeout = a.get("timeout", 30.0)
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            raise ApiError("invalid", f"bad timeout {timeout!r}: want 0 < seconds <= 3600")
        out = host.http(str(a.get("method") or "GET"), str(a.get("url", "")),
                        str(a.get("headers", "")), raw, float(timeout))
        if isinstance(out, int):
            raise ApiError(_KINDS[out], _http_reason(out, a))
        status, headers, body = out
        return {"status": status, "headers": headers}, body
    if name == "retry":
        old = host.retry
        args = (a.get("attempts"), a.get("min_ms"), a.get("max_ms"))
        if not all(isinstance(x, int) for x in args) or \
                host.set_retry_policy(*args) != h.OK:  # type: ignore[arg-type]
            raise ApiError("invalid", "a retry policy needs attempts >= 1 and "
                                      "0 <= min_delay <= max_delay")
        return {"attempts": old.attempts, "min_ms": old.min_delay_ms,
                "max_ms": old.max_delay_ms}, b""
    if name == "promise_create":
        return {"id": host.new_promise()}, b""
    if name == "promise_await":
        payload = host.await_promise(str(a.get("id", "")))
        if payload is None:
            raise ApiError("unknown", f"no promise {a.get('id')!r}")
        return None, payload
    if name == "invoke":
        code, text = host.call_wave(str(a.get("worker", "")), str(a.get("call", "")))
        if code != h.OK:
            raise ApiError(_KINDS[code], f"{a.get('worker')} {a.get('call')}: {text}")
        return {"value": wave_value(text)}, b""
    if name == "idempotency_key":
        return {"key": host.new_key()}, b""
    if name == "oplog_index":
        return {"index": host.oplog_index()}, b""
    if name == "atomic_begin":
        return {"region": host.atomic_begin()}, b""
    if name == "atomic_end":
        region = a.get("region")
        if not isinstance(region, int):
            raise ApiError("invalid", "atomic_end needs the region atomic_begin gave")
        host.atomic_end(region)
        return None, b""
    raise ApiError("invalid", f"the host has no golemish call {name!r}")


def _http_reason(code: int, a: dict[str, Any]) -> str:
    what = f"{a.get('method') or 'GET'} {a.get('url')}"
    if code == h.ERR_REFUSED:
        return f"{what}: refused, the host is not on this worker's HTTP allow-list " \
               "(see `golemish worker config --allow-http`)"
    if code == h.ERR_NETWORK:
        return f"{what}: no response"
    return f"{what}: malformed request (method, URL, port or header)"


# -- WAVE results, read without their types ------------------------------------------------

def wave_value(text: str) -> Any:
    """A WAVE value as JSON-like Python, without knowing its type: records are dicts,
    tuples lists, enum cases strings, ``some(x)`` x, ``none`` None, ``ok(x)`` /
    ``err(x)`` and variant cases ``{case: payload}``, flags lists of names. The
    recorded text alone decides the value, so replay gives the same one."""
    text = text.strip()
    if not text:
        return None
    lx = Lexer(text)
    parts = []
    while lx.peek().kind != "eof":  # a core callee's several results: "1 2"
        parts.append(_value(lx))
    return parts[0] if len(parts) == 1 else parts


def _value(lx: Lexer) -> Any:
    tok = lx.next()
    if tok.kind == "num":
        return _number(tok)
    if tok.kind in ("str", "char"):
        return tok.value
    if tok.kind == "[":
        return _items(lx, "]")
    if tok.kind == "(":
        return _items(lx, ")")
    if tok.kind == "{":
        return _record(lx)
    if tok.kind == "label":
        name = tok.value
        if not tok.escaped and name in ("true", "false"):
            return name == "true"
        if not tok.escaped and name in ("nan", "inf"):
            return math.nan if name == "nan" else math.inf
        if not tok.escaped and name == "none":
            return None
        if lx.peek().kind == "(":
            lx.next()
            inner = _items(lx, ")")
            payload = inner[0] if len(inner) == 1 else inner
            return payload if name == "some" and not tok.escaped else {name: payload}
        return name
    raise WaveError(f"unexpected {tok.describe()} at {tok.line}:{tok.col}", tok.line, tok.col)


def _number(tok: Tok) -> int | float:
    if tok.value == "-inf":
        return -math.inf
    return float(tok.value) if any(c in tok.value for c in ".eE") else int(tok.value)


def _items(lx: Lexer, close: str) -> list[Any]:
    out: list[Any] = []
    while lx.peek().kind != close:
        out.append(_value(lx))
        if lx.peek().kind == ",":
            lx.next()
    lx.next()
    return out


def _record(lx: Lexer) -> Any:
    if lx.peek().kind == ":":  # {:} is a record whose fields are all omitted
        lx.next()
        lx.next()
        return {}
    fields: dict[str, Any] = {}
    flags: list[str] = []
    while lx.peek().kind != "}":
        tok = lx.next()
        if lx.peek().kind == ":":
            lx.next()
            fields[tok.value] = _value(lx)
        else:
            flags.append(tok.value)
        if lx.peek().kind == ",":
            lx.next()
    lx.next()
    return fields if fields or not flags else flags
