"""The Component Model's Canonical ABI over a core module's linear memory.

Follows ``CanonicalABI.md`` / ``canonical-abi/definitions.py`` of
WebAssembly/component-model for the value types golemish supports (no resources,
futures or streams; UTF-8 strings only), in the export direction: the host lowers
arguments into the guest, calls the core export, lifts the result out of the
guest's memory, then calls ``cabi_post_<export>`` so the guest can free what it
returned. Layout and validation live in ``cabi_layout``.

Memory is reached through the small ``Memory`` protocol (``engine.Instance``
satisfies it as is); allocation in the guest goes through a ``realloc(old_ptr,
old_size, align, new_size) -> ptr`` callable, which the runtime implements by
calling the guest's ``cabi_realloc`` export. Python values: see ``wit_types``.
Core values come out as wasm takes them: i32/i64 as *signed* ints (as
``values.py`` records them), f32/f64 as floats; core results may be signed or not.

Errors: ``LowerError`` when a host value does not fit its type (checked before any
guest memory is touched), ``LiftError`` when the guest hands back something
invalid (where the spec traps: bad discriminant, char, UTF-8, alignment, bounds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .cabi_layout import (
    F32, F64, MAX_FLAT_PARAMS, MAX_FLAT_RESULTS, PRIM_FLAT, PRIM_SIZE, CabiError, LiftError,
    LowerError, align_to, alignment, char_of, check_exports, check_signature, despecialize,
    discriminant_size, f32_bits, f64_bits, field_offsets, field_types, flags_size,
    flat_signature, flatten, flatten_type, make_case, needs_realloc, pack_flags,
    payload_offset, payloads, post_return_name, round_f32, size, split_case, unpack_flags,
    validate, wrap_int,
)
from .wit_types import Flags, FuncDecl, List, Prim, Record, Tuple, Type

__all__ = [
    "MAX_FLAT_PARAMS", "MAX_FLAT_RESULTS", "Memory", "Realloc", "CabiError", "LowerError",
    "LiftError", "despecialize", "alignment", "size", "flatten_type", "discriminant_size",
    "flat_signature", "check_signature", "check_exports", "needs_realloc", "post_return_name",
    "lower_args", "lift_results", "invoke", "load", "store", "lower_flat", "lift_flat",
    "validate", "BytesMemory",
]


class Memory(Protocol):
    """Linear memory as the ABI needs it; ``engine.Instance`` fits this protocol."""

    def read(self, ptr: int, n: int) -> bytes: ...
    def write(self, ptr: int, data: bytes) -> None: ...
    def memory_size(self) -> int: ...


#: ``realloc(old_ptr, old_size, align, new_size) -> new_ptr``: the guest's cabi_realloc.
Realloc = Callable[[int, int, int, int], int]


# -- calls ---------------------------------------------------------------------------

class _Cx:
    """The memory and allocator of one call (``cx.opts`` in the spec)."""

    __slots__ = ("mem", "realloc")

    def __init__(self, mem: Memory, realloc: Realloc | None) -> None:
        self.mem, self.realloc = mem, realloc

    def alloc(self, align: int, nbytes: int) -> int:
        if self.realloc is None:
            raise CabiError("this value needs guest memory, but no realloc was given")
        if nbytes >= 1 << 32:
            raise LowerError(f"{nbytes} bytes do not fit in a 32-bit memory")
        ptr = int(self.realloc(0, 0, align, nbytes)) & 0xFFFF_FFFF
        if ptr % align:
            raise LiftError(f"cabi_realloc returned {ptr:#x}, not aligned to {align}")
        self.check(ptr, nbytes, "cabi_realloc result")
        return ptr

    def check(self, ptr: int, nbytes: int, what: str, align: int = 1) -> None:
        # Every read and write is checked here first: engine.Instance accesses memory
        # through a raw pointer, so an unchecked guest pointer could crash the host.
        if ptr < 0 or nbytes < 0:
            raise LiftError(f"{what} at {ptr:#x} (+{nbytes}) is not a valid memory range")
        if ptr % align:
            raise LiftError(f"{what} at {ptr:#x} is not aligned to {align}")
        if ptr + nbytes > self.mem.memory_size():
            raise LiftError(f"{what} [{ptr:#x}, +{nbytes}) is outside linear memory "
                            f"({self.mem.memory_size()} bytes)")


def lower_args(func: FuncDecl, values: Sequence[Any], mem: Memory,
               realloc: Realloc | None) -> list[int | float]:
    """Lower ``values`` for a call of ``func``'s core export; returns its core arguments.

    Values are validated first, so a LowerError leaves the guest untouched. Memory from
    ``realloc`` (strings, lists, spilled params) belongs to the callee from then on.
    """
    types = func.param_types
    if len(values) != len(types):
        raise LowerError(f"{func.name} takes {len(types)} argument(s), got {len(values)}")
    for (name, t), v in zip(func.params, values):
        validate(v, t, name)
    cx = _Cx(mem, realloc)
    if sum(len(flatten(t)) for t in types) > MAX_FLAT_PARAMS:
        tup = Tuple(tuple(types))
        ptr = cx.alloc(alignment(tup), size(tup))
        buf = bytearray(size(tup))
        _store(cx, tuple(values), tup, buf, 0)
        mem.write(ptr, bytes(buf))
        return [_signed("i32", ptr)]
    flat: list[tuple[str, int | float]] = []
    for t, v in zip(types, values):
        flat += _lower_flat(cx, v, t)
    return [_signed(ty, x) for ty, x in flat]


def lift_results(func: FuncDecl, core_results: Sequence[int | float], mem: Memory) -> Any:
    """The value ``func`` returned, from its core export's results (None if no result)."""
    _, want = flat_signature(func)
    if len(core_results) != len(want):
        raise LiftError(f"{func.core_name} returned {len(core_results)} core values, "
                        f"expected {len(want)}")
    if func.result is None:
        return None
    if len(flatten(func.result)) > MAX_FLAT_RESULTS:
        return load(mem, int(core_results[0]) & 0xFFFF_FFFF, func.result)
    return _lift_flat(_Cx(mem, None), _Reader(list(zip(want, core_results))), func.result)


