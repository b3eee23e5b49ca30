"""The module ``_golemish_types`` inside a Python worker: type hints, calls, imports.

Runs in the worker's interpreter, loaded before guest_lib.py (``golemish``). It
converts between the JSON the host passes (wave_json's forms) and the Python
values an exported function's type hints ask for, describes the exports' types
at deploy so that the host can write the WIT world, and imports a deployed
package's modules from memory.
"""

import json as _json
import sys as _sys
import types as _types


def _label(name):
    """A Python name as a WIT label: ``DARK_BLUE`` -> ``dark-blue``."""
    return str(name).lower().replace("_", "-")


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
        if origin is list and len(args) == 1:
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


def _hints(obj):
    """Type hints without importing typing (it costs a call ~0.1 s of imports) unless
    they are strings (``from __future__ import annotations``) or inherited."""
    ann = dict(getattr(obj, "__annotations__", None) or {})
    fields = getattr(obj, "__dataclass_fields__", None)
    if any(isinstance(v, str) for v in ann.values()) or (fields and set(fields) - set(ann)):
        import typing
        return typing.get_type_hints(obj)
    return ann


def _parts(t):
    """(origin, args) of a hint: list[int] -> (list, (int,)); int | None -> (None, (int, None))."""
    return getattr(t, "__origin__", None), getattr(t, "__args__", ())


_PLAIN = frozenset({int, str, bool, type(None), None})


def _py(v, t):
    """JSON from the host -> the value a hint asks for."""
    if t in _PLAIN or v is None:
        return v
    if t is bytes:
        return bytes(v)
    if t is float:
        return float(v)
    origin, args = _parts(t)
    if origin is list:
        return [_py(x, args[0]) for x in v]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_py(x, args[0]) for x in v)
        return tuple(_py(x, a) for x, a in zip(v, args))
    if args and type(None) in args:
        return _py(v, args[0] if args[1] is type(None) else args[1])
    if _is_enum(t):
        return next(m for m in t if _label(m.name) == v)
    if hasattr(t, "__dataclass_fields__"):
        hints = _hints(t)
        return t(**{f: _py(v[_label(f)], hints[f]) for f in t.__dataclass_fields__})
    return v


def _to_json(v, t):
    """A returned value -> JSON for the host, checked against the hint where it matters."""
    if t in _PLAIN or v is None:
        return v
    if t is bytes:
        return list(v)
    if t is float:
        v = float(v)
        return "nan" if v != v else ("inf" if v == float("inf") else
                                     "-inf" if v == float("-inf") else v)
    origin, args = _parts(t)
    if origin is list:
        return [_to_json(x, args[0]) for x in v]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return [_to_json(x, args[0]) for x in v]
        if len(v) != len(args):
            raise TypeError(f"expected a tuple of {len(args)}, got {len(v)} items")
        return [_to_json(x, a) for x, a in zip(v, args)]
    if args and type(None) in args:
        return _to_json(v, args[0] if args[1] is type(None) else args[1])
    if _is_enum(t):
        if not isinstance(v, t):
            raise TypeError(f"expected a {t.__name__} member, got {v!r}")
        return _label(v.name)
    if hasattr(t, "__dataclass_fields__"):
        hints = _hints(t)
        get = v.get if isinstance(v, dict) else (lambda f: getattr(v, f))
        return {_label(f): _to_json(get(f), hints[f]) for f in t.__dataclass_fields__}
    return v


def _signature(fn):
    """(parameter hints, return hint) of an exported function, kept on it."""
    sig = fn.__dict__.get("__golemish_sig__")
    if sig is None:
        hints = _hints(fn)
        code = fn.__code__
        sig = ([hints.get(p) for p in code.co_varnames[:code.co_argcount]], hints.get("return"))
        fn.__golemish_sig__ = sig
    return sig


def _invoke(fn, args_json):
    params, ret = _signature(fn)
    args = [_py(a, t) for a, t in zip(_json.loads(args_json), params)]
    return _json.dumps(_to_json(fn(*args), ret))


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
