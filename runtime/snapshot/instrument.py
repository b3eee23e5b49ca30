"""Deploy-time instrumentation: export every mutable global and every table.

Snapshots must capture all mutable state, and linear memory is not all of it:
C toolchains keep the shadow stack pointer in a *hidden* mutable global,
``__stack_pointer``. wasmtime-py only reaches exported globals and tables, so
at deploy we export each module-defined mutable global as
``__golemish_global_<index>`` and each module-defined table (to check table
sizes) as ``__golemish_table_<index>``; indexes count imports first. Only the
export section changes: all other sections, custom ones included, are copied
byte for byte in order, so code offsets and debug info stay valid. We decode
only what we must and raise InstrumentError rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

GLOBAL_PREFIX = "__golemish_global_"
TABLE_PREFIX = "__golemish_table_"

_MAGIC, _VERSION = b"\x00asm", b"\x01\x00\x00\x00"
_CUSTOM, _IMPORT, _TABLE, _GLOBAL, _EXPORT = 0, 2, 4, 6, 7
#: A new export section goes before the first of start, element, datacount,
#: code, data: i.e. after type..global (and tag) in the canonical order.
_AFTER_EXPORT = frozenset({8, 9, 12, 10, 11})
_KIND_FUNC, _KIND_TABLE, _KIND_MEMORY, _KIND_GLOBAL, _KIND_TAG = range(5)
#: What follows each import kind byte, as _Reader methods: func: type index; table: reftype,
#: limits; memory: limits; global: valtype, mutability; tag: attribute, type index.
_IMPORT_DESC = {_KIND_FUNC: ("u32",), _KIND_TABLE: ("valtype", "limits"), _KIND_MEMORY: ("limits",),
                _KIND_GLOBAL: ("valtype", "byte"), _KIND_TAG: ("byte", "u32")}

#: Value types that are one byte: numbers, v128 and the reference-type
#: shorthands of the reference-types, GC and exception-handling proposals.
_SIMPLE_VALTYPES = {
    0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128", 0x70: "funcref",
    0x6F: "externref", 0x6E: "anyref", 0x6D: "eqref", 0x6C: "i31ref", 0x6B: "structref",
    0x6A: "arrayref", 0x69: "exnref", 0x73: "nullfuncref", 0x72: "nullexternref",
    0x71: "nullref", 0x74: "nullexnref"}
_REF_NULL, _REF = 0x63, 0x64  # (ref null ht) / (ref ht), then an s33 heap type
_HEAP_TYPES = {0x70: "func", 0x6F: "extern", 0x6E: "any", 0x6D: "eq", 0x6C: "i31", 0x6B: "struct",
               0x6A: "array", 0x69: "exn", 0x73: "nofunc", 0x72: "noextern", 0x71: "none",
               0x74: "noexn"}

# Constant-expression opcodes (up to `end`, 0x0B), by what their immediates look like.
_CONST_LEB = {0x41: (32, True), 0x42: (64, True),     # i32.const, i64.const
              0x23: (32, False), 0xD2: (32, False)}   # global.get, ref.func
_CONST_FIXED = {0x43: 4, 0x44: 8}                     # f32.const, f64.const
_CONST_ARITH = frozenset({0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E})  # extended-const add/sub/mul
_REF_NULL_OP, _SIMD_PREFIX, _V128_CONST = 0xD0, 0xFD, 12


class InstrumentError(ValueError):
    """The module is malformed or uses an encoding this rewriter does not handle."""


@dataclass(frozen=True, slots=True)
class GlobalInfo:
    """A module-defined mutable global and the name we export it under."""

    index: int  # in the global index space (imported globals first)
    export_name: str
    valtype: str  # 'i32' / 'i64' / 'f32' / 'f64' / 'v128' / a reference type
    mutable: bool
    already_exported_as: str | None  # the module's own export name, if any


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A module-defined table and the name we export it under."""

    index: int  # in the table index space (imported tables first)
    export_name: str
    elem_type: str
    initial: int  # the declared minimum size
    maximum: int | None


@dataclass(frozen=True, slots=True)
class Instrumented:
    """The rewritten module and what was exported in it."""

    wasm: bytes  # identical to the input when there was nothing to add
    globals: tuple[GlobalInfo, ...]
    tables: tuple[TableInfo, ...]


class _Section(NamedTuple):
    id: int
    start: int  # offset of the id byte: wasm[start:end] is the whole section, verbatim
    payload: int  # offset of the payload; it runs to `end`
    end: int