def invoke(func: FuncDecl, args: Sequence[Any], *, mem: Memory, realloc: Realloc,
           call: Callable[[str, list[int | float]], Sequence[int | float]],
           has_export: Callable[[str], bool],
           call_export: Callable[[str, list[int | float]], Sequence[int | float]] | None = None,
           lowered: Sequence[int | float] | None = None,
           on_lowered: Callable[[list[int | float]], None] | None = None) -> Any:
    """Lower, call the core export, lift, and call ``cabi_post_*`` if the guest has it.

    ``call(export_name, core_args) -> core_results`` runs a core export. The post-return
    function is skipped when lifting fails: the invocation fails and the runtime
    discards the instance state anyway. ``call_export`` (default ``call``) runs the
    function's own export; ``lowered`` gives core arguments lowered earlier (the call
    resumes one whose arguments are already in guest memory), and ``on_lowered`` is
    told the core arguments before the call.
    """
    core_args = list(lowered) if lowered is not None else lower_args(func, args, mem, realloc)
    if on_lowered is not None:
        on_lowered(core_args)
    core_results = list((call_export or call)(func.core_name, core_args))
    value = lift_results(func, core_results, mem)
    post = post_return_name(func)
    if has_export(post):
        call(post, core_results)
    return value


def _signed(ty: str, v: int | float) -> int | float:
    if ty == "i32":
        v = int(v) & 0xFFFF_FFFF
        return v - (1 << 32) if v >= 1 << 31 else v
    if ty == "i64":
        v = int(v) & 0xFFFF_FFFF_FFFF_FFFF
        return v - (1 << 64) if v >= 1 << 63 else v
    return v


# -- flat lowering and lifting --------------------------------------------------------

def lower_flat(v: Any, t: Type, mem: Memory, realloc: Realloc | None) -> list[tuple[str, Any]]:
    """A value as (core type, value) pairs, ints unsigned as in the spec (lower_flat)."""
    validate(v, t)
    return _lower_flat(_Cx(mem, realloc), v, t)


