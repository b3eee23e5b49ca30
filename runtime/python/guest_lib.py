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

The rest converts between the JSON the host passes (wave_json's forms) and the
Python values an exported function's type hints ask for, and describes the
exports' types at deploy so that the host can write the WIT.
"""

import json as _json
import sys as _sys
import types as _types

import _host

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


def _label(name):
    return str(name).lower().replace("_", "-")


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
    enum = _sys.modules.get("enum")
    if enum is not None and isinstance(v, enum.Enum):
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


# -- calls from the host: JSON in and out, by type hint ---------------------------------------------

def _exported(ns):
    name = ns.get("__name__")
    funcs = [(k, v) for k, v in ns.items() if isinstance(v, _types.FunctionType)
             and not k.startswith("_") and v.__module__ == name]
    marked = [(k, v) for k, v in funcs if getattr(v, "__golemish_export__", False)]
    return marked or funcs


class _Types:
    """WIT types of Python hints, with the record and enum definitions they need."""

    def __init__(self):
        import typing
        self.typing = typing
        self.defs = []      # WIT definitions, dependencies first
        self.named = {}     # class -> WIT name
        self.busy = set()

    def wit(self, t, where):
        tp = self.typing
        prims = {int: "s64", float: "f64", bool: "bool", str: "string", bytes: "list<u8>"}
        if t in prims:
            return prims[t]
        origin, args = tp.get_origin(t), tp.get_args(t)
        if origin in (list, tp.List if hasattr(tp, "List") else list) and len(args) == 1:
            return f"list<{self.wit(args[0], where)}>"
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return f"list<{self.wit(args[0], where)}>"
            if args and args != ((),):
                return "tuple<" + ", ".join(self.wit(a, where) for a in args) + ">"
        if origin in (tp.Union, _types.UnionType) and len(args) == 2 and type(None) in args:
            other = args[0] if args[1] is type(None) else args[1]
            return f"option<{self.wit(other, where)}>"
        if isinstance(t, type) and (hasattr(t, "__dataclass_fields__") or _is_enum(t)):
            return self.define(t, where)
        shown = getattr(t, "__name__", None) if isinstance(t, type) else None
        raise TypeError(f"{where}: type hint {shown or repr(t)!r} has no WIT mapping "
                        "(supported: int, float, bool, str, bytes, list[T], tuple[...], "
                        "T | None, dataclasses, Enum)")

    def define(self, cls, where):
        if cls in self.named:
            return self.named[cls]
        if cls in self.busy:
            raise TypeError(f"{where}: {cls.__name__} refers to itself; WIT has no "
                            "recursive types")
        name = _kebab(cls.__name__)
        if name in self.named.values():
            raise TypeError(f"{where}: two types are named {name!r} in WIT")
        self.busy.add(cls)
        if _is_enum(cls):
            cases = [_label(m.name) for m in cls]
            body = f"  enum {_ident(name)} {{ {', '.join(_ident(c) for c in cases)} }}"
        else:
            hints = self.typing.get_type_hints(cls)
            fields = [f"{_ident(_label(f))}: {self.wit(hints[f], f'{where} ({cls.__name__}.{f})')}"
                      for f in cls.__dataclass_fields__]
            body = f"  record {_ident(name)} {{ {', '.join(fields)} }}"
        self.busy.discard(cls)
        self.named[cls] = _ident(name)
        self.defs.append(body)
        return self.named[cls]


def _is_enum(t):
    enum = _sys.modules.get("enum")
    return enum is not None and isinstance(t, type) and issubclass(t, enum.Enum)


def _kebab(name):
    out = []
    for i, c in enumerate(name):
        if c.isupper() and i and (not name[i - 1].isupper() or
                                  (i + 1 < len(name) and name[i + 1].islower())):
            out.append("-")
        out.append(c.lower())
    return "".join(out).replace("_", "-")


_KEYWORDS = frozenset("""as async bool borrow char constructor enum export f32 f64 flags
    float32 float64 func future import include interface list option own package record
    resource result s16 s32 s64 s8 static stream string tuple type u16 u32 u64 u8 use
    variant with world""".split())


def _ident(kebab):
    return "%" + kebab if kebab in _KEYWORDS else kebab


def describe(ns, filename):
    """(WIT world body lines, {WIT name: Python name}) of the module's exports."""
    import inspect
    types_ = _Types()
    lines, names = [], {}
    for pyname, fn in _exported(ns):
        where = f"{fn.__code__.co_filename}:{fn.__code__.co_firstlineno}: {pyname}"
        sig = inspect.signature(fn)
        hints = types_.typing.get_type_hints(fn)
        params = []
        for p in sig.parameters.values():
            if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY) or \
                    p.default is not p.empty:
                raise TypeError(f"{where}: only plain positional parameters are supported")
            if p.name not in hints:
                raise TypeError(f"{where}: parameter {p.name} has no type hint")
            params.append(f"{_ident(_label(p.name))}: {types_.wit(hints[p.name], where)}")
        ret = hints.get("return", type(None))
        result = "" if ret is type(None) else f" -> {types_.wit(ret, where)}"
        lines.append(f"  export {_ident(_label(pyname))}: func({', '.join(params)}){result};")
        names[_label(pyname)] = pyname
    if not lines:
        raise TypeError(f"{filename}: defines no public module-level function to export")
    return types_.defs + lines, names


