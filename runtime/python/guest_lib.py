"""The module ``golemish`` inside a Python worker: the durable host API over ``host.call``.

This file runs in the worker's interpreter, not in the host: the host reads its
text and executes it as the module ``golemish`` at the worker's first turn (its
digest is kept in the component, so a worker is replayed against the library it
was created with). Every call here is one ``host.call`` exchange that the host
answers through the worker's journal, with the entries the C API records
(guest_examples/include/golemish.h): recorded live, answered from the oplog on
replay, never performed twice.

Request: ``golemish:NAME\\n`` + JSON + ``\\n`` + raw bytes (an HTTP body).
Answer: JSON + ``\\n`` + raw bytes; ``{"error": KIND, "message": ...}`` raises.

Type hints, the JSON of calls and the WIT of exports are in guest_types.py
(the module ``_golemish_types``, loaded just before this one).
"""

import json as _json
import sys as _sys
import types as _types

import _host
from _golemish_types import _is_enum, _label

__all__ = ["sleep", "http", "promise", "invoke", "idempotency_key", "oplog_index", "atomic",
           "retry", "set_retry_policy", "export", "Response", "GolemishError", "Refused",
           "NetworkError", "InvalidRequest", "NotFound", "CallFailed"]


class GolemishError(Exception):
    """A host call that did not succeed (the subclass says why)."""


class Refused(GolemishError):
    """The URL's host is not on the worker's HTTP allow-list."""


class NetworkError(GolemishError):
    """No response: the connection failed or timed out (after the retry policy's tries)."""


class InvalidRequest(GolemishError, ValueError):
    """A malformed argument: method, URL, header, negative sleep, bad policy."""


class NotFound(GolemishError, LookupError):
    """No such promise, worker or function."""


class CallFailed(GolemishError):
    """The other worker's invocation failed."""


_ERRORS = {"refused": Refused, "network": NetworkError, "invalid": InvalidRequest,
           "unknown": NotFound, "failed": CallFailed}


def _call(name, header=None, raw=b""):
    out = _host.call(b"golemish:" + name.encode() + b"\n"
                     + _json.dumps(header).encode() + b"\n" + raw)
    head, _, data = out.partition(b"\n")
    answer = _json.loads(head) if head else None
    if isinstance(answer, dict) and "error" in answer:
        raise _ERRORS.get(answer["error"], GolemishError)(answer.get("message", ""))
    return answer, data


# -- time ---------------------------------------------------------------------------------

def sleep(seconds):
    """Sleep durably: the wake-up time is recorded, so a recovered worker sleeps only
    what is left. A long sleep suspends the worker until it is due."""
    _call("sleep", {"ms": max(0, round(float(seconds) * 1000))})


# -- HTTP -------------------------------------------------------------------------------------

class Response:
    """An HTTP response: ``status``, ``headers`` (a list of (name, value)), ``body`` (bytes)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return _json.loads(self.body)

    def header(self, name, default=None):
        """The first header of that name (case-insensitive)."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def __repr__(self):
        return f"<Response {self.status}, {len(self.body)} bytes>"


def _request(method, url, headers=None, body=b"", timeout=30.0):
    """Send a request and wait for its response, durably.

    The host adds an ``Idempotency-Key`` header derived from the worker and its oplog
    position: a request cut off by a crash is sent again with the same key, and one
    whose response was recorded is never sent again. ``headers`` is a dict or a list of
    pairs; ``body`` bytes or str. Raises Refused (not on the allow-list), NetworkError
    (no response after the retry policy's tries) or InvalidRequest.
    """
    if isinstance(body, str):
        body = body.encode()
    pairs = headers.items() if isinstance(headers, dict) else (headers or ())
    lines = "".join(f"{k}: {v}\n" for k, v in pairs)
    answer, data = _call("http", {"method": str(method).upper(), "url": str(url),
                                  "headers": lines, "timeout": float(timeout)}, bytes(body))
    hdrs = [tuple(line.split(": ", 1)) for line in answer["headers"].splitlines() if line]
    return Response(answer["status"], hdrs, data)


http = _types.ModuleType("golemish.http", "Durable HTTP: request, get, post.")
http.request = _request
http.get = lambda url, **kw: _request("GET", url, **kw)
http.post = lambda url, body=b"", **kw: _request("POST", url, body=body, **kw)
http.Response = Response
_sys.modules["golemish.http"] = http