def _lower_flat(cx: _Cx, v: Any, t: Type) -> list[tuple[str, Any]]:
    match t:
        case Prim("string"):
            return list(zip(("i32", "i32"), _store_string(cx, v)))
        case Prim("f32"):
            return [("f32", math.nan if math.isnan(v) else round_f32(v))]
        case Prim("f64"):
            return [("f64", math.nan if math.isnan(v) else float(v))]
        case Prim("char"):
            return [("i32", ord(v))]
        case Prim(name):
            core = PRIM_FLAT.get(name, "i32")
            return [(core, int(v) & (0xFFFF_FFFF if core == "i32" else 0xFFFF_FFFF_FFFF_FFFF))]
        case List(elem):
            return list(zip(("i32", "i32"), _store_list(cx, v, elem)))
        case Record() | Tuple():
            vals = v if isinstance(t, Tuple) else [v[n] for n, _ in t.fields]
            return [x for ft, fv in zip(field_types(t), vals) for x in _lower_flat(cx, fv, ft)]
        case Flags(_, flags):
            return [("i32", pack_flags(v, flags))]
    # variant, enum, option, result: discriminant, payload in the joined slots, zeros
    index, payload = split_case(v, t)
    want = flatten(t)[1:]
    ptype = payloads(t)[index]
    out: list[tuple[str, Any]] = [("i32", index)]
    for i, (have, x) in enumerate(_lower_flat(cx, payload, ptype) if ptype is not None else ()):
        w = want[i]
        if have == "f32" and w != "f32":
            x = f32_bits(x)
        elif have == "f64" and w != "f64":
            x = f64_bits(x)
        out.append((w, x))
    out += [(w, 0.0 if w[0] == "f" else 0) for w in want[len(out) - 1:]]
    return out


class _Reader:
    """Consumes typed core values in order (spec: ValueIter); ints come out unsigned."""

    def __init__(self, values: list[tuple[str, Any]]) -> None:
        self.values, self.i = values, 0

    def next(self, want: str) -> Any:
        if self.i >= len(self.values):
            raise LiftError("too few core values")
        have, x = self.values[self.i]
        self.i += 1
        if have != want:
            raise LiftError(f"core value {self.i} is {have}, expected {want}")
        if want == "i32":
            return int(x) & 0xFFFF_FFFF
        if want == "i64":
            return int(x) & 0xFFFF_FFFF_FFFF_FFFF
        return float(x)


class _Coerce:
    """Reads a variant payload out of the joined core slots (spec: CoerceValueIter)."""

    def __init__(self, r: _Reader, have: list[str]) -> None:
        self.r, self.have = r, have

    def next(self, want: str) -> Any:
        have = self.have.pop(0)
        x = self.r.next(have)
        if have == want:
            return x
        if want == "i32":  # from i64
            return x & 0xFFFF_FFFF
        if want == "f32":  # from i32 or i64: the low 32 bits are the float's bits
            return F32.unpack((x & 0xFFFF_FFFF).to_bytes(4, "little"))[0]
        return F64.unpack(x.to_bytes(8, "little"))[0]  # f64 from i64


def lift_flat(values: Sequence[tuple[str, Any]], t: Type, mem: Memory) -> Any:
    """A value from (core type, value) pairs (spec: lift_flat); all must be consumed."""
    r = _Reader(list(values))
    v = _lift_flat(_Cx(mem, None), r, t)
    if r.i != len(r.values):
        raise LiftError(f"{len(r.values) - r.i} core value(s) left over")
    return v


def _lift_flat(cx: _Cx, r: Any, t: Type) -> Any:
    match t:
        case Prim("bool"):
            return bool(r.next("i32"))
        case Prim("string"):
            return _load_string(cx, r.next("i32"), r.next("i32"))
        case Prim("f32"):  # rounded: a Python float handed in as f32 may be wider
            return _canon(round_f32(r.next("f32")))
        case Prim("f64"):
            return _canon(r.next("f64"))
        case Prim("char"):
            return char_of(r.next("i32"))
        case Prim(name):
            return wrap_int(r.next(PRIM_FLAT.get(name, "i32")), name)
        case List(elem):
            return _load_list(cx, r.next("i32"), r.next("i32"), elem)
        case Record(_, fields):
            return {n: _lift_flat(cx, r, ft) for n, ft in fields}
        case Tuple(items):
            return tuple(_lift_flat(cx, r, ft) for ft in items)
        case Flags(_, flags):
            return unpack_flags(r.next("i32"), flags)
    index = r.next("i32")
    ps = payloads(t)
    if index >= len(ps):
        raise LiftError(f"discriminant {index} out of range for {t} ({len(ps)} cases)")
    c = _Coerce(r, list(flatten(t)[1:]))
    payload = _lift_flat(cx, c, ps[index]) if ps[index] is not None else None
    for have in c.have:  # the slots this case does not use
        r.next(have)
    return make_case(t, index, payload)


