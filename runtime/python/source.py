"""A Python component's source: syntax check and the WIT derived from its type hints.

Module-level public functions (``def name(...)``, not starting with ``_``) whose
parameters and return value all carry type hints become the worker's functions.
Hints map to WIT: int -> s64, float -> f64, bool -> bool, str -> string,
list[T] -> list<T>, ``T | None`` / ``Optional[T]`` -> option<T>; a function
without a return hint, or ``-> None``, returns nothing. Python names become WIT
names with ``_`` as ``-`` (``add_item`` is ``add-item``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ..errors import ComponentError
from ..typed.invoke import load_wit
from ..typed.wit_syntax import KEYWORDS

_PRIMS = {"int": "s64", "float": "f64", "bool": "bool", "str": "string"}


@dataclass(frozen=True)
class Export:
    python_name: str
    wit: str  # "name: func(a: s64) -> s64"


def check_syntax(source: str, filename: str) -> ast.Module:
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as e:
        raise ComponentError(f"{filename}:{e.lineno}: syntax error: {e.msg}") from None


def _type(node: ast.expr | None, where: str) -> str:
    if isinstance(node, ast.Name) and node.id in _PRIMS:
        return _PRIMS[node.id]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        if node.value.id in ("list", "List"):
            return f"list<{_type(node.slice, where)}>"
        if node.value.id == "Optional":
            return f"option<{_type(node.slice, where)}>"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        sides = [node.left, node.right]
        nones = [s for s in sides if isinstance(s, ast.Constant) and s.value is None]
        if len(nones) == 1:
            other = next(s for s in sides if s is not nones[0])
            return f"option<{_type(other, where)}>"
    shown = ast.unparse(node) if node is not None else "no hint"
    raise ComponentError(f"{where}: type hint {shown!r} has no WIT mapping "
                         "(supported: int, float, bool, str, list[T], T | None)")


def wit_name(name: str) -> str:
    return name.replace("_", "-")


def _ident(name: str) -> str:
    """A WIT identifier in source form: a keyword is written %name."""
    kebab = wit_name(name)
    return f"%{kebab}" if kebab in KEYWORDS else kebab


def exports(tree: ast.Module, filename: str) -> list[Export]:
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        where = f"{filename}:{node.lineno}: {node.name}"
        a = node.args
        if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs:
            raise ComponentError(f"{where}: only plain positional parameters are supported")
        params = ", ".join(f"{_ident(p.arg)}: {_type(p.annotation, where)}" for p in a.args)
        ret = node.returns
        result = "" if ret is None or (isinstance(ret, ast.Constant) and ret.value is None) \
            else f" -> {_type(ret, where)}"
        found.append(Export(node.name, f"{_ident(node.name)}: func({params}){result}"))
    if not found:
        raise ComponentError(f"{filename}: defines no public module-level function to export")
    return found


def derive_wit(source: str, filename: str, world: str) -> tuple[str, dict[str, str]]:
    """(WIT text, WIT function name -> Python name) for the module's exports."""
    found = exports(check_syntax(source, filename), filename)
    lines = [f"  export {e.wit};" for e in found]
    world_name = "".join(c if c.isalnum() else "-" for c in world.lower()).strip("-") or "agent"
    if not world_name[0].isalpha():
        world_name = "w-" + world_name
    text = "package golemish:python;\n\nworld " + world_name + " {\n" + "\n".join(lines) + "\n}\n"
    load_wit(text, f"{filename} (derived WIT)")  # a name WIT cannot spell fails here
    return text, {wit_name(e.python_name): e.python_name for e in found}
