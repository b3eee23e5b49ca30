"""The WIT parser and type resolver behind ``wit.parse_wit`` (see wit.py for the subset).

Parsing builds, per interface and world, a table of type definitions whose bodies
may still hold named references (``_Ref``); the resolver then replaces references
by the types they name, so definitions may come in any order and a cycle is an
error at the reference that closes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .wit_syntax import KEYWORDS, UNSUPPORTED_TYPES, Tok, WitError, tokenize
from .wit_types import (
    INT_RANGES, MAX_FLAGS, Enum, Flags, FuncDecl, List, Option, Prim, Record, Result, Tuple,
    Type, Variant,
)

# -- parser ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Ref:
    """An unresolved named-type reference (resolved once every definition is known)."""

    name: str
    tok: Tok


@dataclass
class _Scope:
    name: str                      # "" for a world, else the interface name
    core_prefix: str               # "ns:pkg/iface@ver#" or "" for world-level functions
    defs: dict[str, tuple[Any, Tok]] = field(default_factory=dict)  # name -> (type AST, tok)
    uses: dict[str, tuple[str, str, Tok]] = field(default_factory=dict)  # local -> (iface, name)
    funcs: list[tuple[str, list[tuple[str, Any]], Any, Tok]] = field(default_factory=list)
    resolved: dict[str, Type] = field(default_factory=dict)


class Parser:
    """Recursive descent over the token list, filling the interface and world tables.

    Type expressions become wit_types objects where they are complete, with ``_Ref``
    for names and ``(cls, name, items)`` tuples for record/variant/enum/flags bodies,
    all turned into final types by the Resolver.
    """

    def __init__(self, src: str, file: str) -> None:
        self.file = file
        self.toks = tokenize(src, file)
        self.pos = 0
        self.package: str | None = None
        self.interfaces: dict[str, _Scope] = {}
        self.worlds: list[tuple[str, _Scope, list[tuple[str, Tok]]]] = []
        self.imports: list[str] = []

    # token helpers
    def peek(self, k: int = 0) -> Tok:
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def next(self) -> Tok:
        t = self.peek()
        self.pos += 1
        return t

    def error(self, msg: str, tok: Tok | None = None) -> WitError:
        tok = tok or self.peek()
        return WitError(msg, self.file, tok.line, tok.col)

    def at_kw(self, kw: str) -> bool:
        t = self.peek()
        return t.kind == "id" and t.text == kw and not t.escaped

    def expect(self, kind: str) -> Tok:
        t = self.peek()
        if t.kind != kind:
            raise self.error(f"expected '{kind}', got {self._describe(t)}")
        return self.next()

    def expect_kw(self, kw: str) -> Tok:
        if not self.at_kw(kw):
            raise self.error(f"expected '{kw}', got {self._describe(self.peek())}")
        return self.next()

    def _describe(self, t: Tok) -> str:
        return t.text if t.kind in ("eof", "version") else f"'{t.text}'"

    def ident(self, what: str = "identifier") -> Tok:
        t = self.peek()
        if t.kind != "id":
            raise self.error(f"expected {what}, got {self._describe(t)}")
        if t.text in KEYWORDS and not t.escaped:
            raise self.error(f"expected {what}, got keyword '{t.text}' (write %{t.text} "
                             "to use it as a name)")
        return self.next()

    def skip_gates(self) -> None:
        while self.peek().kind == "@" and self.peek(1).kind == "id":
            self.next()
            self.next()
            if self.peek().kind == "(":
                depth = 0
                while True:
                    t = self.next()
                    if t.kind == "eof":
                        raise self.error("unterminated attribute", t)
                    depth += {"(": 1, ")": -1}.get(t.kind, 0)
                    if depth == 0:
                        break

    # document
    def parse(self) -> None:
        self.skip_gates()
        if self.at_kw("package"):
            self.next()
            self.package = self.package_name()
            if self.peek().kind == "{":
                raise self.error("nested package blocks are not supported")
            self.expect(";")
        while self.peek().kind != "eof":
            self.skip_gates()
            if self.at_kw("interface"):
                self.next()
                name = self.ident("interface name")
                if name.text in self.interfaces:
                    raise self.error(f"interface '{name.text}' is defined twice", name)
                scope = _Scope(name.text, self.core_prefix(name.text))
                self.interfaces[name.text] = scope
                self.interface_body(scope)
            elif self.at_kw("world"):
                self.next()
                self.world(self.ident("world name"))
            elif self.at_kw("use"):
                raise self.error("top-level 'use' of other packages is not supported")
            else:
                raise self.error(f"expected 'interface' or 'world', got "
                                 f"{self._describe(self.peek())}")

    def package_name(self) -> str:
        ns = self.ident("package namespace").text
        self.expect(":")
        name = f"{ns}:{self.ident('package name').text}"
        if self.peek().kind == "@":
            self.next()
            name += "@" + self.expect("version").text
        return name

    def core_prefix(self, iface: str) -> str:
        if self.package is None:
            return f"{iface}#"
        base, _, ver = self.package.partition("@")
        return f"{base}/{iface}{'@' + ver if ver else ''}#"

    def interface_body(self, scope: _Scope) -> None:
        self.expect("{")
        while self.peek().kind != "}":
            self.skip_gates()
            if self.peek().kind == "}":
                break
            if self.peek().kind == "eof":
                raise self.error("expected '}', got end of file")
            if not self.typedef_or_use(scope):
                name = self.ident("function or type definition")
                self.expect(":")
                params, result = self.func_type()
                self.add_func(scope, name, params, result)
                self.expect(";")
        self.next()

    def add_func(self, scope: _Scope, name: Tok, params: list, result: Any) -> None:
        if any(f[0] == name.text for f in scope.funcs):
            raise self.error(f"function '{name.text}' is defined twice", name)
        scope.funcs.append((name.text, params, result, name))

    def world(self, name: Tok) -> None:
        scope = _Scope("", "")
        exports: list[tuple[str, Tok]] = []
        self.worlds.append((name.text, scope, exports))
        self.expect("{")
        while self.peek().kind != "}":
            self.skip_gates()
            if self.peek().kind == "}":
                break
            if self.peek().kind == "eof":
                raise self.error("expected '}', got end of file")
            if self.at_kw("export") or self.at_kw("import"):
                is_export = self.next().text == "export"
                self.extern(scope, exports, is_export)
            elif self.at_kw("include"):
                raise self.error("'include' is not supported")
            elif not self.typedef_or_use(scope):
                raise self.error(f"expected 'export', 'import' or a type definition, got "
                                 f"{self._describe(self.peek())}")
        self.next()

    def extern(self, scope: _Scope, exports: list, is_export: bool) -> None:
        start = self.peek()
        name = self.ident("export name" if is_export else "import name")
        if self.peek().kind == ":" and self.peek(1).kind == "id" and self.peek(1).text in (
                "func", "async", "interface") and not self.peek(1).escaped:
            self.next()
            if self.at_kw("interface"):  # inline interface
                self.next()
                inline = _Scope(name.text, f"{name.text}#")
                self.interface_body(inline)
                if is_export:
                    if name.text in self.interfaces:
                        raise self.error(f"interface '{name.text}' is defined twice", name)
                    self.interfaces[name.text] = inline
                    exports.append((name.text, name))
                else:
                    self.imports.append(name.text)
                return
            params, result = self.func_type()
            self.expect(";")
            if is_export:
                self.add_func(scope, name, params, result)
            else:
                self.imports.append(name.text)
            return
        # a path: `iface` or `ns:pkg/iface@ver`
        path = name.text
        if self.peek().kind == ":":
            self.next()
            path += ":" + self.ident("package name").text
            while self.peek().kind == "/":
                self.next()
                path += "/" + self.ident("interface name").text
            if self.peek().kind == "@":
                self.next()
                path += "@" + self.expect("version").text
        self.expect(";")
        if not is_export:
            self.imports.append(path)
        elif ":" in path:
            raise self.error(f"exporting interfaces of other packages ({path}) is not "
                             "supported", start)
        else:
            exports.append((path, start))

    def typedef_or_use(self, scope: _Scope) -> bool:
        t = self.peek()
        if t.kind != "id" or t.escaped:
            return False
        kw = t.text
        if kw == "use":
            self.next()
            iface = self.ident("interface name")
            if self.peek().kind in (":", "/", "@"):
                raise self.error("'use' of other packages is not supported")
            self.expect(".")
            self.expect("{")
            while True:
                orig = self.ident("type name")
                local = orig
                if self.at_kw("as"):
                    self.next()
                    local = self.ident("type name")
                self.define(scope, local, None)
                scope.uses[local.text] = (iface.text, orig.text, orig)
                if self.peek().kind != ",":
                    break
                self.next()
                if self.peek().kind == "}":
                    break
            self.expect("}")
            self.expect(";")
            return True
        if kw == "type":
            self.next()
            name = self.ident("type name")
            self.expect("=")
            self.define(scope, name, self.type())
            self.expect(";")
            return True
        if kw in ("record", "variant"):
            self.next()
            name = self.ident(f"{kw} name")
            items = self.braced(lambda: self.record_field() if kw == "record"
                                else self.variant_case(), kw, name)
            cls = Record if kw == "record" else Variant
            self.define(scope, name, (cls, name.text, items))
            return True
        if kw in ("enum", "flags"):
            self.next()
            name = self.ident(f"{kw} name")
            items = self.braced(lambda: (self.ident("case name" if kw == "enum"
                                                    else "flag name"),), kw, name)
            if kw == "flags" and len(items) > MAX_FLAGS:
                raise self.error(f"flags may have at most {MAX_FLAGS} members, "
                                 f"'{name.text}' has {len(items)}", name)
            cls = Enum if kw == "enum" else Flags
            self.define(scope, name, (cls, name.text, items))
            return True
        if kw == "resource":
            raise self.error("resources are not supported")
        return False

    def braced(self, item: Any, kw: str, name: Tok) -> list:
        self.expect("{")
        items, seen = [], set()
        while self.peek().kind != "}":
            self.skip_gates()
            it = item()
            if it[0].text in seen:
                raise self.error(f"duplicate name '{it[0].text}' in {kw}", it[0])
            seen.add(it[0].text)
            items.append(it)
            if self.peek().kind != ",":
                break
            self.next()
        self.expect("}")
        if not items:
            what = {"record": "field", "flags": "flag"}.get(kw, "case")
            raise self.error(f"{kw} '{name.text}' must have at least one {what}", name)
        return items

    def record_field(self) -> tuple:
        name = self.ident("field name")
        self.expect(":")
        return (name, self.type())

    def variant_case(self) -> tuple:
        name = self.ident("case name")
        payload = None
        if self.peek().kind == "(":
            self.next()
            payload = self.type()
            self.expect(")")
        return (name, payload)

    def define(self, scope: _Scope, name: Tok, ast: Any) -> None:
        if name.text in scope.defs:
            raise self.error(f"type '{name.text}' is defined twice", name)
        scope.defs[name.text] = (ast, name)

    def func_type(self) -> tuple[list, Any]:
        if self.at_kw("async"):
            raise self.error("async functions are not supported")
        self.expect_kw("func")
        self.expect("(")
        params, seen = [], set()
        while self.peek().kind != ")":
            name = self.ident("parameter name")
            if name.text in seen:
                raise self.error(f"duplicate parameter '{name.text}'", name)
            seen.add(name.text)
            self.expect(":")
            params.append((name.text, self.type()))
            if self.peek().kind != ",":
                break
            self.next()
        self.expect(")")
        result = None
        if self.peek().kind == "->":
            self.next()
            if self.peek().kind == "(" and self.peek(1).kind == ")":
                self.next()  # `-> ()`, an old spelling of "no result" some docs still use
                self.next()
            elif self.peek().kind == "(":
                raise self.error("multiple or named results are not supported; "
                                 "return a tuple or record")
            else:
                result = self.type()
        return params, result

    def type(self) -> Any:
        t = self.peek()
        if t.kind == "_":
            raise self.error("'_' is only allowed inside result<...>")
        if t.kind != "id":
            raise self.error(f"expected a type, got {self._describe(t)}")
        self.next()
        if t.escaped:
            return _Ref(t.text, t)
        name = t.text
        if name in ("bool", "char", "string", "f32", "f64") or name in INT_RANGES:
            return Prim(name)
        if name in ("list", "option"):
            self.expect("<")
            inner = self.type()
            if name == "list" and self.peek().kind == ",":
                raise self.error("fixed-length lists are not supported")
            self.expect(">")
            return (List if name == "list" else Option)(inner)
        if name == "result":
            if self.peek().kind != "<":
                return Result(None, None)
            self.next()
            if self.peek().kind == "_":
                self.next()
                ok = None
                self.expect(",")
                err = self.type()
            else:
                ok = self.type()
                err = None
                if self.peek().kind == ",":
                    self.next()
                    err = self.type()
            self.expect(">")
            return Result(ok, err)
        if name == "tuple":
            self.expect("<")
            items = [self.type()]
            while self.peek().kind == ",":
                self.next()
                if self.peek().kind == ">":
                    break
                items.append(self.type())
            self.expect(">")
            return Tuple(tuple(items))
        if name in UNSUPPORTED_TYPES:
            raise self.error(f"'{name}' types are not supported", t)
        if name in KEYWORDS:
            raise self.error(f"expected a type, got keyword '{name}'", t)
        return _Ref(name, t)


# -- resolution ---------------------------------------------------------------------

class Resolver:
    """Turns parsed type expressions into types, following names through scopes and uses."""

    def __init__(self, p: Parser) -> None:
        self.p = p
        self.active: set[tuple[int, str]] = set()

    def named(self, scope: _Scope, name: str, tok: Tok) -> Type:
        if name in scope.resolved:
            return scope.resolved[name]
        if name not in scope.defs:
            where = f"interface '{scope.name}'" if scope.name else "this world"
            raise self.p.error(f"unknown type '{name}' in {where}", tok)
        key = (id(scope), name)
        if key in self.active:
            raise self.p.error(f"type '{name}' refers to itself", tok)
        self.active.add(key)
        ast, deftok = scope.defs[name]
        if ast is None:  # from `use`
            iface, orig, utok = scope.uses[name]
            src = self.p.interfaces.get(iface)
            if src is None:
                raise self.p.error(f"unknown interface '{iface}'", utok)
            t = self.named(src, orig, utok)
        else:
            t = self.type(scope, ast)
        self.active.discard(key)
        scope.resolved[name] = t
        return t

    def type(self, scope: _Scope, ast: Any) -> Type:
        match ast:
            case _Ref(name, tok):
                return self.named(scope, name, tok)
            case Prim():
                return ast
            case List(e):
                return List(self.type(scope, e))
            case Option(e):
                return Option(self.type(scope, e))
            case Result(ok, err):
                return Result(None if ok is None else self.type(scope, ok),
                              None if err is None else self.type(scope, err))
            case Tuple(items):
                return Tuple(tuple(self.type(scope, i) for i in items))
            case (cls, name, items) if cls is Record:
                return Record(name, tuple((n.text, self.type(scope, t)) for n, t in items))
            case (cls, name, items) if cls is Variant:
                return Variant(name, tuple((n.text, None if t is None else self.type(scope, t))
                                           for n, t in items))
            case (cls, name, items):
                return cls(name, tuple(n.text for (n,) in items))
        raise AssertionError(ast)

    def scope(self, scope: _Scope) -> dict[str, Type]:
        return {name: self.named(scope, name, tok) for name, (_, tok) in scope.defs.items()}

    def funcs(self, scope: _Scope, key: Any) -> list[tuple[FuncDecl, Tok]]:
        out = []
        for name, params, result, tok in scope.funcs:
            out.append((FuncDecl(
                key(name), tuple((n, self.type(scope, t)) for n, t in params),
                None if result is None else self.type(scope, result),
                scope.core_prefix + name, scope.name or None), tok))
        return out