def _canon(f: float) -> float:
    return math.nan if math.isnan(f) else f


# -- memory ----------------------------------------------------------------------------

def load(mem: Memory, ptr: int, t: Type) -> Any:
    """The value of type ``t`` stored at ``ptr`` (spec: load); LiftError if invalid."""
    cx = _Cx(mem, None)
    cx.check(ptr, size(t), f"{t} value", alignment(t))
    return _load(cx, mem.read(ptr, size(t)), 0, t)


def _load(cx: _Cx, buf: bytes, off: int, t: Type) -> Any:
    match t:
        case Prim("bool"):
            return buf[off] != 0
        case Prim("f32"):
            return _canon(F32.unpack_from(buf, off)[0])
        case Prim("f64"):
            return _canon(F64.unpack_from(buf, off)[0])
        case Prim("char"):
            return char_of(int.from_bytes(buf[off:off + 4], "little"))
        case Prim("string"):
            return _load_string(cx, *_two_u32(buf, off))
        case Prim(name):
            n = PRIM_SIZE[name]
            return int.from_bytes(buf[off:off + n], "little", signed=name[0] == "s")
        case List(elem):
            return _load_list(cx, *_two_u32(buf, off), elem)
        case Record(_, fields):
            return {n: _load(cx, buf, off + o, ft)
                    for (n, ft), o in zip(fields, field_offsets(t))}
        case Tuple(items):
            return tuple(_load(cx, buf, off + o, ft) for ft, o in zip(items, field_offsets(t)))
        case Flags(_, flags):
            return unpack_flags(int.from_bytes(buf[off:off + flags_size(len(flags))],
                                               "little"), flags)
    ps = payloads(t)
    ds = discriminant_size(len(ps))
    index = int.from_bytes(buf[off:off + ds], "little")
    if index >= len(ps):
        raise LiftError(f"discriminant {index} out of range for {t} ({len(ps)} cases)")
    p = ps[index]
    return make_case(t, index, None if p is None else _load(cx, buf, off + payload_offset(t), p))


def _two_u32(buf: bytes, off: int) -> tuple[int, int]:
    return (int.from_bytes(buf[off:off + 4], "little"),
            int.from_bytes(buf[off + 4:off + 8], "little"))


def _load_string(cx: _Cx, ptr: int, nbytes: int) -> str:
    cx.check(ptr, nbytes, "string")
    try:
        return cx.mem.read(ptr, nbytes).decode("utf-8") if nbytes else ""
    except UnicodeDecodeError as e:
        raise LiftError(f"string at {ptr:#x} is not valid UTF-8 ({e.reason} at byte "
                        f"{e.start})") from None


def _load_list(cx: _Cx, ptr: int, length: int, elem: Type) -> list[Any]:
    es = size(elem)
    cx.check(ptr, length * es, f"list<{elem}>", alignment(elem))
    buf = cx.mem.read(ptr, length * es) if length else b""
    if elem == Prim("u8"):
        return list(buf)
    return [_load(cx, buf, i * es, elem) for i in range(length)]


def store(mem: Memory, realloc: Realloc | None, v: Any, t: Type, ptr: int) -> None:
    """Store ``v`` at ``ptr`` (spec: store); strings and lists are allocated with realloc."""
    validate(v, t)
    cx = _Cx(mem, realloc)
    cx.check(ptr, size(t), f"{t} value", alignment(t))
    buf = bytearray(size(t))
    _store(cx, v, t, buf, 0)
    mem.write(ptr, bytes(buf))


