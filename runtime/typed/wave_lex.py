"""WAVE tokens (see wave.py): numbers, chars, strings, labels, punctuation, with positions.

Follows the WAVE EBNF of wasm-tools' ``wasm-wave`` crate: ``//`` comments,
strings and chars with the escapes ``\\' \\" \\\\ \\t \\n \\r \\u{...}``, multiline
``\"\"\"`` strings (dedented by the indentation of the closing delimiter), labels
in WIT's kebab-case with an optional ``%`` escape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KEYWORDS = frozenset({"true", "false", "inf", "nan", "some", "none", "ok", "err"})
# `inf` alone lexes as a label (it may name a field); `-inf` is a number.
_NUMBER = re.compile(r"-inf(?![\w-])|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LABEL = re.compile(r"%?((?:[a-z][a-z0-9]*|[A-Z][A-Z0-9]*)(?:-(?:[a-z0-9]+|[A-Z0-9]+))*)")
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


class WaveError(ValueError):
    """A WAVE value that does not parse (or does not fit its type), with its position."""

    def __init__(self, msg: str, line: int = 0, col: int = 0) -> None:
        super().__init__(msg)
        self.msg, self.line, self.col = msg, line, col


@dataclass(frozen=True, slots=True)
class Tok:
    kind: str       # "num", "char", "str", "label", one of "()[]{},:", or "eof"
    value: str      # number text, decoded char/string, label name, punctuation
    line: int
    col: int
    escaped: bool = False   # a label written with a leading %
    end: int = 0            # offset just past the token

    def describe(self) -> str:
        """How error messages name what was found instead."""
        if self.kind == "eof":
            return "end of input"
        if self.kind == "str":
            return "string"
        if self.kind == "char":
            return f"char {self.value!r}"
        if self.kind == "num":
            return self.value
        if self.kind == "label":
            return f"{'%' if self.escaped else ''}{self.value}"
        return f"'{self.value}'"


class Lexer:
    """Tokens on demand, so a call parser can stop at its closing parenthesis."""

    def __init__(self, text: str, pos: int = 0) -> None:
        self.text, self.pos = text, pos
        self._peeked: Tok | None = None
        # Line bookkeeping advances with the tokens, so positions cost O(n) in all.
        self._line_at, self._line, self._lstart = 0, 1, 0

    def where(self, pos: int) -> tuple[int, int]:
        """(line, column), both from 1, of a text offset at or after the last one asked."""
        if pos < self._line_at:
            self._line_at, self._line, self._lstart = 0, 1, 0
        text = self.text
        nl = text.find("\n", self._line_at, pos)
        while nl >= 0:
            self._line, self._lstart = self._line + 1, nl + 1
            nl = text.find("\n", nl + 1, pos)
        self._line_at = pos
        return self._line, pos - self._lstart + 1

    def error(self, msg: str, pos: int) -> WaveError:
        line, col = self.where(pos)
        return WaveError(f"{msg} at {line}:{col}", line, col)

    def peek(self) -> Tok:
        if self._peeked is None:
            self._peeked = self._lex()
        return self._peeked

    def next(self) -> Tok:
        t = self.peek()
        self._peeked = None
        return t

    def _skip(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif text.startswith("//", self.pos):
                nl = text.find("\n", self.pos)
                self.pos = n if nl < 0 else nl
            else:
                return

    def _lex(self) -> Tok:
        self._skip()
        start, text = self.pos, self.text
        line, col = self.where(start)
        if start >= len(text):
            return Tok("eof", "", line, col, end=start)
        c = text[start]
        if c in "()[]{},:":
            self.pos += 1
            return Tok(c, c, line, col, end=self.pos)
        if c == '"':
            if text.startswith('"""', start):
                s = self._multiline(start)
            else:
                s = self._quoted(start, '"')
            return Tok("str", s, line, col, end=self.pos)
        if c == "'":
            s = self._quoted(start, "'")
            if len(s) != 1:
                raise self.error(f"a char holds exactly one character, got {len(s)}", start)
            return Tok("char", s, line, col, end=self.pos)
        m = _NUMBER.match(text, start)
        if m:
            self.pos = m.end()
            return Tok("num", m.group(), line, col, end=self.pos)
        m = _LABEL.match(text, start)
        if m and (m.end() == len(text) or not (text[m.end()].isalnum() or text[m.end()] in "-_")):
            self.pos = m.end()
            return Tok("label", m.group(1), line, col, escaped=c == "%", end=self.pos)
        bad = re.match(r"%?[\w-]+", text[start:])
        if bad:
            raise self.error(f"invalid label {bad.group()!r} (labels are kebab-case)", start)
        raise self.error(f"unexpected character {c!r}", start)

    def _escape(self, i: int) -> tuple[str, int]:
        """Decode the escape whose backslash is at ``i``; returns (char, next index)."""
        text = self.text
        e = text[i + 1:i + 2]
        if e in _ESCAPES:
            return _ESCAPES[e], i + 2
        if e == "u" and text[i + 2:i + 3] == "{":
            close = text.find("}", i + 3)
            digits = text[i + 3:close] if close > 0 else ""
            if not re.fullmatch(r"[0-9a-fA-F]{1,6}", digits):
                raise self.error("bad unicode escape (write \\u{1F600})", i)
            cp = int(digits, 16)
            if cp >= 0x110000 or 0xD800 <= cp <= 0xDFFF:
                raise self.error(f"\\u{{{digits}}} is not a Unicode scalar value", i)
            return chr(cp), close + 1
        raise self.error(f"unknown escape '\\{e}'", i)

    def _quoted(self, start: int, quote: str) -> str:
        text, i, out = self.text, start + 1, []
        while True:
            if i >= len(text) or text[i] == "\n":
                what = "string" if quote == '"' else "char"
                raise self.error(f"unterminated {what}", start)
            c = text[i]
            if c == quote:
                self.pos = i + 1
                return "".join(out)
            if c == "\\":
                ch, i = self._escape(i)
                out.append(ch)
            else:
                out.append(c)
                i += 1

    def _multiline(self, start: int) -> str:
        text = self.text
        i = start + 3
        if text.startswith("\r\n", i):
            i += 2
        elif text.startswith("\n", i):
            i += 1
        else:
            raise self.error('a multiline string starts with """ and a line break', start)
        end = text.find('"""', i)  # the first one closes: inner triples must be broken up
        if end < 0:
            raise self.error("unterminated multiline string", start)
        body = text[i:end]
        nl = body.rfind("\n")
        if body[nl + 1:].strip(" "):
            raise self.error('the closing """ of a multiline string goes on its own line', end)
        self.pos = end + 3
        if nl < 0:
            return ""
        indent = len(body) - nl - 1
        decoded, offset = [], i
        for raw in body[:nl].split("\n"):
            line = raw[:-1] if raw.endswith("\r") else raw  # a literal CR LF is a line break
            if line.strip(" ") and not line.startswith(" " * indent):
                raise self.error("multiline string line is indented less than its closing "
                                 '"""', offset)
            decoded.append(self._unescape(line[indent:], offset + indent))
            offset += len(raw) + 1
        return "\n".join(decoded)

    def _unescape(self, s: str, at: int) -> str:
        out, j = [], 0
        while j < len(s):
            if s[j] == "\\":
                ch, nxt = self._escape(at + j)
                out.append(ch)
                j = nxt - at
            else:
                out.append(s[j])
                j += 1
        return "".join(out)


def _esc(c: str, quote: str) -> str:
    if c == quote or c == "\\":
        return "\\" + c
    if c in "\n\t\r":
        return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}[c]
    if ord(c) < 0x20 or ord(c) == 0x7F:
        return f"\\u{{{ord(c):x}}}"
    return c


def quote_string(s: str) -> str:
    return '"' + "".join(_esc(c, '"') for c in s) + '"'


def quote_char(c: str) -> str:
    return "'" + _esc(c, "'") + "'"


def label(name: str) -> str:
    """A case label as WAVE writes it: keywords need the % escape."""
    return f"%{name}" if name in KEYWORDS else name
