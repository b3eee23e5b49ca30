"""WIT lexical structure: tokens, keywords and the located error type (see wit.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

KEYWORDS = frozenset("""
    as async bool borrow char constructor enum export f32 f64 flags from func future import
    include interface list map option own package record resource result s16 s32 s64 s8
    static stream string tuple type u16 u32 u64 u8 use variant with world
""".split())
UNSUPPORTED_TYPES = {"borrow", "own", "future", "stream", "map"}
_IDENT = re.compile(r"(?:[a-z][a-z0-9]*|[A-Z][A-Z0-9]*)(?:-(?:[a-z0-9]+|[A-Z0-9]+))*")
_PUNCT = "{}()<>,;:=./@*"


class WitError(Exception):
    """A WIT syntax or resolution error, located as ``file:line:col: message``."""

    def __init__(self, msg: str, file: str, line: int, col: int) -> None:
        super().__init__(f"{file}:{line}:{col}: {msg}")
        self.msg, self.file, self.line, self.col = msg, file, line, col


# -- tokens -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Tok:
    kind: str   # "id", "version", "->", a punctuation character, or "eof"
    text: str
    line: int
    col: int
    escaped: bool = False  # an identifier written with a leading %


def tokenize(src: str, file: str) -> list[Tok]:
    toks: list[Tok] = []
    i, line, lstart, n = 0, 1, 0, len(src)

    def err(msg: str, at: int) -> WitError:
        return WitError(msg, file, line, at - lstart + 1)

    while i < n:
        c = src[i]
        if c == "\n":
            i, line, lstart = i + 1, line + 1, i + 1
        elif c in " \t\r":
            i += 1
        elif src.startswith("//", i):
            while i < n and src[i] != "\n":
                i += 1
        elif src.startswith("/*", i):
            start, depth = i, 0
            while True:  # block comments nest in WIT
                if i >= n:
                    raise WitError("unterminated block comment", file, line, start - lstart + 1)
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                    if depth == 0:
                        break
                else:
                    if src[i] == "\n":
                        line, lstart = line + 1, i + 1
                    i += 1
        elif src.startswith("->", i):
            toks.append(Tok("->", "->", line, i - lstart + 1))
            i += 2
        elif c in _PUNCT:
            toks.append(Tok(c, c, line, i - lstart + 1))
            i += 1
        elif c.isdigit():  # only versions (package, use paths, gates) contain digits here
            j = i
            while j < n and (src[j].isalnum() or src[j] in ".+-"):
                j += 1
            toks.append(Tok("version", src[i:j], line, i - lstart + 1))
            i = j
        elif c == "%" or c.isalpha() or c == "_":
            j = i + 1 if c == "%" else i
            k = j
            while k < n and (src[k].isalnum() or src[k] in "-_"):
                k += 1
            word = src[j:k]
            if word == "_" and c != "%":
                toks.append(Tok("_", "_", line, i - lstart + 1))
            elif not _IDENT.fullmatch(word):
                raise err(f"invalid identifier {src[i:k]!r} (identifiers are kebab-case: "
                          "lowercase or uppercase words joined by '-')", i)
            else:
                toks.append(Tok("id", word, line, i - lstart + 1, escaped=c == "%"))
            i = k
        else:
            raise err(f"unexpected character {c!r}", i)
    toks.append(Tok("eof", "end of file", line, n - lstart + 1))
    return toks