class _Convert:
    """JSON (wave_json's forms) <-> Python values, directed by type hints."""

    def __init__(self):
        import typing
        self.t = typing

    def args_of(self, fn):
        conv = getattr(fn, "__golemish_conv__", None)
        if conv is None:
            hints = self.t.get_type_hints(fn)
            code = fn.__code__
            params = code.co_varnames[:code.co_argcount]
            conv = ([hints.get(p) for p in params], hints.get("return"))
            try:
                fn.__golemish_conv__ = conv
            except AttributeError:
                pass
        return conv

    def py(self, v, t):
        if t is None or v is None:
            return v
        if t is bytes:
            return bytes(v)
        if t is float:
            return float(v)
        origin, args = self.t.get_origin(t), self.t.get_args(t)
        if origin is list:
            return [self.py(x, args[0]) for x in v]
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(self.py(x, args[0]) for x in v)
            return tuple(self.py(x, a) for x, a in zip(v, args))
        if args and type(None) in args:
            return self.py(v, args[0] if args[1] is type(None) else args[1])
        if _is_enum(t):
            return next(m for m in t if _label(m.name) == v)
        if hasattr(t, "__dataclass_fields__"):
            hints = self.t.get_type_hints(t)
            return t(**{f: self.py(v[_label(f)], hints[f]) for f in t.__dataclass_fields__})
        return v

    def json(self, v, t):
        if t is None or v is None:
            return v
        if t is bytes:
            return list(v)
        if t is float:
            v = float(v)
            return "nan" if v != v else ("inf" if v == float("inf") else
                                         "-inf" if v == float("-inf") else v)
        origin, args = self.t.get_origin(t), self.t.get_args(t)
        if origin is list:
            return [self.json(x, args[0]) for x in v]
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return [self.json(x, args[0]) for x in v]
            if len(v) != len(args):
                raise TypeError(f"expected a tuple of {len(args)}, got {len(v)} items")
            return [self.json(x, a) for x, a in zip(v, args)]
        if args and type(None) in args:
            return self.json(v, args[0] if args[1] is type(None) else args[1])
        if _is_enum(t):
            if not isinstance(v, t):
                raise TypeError(f"expected a {t.__name__} member, got {v!r}")
            return _label(v.name)
        if hasattr(t, "__dataclass_fields__"):
            hints = self.t.get_type_hints(t)
            get = v.get if isinstance(v, dict) else lambda f: getattr(v, f)
            return {_label(f): self.json(get(f), hints[f]) for f in t.__dataclass_fields__}
        return v


_conv = None


def _invoke(fn, args_json):
    global _conv
    if _conv is None:
        _conv = _Convert()
    params, ret = _conv.args_of(fn)
    args = [_conv.py(a, t) for a, t in zip(_json.loads(args_json), params)]
    return _json.dumps(_conv.json(fn(*args), ret))


def _importer(files, prefix):
    """A finder for the component's own modules (a deployed package), from memory."""
    import importlib.abc
    import importlib.util

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):
            rel = fullname.replace(".", "/")
            for cand, pkg in ((rel + "/__init__.py", True), (rel + ".py", False)):
                if cand in files:
                    spec = importlib.util.spec_from_loader(fullname, self, is_package=pkg)
                    spec.origin = prefix + cand
                    if pkg:
                        spec.submodule_search_locations = [prefix + rel]
                    return spec
            return None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            rel = module.__spec__.origin[len(prefix):]
            module.__file__ = module.__spec__.origin
            exec(compile(files[rel], rel, "exec"), module.__dict__)

    _sys.meta_path.insert(0, Finder())
