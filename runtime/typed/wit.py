"""A parser for the subset of WIT that golemish components declare their interface in.

    wit = parse_wit(text, "cart.wit")
    wit.functions["add-item"]          # FuncDecl(params, result, core_name)
    wit.lookup("add-item")             # also accepts short forms of interface functions

Supported: ``package ns:name@ver;``, any number of ``interface`` and ``world``
blocks; in worlds ``export f: func(...) -> T;``, ``export iface;`` (an interface of
this file), ``export name: interface { ... }``; in both ``type``, ``record``,
``enum``, ``variant``, ``flags`` definitions and ``use iface.{a, b as c};`` between
interfaces of the file. Types: bool, s8…s64, u8…u64, f32, f64, char, string,
list<T>, option<T>, result (all four forms), tuple<...> and named references,
which may appear before their definition. ``//``, ``///`` and nested ``/* */``
comments; ``@since(...)``-style gates are skipped. Identifiers are kebab-case, a
``%`` prefix escapes keywords. ``import`` items are parsed and listed in
``Wit.imports`` but golemish provides no component imports. Resources, futures,
streams and ``include`` are reported as unsupported.

Exported function names (the keys of ``Wit.functions``) follow golem: a world-level
export is invoked by its own name (``add-item``); a function of an exported
interface by ``ns:pkg/iface.{f}``, and ``Wit.lookup`` also takes ``iface.{f}``,
``{f}`` and ``f`` when they are unambiguous. The core export implementing a
function has the Canonical ABI name: ``f`` or ``ns:pkg/iface@ver#f``.

Embedding: a core module may carry its WIT text in a custom section named
``golemish:wit`` (UTF-8); ``wit_from_custom_section`` finds it. Binary
``component-type:*`` sections (what wit-bindgen emits) are not decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .wit_parser import Parser, Resolver
from .wit_syntax import KEYWORDS, WitError
from .wit_types import FuncDecl, Type

__all__ = ["KEYWORDS", "WIT_SECTION", "Wit", "WitError", "parse_wit", "custom_sections",
           "wit_from_custom_section", "add_custom_section", "embed_wit"]

WIT_SECTION = "golemish:wit"


@dataclass
class Wit:
    """The parsed document: exported functions by invocation name, plus context."""

    package: str | None
    world: str | None
    functions: dict[str, FuncDecl]
    #: Named types by scope: "" for the world, else the interface name.
    types: dict[str, dict[str, Type]] = field(default_factory=dict)
    imports: list[str] = field(default_factory=list)

    def lookup(self, name: str) -> FuncDecl:
        """The function ``name`` refers to; KeyError (listing the choices) if none or many.

        Besides the exact key, a function of an exported interface answers to
        ``iface.{f}``, ``iface.f``, ``{f}`` and ``f``, when only one function does.
        """
        if name in self.functions:
            return self.functions[name]
        hits = [f for f in self.functions.values() if f.interface and name in (
            f.short_name, f"{{{f.short_name}}}", f"{f.interface}.{{{f.short_name}}}",
            f"{f.interface}.{f.short_name}")]
        if len(hits) == 1:
            return hits[0]
        choices = ", ".join(sorted(self.functions)) or "none"
        why = "is ambiguous" if hits else "is not exported"
        raise KeyError(f"function {name!r} {why}; exported: {choices}")


def parse_wit(text: str, file: str = "<wit>", world: str | None = None) -> Wit:
    """Parse WIT text; the functions are the exports of ``world`` (default: the only one)."""
    p = Parser(text, file)
    p.parse()
    r = Resolver(p)
    types = {name: r.scope(s) for name, s in p.interfaces.items()}
    if not p.worlds:
        raise WitError("no world is defined (declare `world NAME { export ... }`)", file, 1, 1)
    if world is None and len(p.worlds) > 1:
        names = ", ".join(w[0] for w in p.worlds)
        raise WitError(f"several worlds are defined ({names}); choose one", file, 1, 1)
    chosen = [w for w in p.worlds if world is None or w[0] == world]
    if not chosen:
        raise WitError(f"no world named '{world}'", file, 1, 1)
    wname, wscope, exports = chosen[0]
    types[""] = r.scope(wscope)
    functions: dict[str, FuncDecl] = {}
    decls = r.funcs(wscope, lambda n: n)
    pkg = p.package.partition("@")[0] if p.package else None
    for iface, tok in exports:
        scope = p.interfaces.get(iface)
        if scope is None:
            raise p.error(f"unknown interface '{iface}'", tok)
        prefix = f"{pkg}/{iface}" if pkg and scope.core_prefix != f"{iface}#" else iface
        decls += r.funcs(scope, lambda n, prefix=prefix: f"{prefix}.{{{n}}}")
    for d, tok in decls:
        if d.name in functions:
            raise p.error(f"function '{d.name}' is exported twice", tok)
        functions[d.name] = d
    return Wit(p.package, wname, functions, types, p.imports)


# -- custom sections ------------------------------------------------------------------

def _leb_u32(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise ValueError("truncated or oversized LEB128 in module")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def _leb_encode(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def custom_sections(wasm: bytes) -> list[tuple[str, bytes]]:
    """(name, payload) of every custom section of a core module, in order."""
    if wasm[:4] != b"\0asm" or len(wasm) < 8:
        raise ValueError("not a WebAssembly binary")
    out, pos = [], 8
    while pos < len(wasm):
        sid = wasm[pos]
        size, pos = _leb_u32(wasm, pos + 1)
        end = pos + size
        if end > len(wasm):
            raise ValueError("section extends past the end of the module")
        if sid == 0:
            nlen, npos = _leb_u32(wasm, pos)
            if npos + nlen > end:
                raise ValueError("custom section name extends past its section")
            out.append((wasm[npos:npos + nlen].decode("utf-8", "replace"),
                        bytes(wasm[npos + nlen:end])))
        pos = end
    return out


def wit_from_custom_section(wasm: bytes) -> str | None:
    """The WIT text embedded in a ``golemish:wit`` custom section, or None."""
    for name, payload in custom_sections(wasm):
        if name == WIT_SECTION:
            return payload.decode("utf-8")
    return None


def add_custom_section(wasm: bytes, name: str, payload: bytes) -> bytes:
    """The module with a custom section appended (valid anywhere after the header)."""
    encoded = name.encode("utf-8")
    body = _leb_encode(len(encoded)) + encoded + payload
    return bytes(wasm) + b"\0" + _leb_encode(len(body)) + body


def embed_wit(wasm: bytes, wit_text: str) -> bytes:
    """Append ``wit_text`` as a ``golemish:wit`` custom section."""
    return add_custom_section(wasm, WIT_SECTION, wit_text.encode("utf-8"))