def _store(cx: _Cx, v: Any, t: Type, buf: bytearray, off: int) -> None:
    # Builds the value's bytes in ``buf`` (written by the caller in one go); what
    # strings and lists point to is allocated and written right away.
    match t:
        case Prim("bool"):
            buf[off] = 1 if v else 0
        case Prim("f32"):
            F32.pack_into(buf, off, math.nan if math.isnan(v) else v)
        case Prim("f64"):
            F64.pack_into(buf, off, math.nan if math.isnan(v) else v)
        case Prim("char"):
            buf[off:off + 4] = ord(v).to_bytes(4, "little")
        case Prim("string"):
            _put_two_u32(buf, off, *_store_string(cx, v))
        case Prim(name):
            n = PRIM_SIZE[name]
            buf[off:off + n] = (v & ((1 << 8 * n) - 1)).to_bytes(n, "little")
        case List(elem):
            _put_two_u32(buf, off, *_store_list(cx, v, elem))
        case Record() | Tuple():
            vals = v if isinstance(t, Tuple) else [v[n] for n, _ in t.fields]
            for fv, ft, o in zip(vals, field_types(t), field_offsets(t)):
                _store(cx, fv, ft, buf, off + o)
        case Flags(_, flags):
            n = flags_size(len(flags))
            buf[off:off + n] = pack_flags(v, flags).to_bytes(n, "little")
        case _:
            index, payload = split_case(v, t)
            ps = payloads(t)
            ds = discriminant_size(len(ps))
            buf[off:off + ds] = index.to_bytes(ds, "little")
            if ps[index] is not None:
                _store(cx, payload, ps[index], buf, off + payload_offset(t))


def _put_two_u32(buf: bytearray, off: int, a: int, b: int) -> None:
    buf[off:off + 4] = a.to_bytes(4, "little")
    buf[off + 4:off + 8] = b.to_bytes(4, "little")


def _store_string(cx: _Cx, s: str) -> tuple[int, int]:
    data = s.encode("utf-8")
    ptr = cx.alloc(1, len(data))
    if data:
        cx.mem.write(ptr, data)
    return ptr, len(data)


def _store_list(cx: _Cx, v: Sequence[Any], elem: Type) -> tuple[int, int]:
    es = size(elem)
    ptr = cx.alloc(alignment(elem), len(v) * es)
    if elem == Prim("u8"):
        data = bytes(v)
    else:
        buf = bytearray(len(v) * es)
        for i, e in enumerate(v):
            _store(cx, e, elem, buf, i * es)
        data = bytes(buf)
    if data:
        cx.mem.write(ptr, data)
    return ptr, len(v)


class BytesMemory:
    """A growable bytearray as linear memory, with a bump allocator as ``realloc``.

    For tests and tools; like the spec test suite's ``Heap``. ``calls`` records every
    realloc call, so tests can check what the ABI allocated.
    """

    def __init__(self, initial: int = 1 << 16, start: int = 16) -> None:
        self.data = bytearray(initial)
        self.top = start
        self.calls: list[tuple[int, int, int, int]] = []

    def read(self, ptr: int, n: int) -> bytes:
        if ptr < 0 or ptr + n > len(self.data):
            raise IndexError(f"read [{ptr:#x}, +{n}) out of bounds")
        return bytes(self.data[ptr:ptr + n])

    def write(self, ptr: int, data: bytes) -> None:
        if ptr < 0 or ptr + len(data) > len(self.data):
            raise IndexError(f"write [{ptr:#x}, +{len(data)}) out of bounds")
        self.data[ptr:ptr + len(data)] = data

    def memory_size(self) -> int:
        return len(self.data)

    def realloc(self, old_ptr: int, old_size: int, align: int, new_size: int) -> int:
        self.calls.append((old_ptr, old_size, align, new_size))
        if old_ptr and new_size <= old_size:
            return old_ptr
        ptr = align_to(self.top, align)
        self.top = ptr + new_size
        while self.top > len(self.data):  # grow like memory.grow, in 64 KiB pages
            self.data += bytes(max(len(self.data), 1 << 16))
        if old_ptr:
            self.data[ptr:ptr + old_size] = self.data[old_ptr:old_ptr + old_size]
        return ptr