class _Reader:
    """A cursor over ``data[pos:end]`` that raises InstrumentError on truncation."""

    def __init__(self, data: bytes, pos: int, end: int, what: str) -> None:
        self.data, self.pos, self.end, self.what = data, pos, end, what

    def fail(self, msg: str, at: int | None = None) -> InstrumentError:
        at = self.pos if at is None else at
        return InstrumentError(f"{msg} in {self.what} at byte offset {at}")

    def byte(self) -> int:
        self.skip(1)
        return self.data[self.pos - 1]

    def skip(self, n: int) -> None:
        if self.pos + n > self.end:
            raise self.fail("truncated data")
        self.pos += n

    def leb(self, bits: int, signed: bool = False) -> int:
        """An (un)signed LEB128 of at most ``bits`` bits, so at most ceil(bits/7) bytes."""
        result = shift = 0
        for _ in range(-(-bits // 7)):
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result - (1 << shift) if signed and b & 0x40 else result
        raise self.fail(f"LEB128 longer than {bits} bits")

    def u32(self) -> int:
        return self.leb(32)

    def name(self) -> bytes:
        n = self.u32()
        self.skip(n)
        return self.data[self.pos - n:self.pos]

    def valtype(self) -> str:
        code = self.byte()
        if code in _SIMPLE_VALTYPES:
            return _SIMPLE_VALTYPES[code]
        if code in (_REF_NULL, _REF):
            heap = self.leb(33, signed=True)  # negative: an abstract heap type; else a type index
            ht = _HEAP_TYPES.get(heap & 0x7F, str(heap)) if heap < 0 else str(heap)
            return f"(ref {'null ' if code == _REF_NULL else ''}{ht})"
        raise self.fail(f"unknown value type 0x{code:02x}", self.pos - 1)

    def limits(self) -> tuple[int, int | None]:
        """Limits: flags (1 has max, 2 shared, 4 64-bit, 8 custom page size), min, max."""
        flags = self.byte()
        if flags & ~0x0F:
            raise self.fail(f"unknown limits flags 0x{flags:02x}", self.pos - 1)
        bits = 64 if flags & 0x04 else 32
        minimum, maximum = self.leb(bits), (self.leb(bits) if flags & 0x01 else None)
        if flags & 0x08:  # custom-page-sizes proposal: log2 of the page size
            self.u32()
        return minimum, maximum

    def const_expr(self) -> None:
        """Skip a constant expression up to and including its ``end``."""
        while (op := self.byte()) != 0x0B:  # end
            if op in _CONST_LEB:
                self.leb(*_CONST_LEB[op])
            elif op in _CONST_FIXED:
                self.skip(_CONST_FIXED[op])
            elif op == _REF_NULL_OP:
                self.leb(33, signed=True)  # heap type
            elif op == _SIMD_PREFIX and self.u32() == _V128_CONST:
                self.skip(16)
            elif op not in _CONST_ARITH:
                raise self.fail(f"unsupported instruction 0x{op:02x} in a constant expression")

    def done(self) -> None:
        if self.pos != self.end:
            raise self.fail(f"{self.end - self.pos} trailing bytes")


def _sections(wasm: bytes) -> list[_Section]:
    """Split a core module into sections, checking the header and the framing."""
    if len(wasm) < 8 or wasm[:4] != _MAGIC:
        raise InstrumentError("not a WebAssembly module (bad magic)")
    if wasm[4:8] != _VERSION:
        raise InstrumentError(f"unsupported binary version {wasm[4:8].hex()} "
                              "(only core modules, version 1; is it a component?)")
    out: list[_Section] = []
    pos = 8
    while pos < len(wasm):
        r = _Reader(wasm, pos, len(wasm), "section header")
        sid, size = r.byte(), r.u32()
        if sid > 13:
            raise InstrumentError(f"unknown section id {sid} at byte offset {pos}")
        if r.pos + size > len(wasm):
            raise InstrumentError(f"truncated section {sid} at byte offset {pos}: "
                                  f"declares {size} bytes, {len(wasm) - r.pos} remain")
        if sid != _CUSTOM and any(s.id == sid for s in out):
            raise InstrumentError(f"duplicate section {sid} at byte offset {pos}")
        out.append(_Section(sid, pos, r.pos, r.pos + size))
        pos = r.pos + size
    return out


def _leb_u32(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | n & 0x7F)
        n >>= 7
    return bytes(out) + bytes([n])


def instrument(wasm: bytes) -> Instrumented:
    """Export every module-defined mutable global and table under the reserved prefixes.

    Raises :class:`InstrumentError` if the module is malformed, uses an encoding
    we cannot skip safely, or already exports a name with a reserved prefix.
    """
    wasm = bytes(wasm)
    sections = _sections(wasm)
    by_id = {s.id: s for s in sections if s.id != _CUSTOM}

    def reader(sid: int, what: str) -> _Reader | None:
        s = by_id.get(sid)
        return None if s is None else _Reader(wasm, s.payload, s.end, what)

    # Imports only matter for how many globals/tables come before the module's own.
    imported = dict.fromkeys(_IMPORT_DESC, 0)
    if r := reader(_IMPORT, "import section"):
        for _ in range(r.u32()):
            r.name()  # module
            r.name()  # field
            kind = r.byte()
            if kind not in _IMPORT_DESC:
                raise r.fail(f"unknown import kind 0x{kind:02x}", r.pos - 1)
            for step in _IMPORT_DESC[kind]:
                getattr(r, step)()
            imported[kind] += 1
        r.done()

    # Existing exports are kept verbatim; their names are checked and reported.
    old_count, old_entries = 0, b""
    exported: dict[tuple[int, int], str] = {}  # (kind, index) -> first export name
    if r := reader(_EXPORT, "export section"):
        old_count, first = r.u32(), r.pos
        for _ in range(old_count):
            raw, kind, index = r.name(), r.byte(), r.u32()
            if kind not in _IMPORT_DESC:
                raise r.fail(f"unknown export kind 0x{kind:02x}")
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise r.fail(f"export name {raw!r} is not valid UTF-8") from None
            if name.startswith((GLOBAL_PREFIX, TABLE_PREFIX)):
                raise InstrumentError(f"module already exports reserved name {name!r}")
            exported.setdefault((kind, index), name)
        r.done()
        old_entries = wasm[first:r.pos]

    tables: list[TableInfo] = []
    if r := reader(_TABLE, "table section"):
        for i in range(r.u32()):
            # Function-references proposal: `0x40 0x00 tabletype expr` is a table
            # with an explicit initializer; plain `tabletype` is the classic form.
            if with_init := r.pos < r.end and r.data[r.pos] == 0x40:
                r.skip(2)
                if r.data[r.pos - 1] != 0x00:
                    raise r.fail("bad table encoding (0x40 not followed by 0x00)", r.pos - 1)
            elem = r.valtype()
            minimum, maximum = r.limits()
            if with_init:
                r.const_expr()
            index = imported[_KIND_TABLE] + i
            tables.append(TableInfo(index, f"{TABLE_PREFIX}{index}", elem, minimum, maximum))
        r.done()

    globals_: list[GlobalInfo] = []
    if r := reader(_GLOBAL, "global section"):
        for i in range(r.u32()):
            valtype, mut = r.valtype(), r.byte()
            if mut not in (0, 1):
                raise r.fail(f"unknown global mutability flag 0x{mut:02x}", r.pos - 1)
            r.const_expr()
            index = imported[_KIND_GLOBAL] + i
            if mut:  # immutable globals never change, so snapshots don't need them
                globals_.append(GlobalInfo(index, f"{GLOBAL_PREFIX}{index}", valtype, True,
                                           exported.get((_KIND_GLOBAL, index))))
        r.done()

    if not globals_ and not tables:
        return Instrumented(wasm, (), ())

    # The new export section: the old entries verbatim, then ours, count re-encoded.
    ours = [(g.export_name, _KIND_GLOBAL, g.index) for g in globals_]
    ours += [(t.export_name, _KIND_TABLE, t.index) for t in tables]
    payload = _leb_u32(old_count + len(ours)) + old_entries + b"".join(
        _leb_u32(len(name)) + name.encode() + bytes([kind]) + _leb_u32(index)
        for name, kind, index in ours)
    export_section = bytes([_EXPORT]) + _leb_u32(len(payload)) + payload

    # Replace the old export section in place, or insert one where the section order wants it.
    parts = [export_section if s.id == _EXPORT else wasm[s.start:s.end] for s in sections]
    if _EXPORT not in by_id:
        at = next((i for i, s in enumerate(sections) if s.id in _AFTER_EXPORT), len(sections))
        parts.insert(at, export_section)
    return Instrumented(wasm[:8] + b"".join(parts), tuple(globals_), tuple(tables))