def set_retry_policy(attempts, min_delay=0.1, max_delay=2.0):
    """Retry failing HTTP calls (no response, or status >= 500): up to ``attempts`` tries,
    waiting ``min_delay`` seconds, then twice as long each time, at most ``max_delay``.
    Only the final outcome is recorded. Returns the previous policy as a tuple."""
    answer, _ = _call("retry", {"attempts": int(attempts),
                                "min_ms": round(min_delay * 1000),
                                "max_ms": round(max_delay * 1000)})
    return answer["attempts"], answer["min_ms"] / 1000, answer["max_ms"] / 1000


class retry:
    """``with golemish.retry(4, min_delay=0.01):`` a retry policy for the block only."""

    def __init__(self, attempts, min_delay=0.1, max_delay=2.0):
        self.policy = (attempts, min_delay, max_delay)

    def __enter__(self):
        self.previous = set_retry_policy(*self.policy)
        return self

    def __exit__(self, *exc):
        set_retry_policy(*self.previous)
        return False


# -- promises ----------------------------------------------------------------------------------

def _promise_create():
    """A new promise that something outside completes (`golemish promise complete ID DATA`);
    its id."""
    return _call("promise_create")[0]["id"]


def _promise_await(promise_id):
    """The promise's data (bytes). Until it is completed the worker is suspended: the
    invocation finishes in the command that completes the promise."""
    return _call("promise_await", {"id": str(promise_id)})[1]


promise = _types.ModuleType("golemish.promise", "Promises: create, await_.")
promise.create = _promise_create
promise.await_ = _promise_await
_sys.modules["golemish.promise"] = promise


# -- other workers -------------------------------------------------------------------------------

def _wave_str(s, quote='"'):
    out = []
    for c in s:
        if c in (quote, "\\"):
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\u{%x}" % ord(c))
        else:
            out.append(c)
    return quote + "".join(out) + quote


def _wave(v):
    """A Python value as WAVE text, untyped: the callee's types read it (options flat)."""
    if v is None:
        return "none"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _wave_str(v)
    if isinstance(v, (bytes, bytearray)):
        return "[" + ", ".join(str(b) for b in v) + "]"
    if _is_enum(type(v)):
        return _label(v.name)
    if hasattr(type(v), "__dataclass_fields__"):
        v = {f: getattr(v, f) for f in type(v).__dataclass_fields__}
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_label(k)}: {_wave(x)}" for k, x in v.items()) + "}"
    if isinstance(v, tuple):
        return "(" + ", ".join(_wave(x) for x in v) + ")"
    if isinstance(v, (list, set, frozenset)):
        return "[" + ", ".join(_wave(x) for x in v) + "]"
    raise TypeError(f"cannot pass a {type(v).__name__} to another worker")


def invoke(worker, function, *args):
    """Call ``function`` on the worker ``component/name`` (created on first use), exactly
    once: the call carries an idempotency key derived from this worker and its oplog
    position, and the result is recorded here. Returns the result as JSON-like values
    (records are dicts, enum cases strings, tuples lists). Raises NotFound or CallFailed.
    """
    call = f"{function}({', '.join(_wave(a) for a in args)})"
    return _call("invoke", {"worker": str(worker), "call": call})[0]["value"]


# -- small calls ----------------------------------------------------------------------------------

def idempotency_key():
    """A fresh idempotency key (32 hex characters, recorded) to hand to third parties."""
    return _call("idempotency_key")[0]["key"]


def oplog_index():
    """The worker's current oplog index (the same on replay)."""
    return _call("oplog_index")[0]["index"]


class atomic:
    """``with golemish.atomic():`` if the process dies inside the block, recovery runs the
    whole block again instead of continuing in its middle. Blocks nest; the outermost
    open one is run again."""

    def __enter__(self):
        self.region = _call("atomic_begin")[0]["region"]
        return self

    def __exit__(self, *exc):
        _call("atomic_end", {"region": self.region})
        return False


def export(fn):
    """Mark a function as one of the worker's functions. Once a module marks any, only
    the marked ones are exported (otherwise every public module-level function is)."""
    fn.__golemish_export__ = True
    return fn
