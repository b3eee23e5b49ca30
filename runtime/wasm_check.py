"""What a module may contain to be deployed: value types golemish can pass and capture.

Read from the binary, before wasmtime is asked about any type: wasmtime-py 50
aborts the whole process (Rust panic, exit 134) when it describes a ``v128``
value type. Refused:

- exports and imports of functions whose parameters or results are not
  ``i32 i64 f32 f64`` (``v128``, reference types): nothing can pass them;
- globals of such types that are exported or mutable: a snapshot cannot
  capture them (and describing a ``v128`` global aborts too);
- a memory that is not exported as ``memory``, or more than one memory:
  snapshots would silently miss their contents.

A module without any memory is fine: its state is its globals.
"""

from __future__ import annotations

from .snapshot.instrument import InstrumentError, _Reader, _sections

NUMERIC = frozenset({"i32", "i64", "f32", "f64"})
_TYPE, _IMPORT, _FUNCTION, _MEMORY, _GLOBAL, _EXPORT = 1, 2, 3, 5, 6, 7
_FUNC, _TABLE, _MEM, _GLOB, _TAG = range(5)
_FUNC_TYPE = 0x60


def _sig(params: tuple[str, ...], results: tuple[str, ...]) -> str:
    return f"({', '.join(params)}) -> ({', '.join(results)})"


def unsupported(wasm: bytes) -> list[str]:
    """Why the module cannot be deployed, one phrase per problem (empty: fine).

    Raises InstrumentError when the binary cannot be read this far (compiling it
    gives the clearer message then).
    """
    by_id = {s.id: s for s in _sections(wasm) if s.id != 0}

    def reader(sid: int, what: str) -> _Reader | None:
        s = by_id.get(sid)
        return None if s is None else _Reader(wasm, s.payload, s.end, what)

    types: list[tuple[tuple[str, ...], tuple[str, ...]] | None] = []
    if r := reader(_TYPE, "type section"):
        for _ in range(r.u32()):
            if r.byte() != _FUNC_TYPE:  # GC type definitions (rec, sub, struct, array)
                raise r.fail("unsupported type definition", r.pos - 1)
            params = tuple(r.valtype() for _ in range(r.u32()))
            types.append((params, tuple(r.valtype() for _ in range(r.u32()))))

    def bad_type(index: int) -> str | None:
        sig = types[index] if index < len(types) else None
        if sig is None or set(sig[0] + sig[1]) <= NUMERIC:
            return None
        return _sig(*sig)

    problems: list[str] = []
    funcs: list[int] = []  # type index of every function, imported ones first
    memories = globals_imported = 0
    global_types: list[tuple[str, bool]] = []
    if r := reader(_IMPORT, "import section"):
        for _ in range(r.u32()):
            name = f"{r.name().decode('utf-8', 'replace')}.{r.name().decode('utf-8', 'replace')}"
            kind = r.byte()
            if kind == _FUNC:
                funcs.append(r.u32())
                if sig := bad_type(funcs[-1]):
                    problems.append(f"import {name} has signature {sig}")
            elif kind == _TABLE:
                r.valtype()
                r.limits()
            elif kind == _MEM:
                r.limits()
                memories += 1
            elif kind == _GLOB:
                ty, mut = r.valtype(), r.byte()
                global_types.append((ty, bool(mut)))
                globals_imported += 1
                if ty not in NUMERIC:
                    problems.append(f"imported global {name} has type {ty}")
            elif kind == _TAG:
                r.byte()
                r.u32()
            else:
                raise r.fail(f"unknown import kind 0x{kind:02x}", r.pos - 1)
    if r := reader(_FUNCTION, "function section"):
        funcs.extend(r.u32() for _ in range(r.u32()))
    if r := reader(_MEMORY, "memory section"):
        memories += r.u32()
    if r := reader(_GLOBAL, "global section"):
        for i in range(r.u32()):
            ty, mut = r.valtype(), r.byte()
            r.const_expr()
            global_types.append((ty, bool(mut)))
            if mut and ty not in NUMERIC:
                problems.append(f"mutable global {globals_imported + i} has type {ty}, "
                                "which snapshots cannot capture")
    memory_exported = False
    if r := reader(_EXPORT, "export section"):
        for _ in range(r.u32()):
            name, kind, index = r.name().decode("utf-8", "replace"), r.byte(), r.u32()
            if kind == _FUNC and index < len(funcs) and (sig := bad_type(funcs[index])):
                problems.append(f"export {name!r} has signature {sig}")
            elif kind == _GLOB and index < len(global_types) and \
                    global_types[index][0] not in NUMERIC:
                problems.append(f"exported global {name!r} has type {global_types[index][0]}")
            elif kind == _MEM and name == "memory" and index == 0:
                memory_exported = True
    if memories > 1:
        problems.append(f"it has {memories} memories; only one is supported")
    elif memories == 1 and not memory_exported:
        problems.append("its memory is not exported: export it as 'memory' so that "
                        "snapshots and host calls can reach it")
    return problems


__all__ = ["InstrumentError", "NUMERIC", "unsupported"]
