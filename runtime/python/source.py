"""A Python component's source: reading a file or a package, syntax check, the WIT text.

A component is one ``.py`` file, or a directory of modules and packages with an
entry module (``deploy src/ --entry app.main``). A directory holding
``__init__.py`` is itself the package (``deploy app/`` imports ``app.x``);
without ``--entry`` the entry is ``DIR.main`` if ``DIR/main.py`` exists, else
``main``. Its exports
are the entry module's public module-level functions (or, once any is marked
``@golemish.export``, only the marked ones); the interpreter itself reads their
type hints at deploy (guest_lib.describe) and the host writes the WIT world:
int -> s64, float -> f64, bool, str -> string, bytes -> list<u8>, list[T],
tuple[A, B], ``T | None`` -> option<T>, dataclasses -> record, Enum -> enum,
nested. Python names become WIT names with ``_`` as ``-``.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArgumentError, ComponentError
from ..typed.invoke import load_wit

#: Files of a package deploy beyond this many bytes are refused (they live in the oplog
#: store and are passed to the interpreter at every worker creation).
MAX_SOURCE_BYTES = 16 << 20


@dataclass(frozen=True)
class Source:
    """What a Python component runs: files by relative path, and how to start it."""

    files: dict[str, str]
    #: The entry module's dotted name, or None: run ``main`` as ``__main__``.
    entry: str | None
    #: The file holding the exports (for messages).
    main: str

    def blob(self) -> bytes:
        """The component's stored bytes: a lone module's source as is (so older
        versions compare equal), a package as canonical JSON."""
        if self.entry is None:
            return self.files[self.main].encode()
        return json.dumps({"entry": self.entry, "files": self.files}, sort_keys=True,
                          ensure_ascii=False).encode()

    @staticmethod
    def from_blob(blob: bytes, meta: dict[str, object]) -> Source:
        if meta.get("layout") != "package":
            name = str(meta["filename"])
            return Source({name: blob.decode("utf-8")}, None, name)
        data = json.loads(blob)
        return Source(data["files"], data["entry"], _module_file(data["entry"], data["files"]))


def check_syntax(source: str, filename: str) -> ast.Module:
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as e:
        raise ComponentError(f"{filename}:{e.lineno}: syntax error: {e.msg}") from None


def _read(path: Path, rel: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ComponentError(f"cannot read {rel}: {getattr(e, 'strerror', None) or e}") \
            from None


def _module_file(entry: str, files: dict[str, str]) -> str:
    rel = entry.replace(".", "/")
    for cand in (rel + ".py", rel + "/__init__.py"):
        if cand in files:
            return cand
    raise ArgumentError(f"entry module {entry!r} is not in the directory (no {rel}.py)")


def read(path: Path, entry: str | None = None) -> Source:
    """A file or a package directory, syntax-checked (``file:line: syntax error: …``)."""
    if not path.is_dir():
        if entry is not None:
            raise ArgumentError("--entry is for a directory; a .py file is its own entry")
        src = Source({path.name: _read(path, path.name)}, None, path.name)
    else:
        files: dict[str, str] = {}
        total = 0
        # A directory with __init__.py is the package itself: its files keep its name.
        top = path.resolve().parent if (path / "__init__.py").is_file() else path.resolve()
        for p in sorted(path.resolve().rglob("*.py")):
            rel = p.relative_to(top).as_posix()
            if any(part.startswith(".") or part == "__pycache__" for part in rel.split("/")):
                continue
            files[rel] = _read(p, rel)
            total += len(files[rel])
            if total > MAX_SOURCE_BYTES:
                raise ComponentError(f"{path}: more than {MAX_SOURCE_BYTES >> 20} MiB of "
                                     "Python source")
        if not files:
            raise ComponentError(f"{path}: no .py files in the directory")
        if entry is None:
            pkg = path.resolve().name
            entry = f"{pkg}.main" if f"{pkg}/main.py" in files else "main"
            if entry == "main" and "main.py" not in files:
                raise ArgumentError(f"{path}: say which module is the entry (--entry "
                                    f"{pkg}.main), or name it main.py")
        if not all(part.isidentifier() for part in entry.split(".")):
            raise ArgumentError(f"--entry {entry!r} is not a dotted module name")
        src = Source(files, entry, _module_file(entry, files))
    for rel, text in src.files.items():
        check_syntax(text, rel)
    return src


def wit_name(name: str) -> str:
    return name.replace("_", "-")


def wit_text(lines: list[str], world: str, where: str) -> str:
    """The WIT document of a world with these definitions and exports (checked)."""
    world_name = "".join(c if c.isalnum() else "-" for c in world.lower()).strip("-") or "agent"
    if not world_name[0].isalpha():
        world_name = "w-" + world_name
    text = "package golemish:python;\n\nworld " + world_name + " {\n" + "\n".join(lines) + "\n}\n"
    load_wit(text, f"{where} (derived WIT)")  # a name WIT cannot spell fails here
    return text
