"""Components: deploy (validate, check imports, version, cache compiled code) and load.

A component is a WASI preview 1 core module stored under a name with
versions 0, 1, 2, … Identical bytes deployed again under the same name are a
no-op. The compiled code is kept in the store and, for a store on disk, also
as a file that wasmtime maps with ``Module.deserialize_file`` in well under a
millisecond instead of compiling again.

Serialized native code is run as it is, so a flipped byte can crash the process
and a planted file would run anyone's code: its sha256 is recorded in the store
when it is compiled and checked before every load, from the store or the file.
On a mismatch the module is compiled again from its wasm bytes (which are
verified by their content hash), with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from golemish.oplog import Store, content_hash

from . import wasm_check
from .component_files import pack_files
from .engine import Engine, FuncSig
from .errors import ComponentError, InvalidModuleError, MissingImportsError, NotFoundError
from .names import check_name
from .host import api as host_api
from .host.wasi import MODULE as WASI_MODULE
from .host.wasi import SIGNATURES as WASI_SIGNATURES
from .host.wasi import signature as wasi_signature
from .snapshot import asyncify
from .snapshot.instrument import GLOBAL_PREFIX, TABLE_PREFIX, InstrumentError, instrument

log = logging.getLogger(__name__)


def host_provides() -> dict[tuple[str, str], FuncSig]:
    """Every function the host offers guests, with its core signature."""
    provided = {(WASI_MODULE, n): wasi_signature(n) for n in WASI_SIGNATURES}
    provided.update({(host_api.MODULE, n): host_api.signature(n) for n in host_api.SIGNATURES})
    return provided


def missing_imports(engine: Engine, module: wasmtime.Module) -> list[str]:
    provided = host_provides()
    missing = []
    for mod, name, kind, sig in engine.imports(module):
        want = provided.get((mod, name))
        if kind != "func":
            missing.append(f"{mod}.{name} ({kind} imports are not supported)")
        elif want is None:
            missing.append(f"{mod}.{name}")
        elif str(want) != sig:
            missing.append(f"{mod}.{name} (imported as {sig}, host has {want})")
    needs = sorted(n for m, n, *_ in engine.imports(module)
                   if m == host_api.MODULE and n in host_api.NEEDS_REALLOC)
    if asyncify.is_stackful(engine.func_exports(module)):
        needs.append("the asyncify stack buffer")
    realloc = engine.func_exports(module).get("cabi_realloc")
    if needs and str(realloc) != "(i32, i32, i32, i32) -> i32":
        missing.append(f"export cabi_realloc (i32, i32, i32, i32) -> i32, which "
                       f"{', '.join(needs)} need(s) to allocate guest memory")
    return missing


def check_size(size: int, limit: int, what: str = "the module") -> None:
    """Refuse a module larger than ``limit`` bytes, before anything else reads it."""
    if size > limit:
        raise ComponentError(f"{what} is {size / (1 << 20):.1f} MiB, above the deploy limit "
                             f"of {limit / (1 << 20):g} MiB (raise it with --max-size MIB "
                             "or GOLEMISH_MAX_COMPONENT_MIB)")


def read_module(path: Path, limit: int) -> bytes:
    """The bytes of a module file, refusing one above ``limit`` without reading it all."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        check_size(size, limit, str(path))
        data = f.read(limit + 1)  # a pipe or device has no size: read one byte too many
    check_size(len(data), limit, str(path))
    return data


def refuse_unsupported(wasm: bytes) -> None:
    """Refuse what golemish cannot call or snapshot, before wasmtime describes any type.

    wasmtime-py aborts the process when it describes a v128 type, so this reads the
    binary itself (see :mod:`wasm_check`).
    """
    try:
        problems = wasm_check.unsupported(wasm)
    except wasm_check.InstrumentError:
        return  # not readable this far: compiling it gives the clearer message
    if problems:
        raise ComponentError("module not supported: " + "; ".join(problems)
                             + " (golemish passes and snapshots only i32, i64, f32 and f64)")


def compile_instrumented(engine: Engine, wasm: bytes) -> wasmtime.Module:
    """Compile the module with its hidden globals and tables exported for snapshots."""
    engine.compile(wasm)  # validate the module as given first, for a clear message
    try:
        rewritten = instrument(wasm).wasm
    except InstrumentError as e:
        raise InvalidModuleError(f"cannot prepare the module for snapshots: {e}") from None
    return engine.compile(rewritten)


def is_internal_export(name: str) -> bool:
    return name.startswith((GLOBAL_PREFIX, TABLE_PREFIX))


@dataclass(frozen=True)
class DeployResult:
    meta: dict[str, Any]
    created: bool  # False when identical bytes were already deployed


def deploy(store: Store, engine: Engine, wasm: bytes, name: str,
           wit: str | None = None, wit_source: str | None = None,
           stackful: bool = False,
           files: Sequence[tuple[str, bytes, bool]] = ()) -> DeployResult:
    """Deploy a module (with its WIT world, given or embedded) as a new version of ``name``.

    ``stackful`` runs Binaryen's asyncify on it first, so that its invocations can be
    snapshotted mid-call (a module already asyncified by its build is detected as
    is). ``files`` are (guest path, bytes, read-only) put into each worker's
    filesystem (component_files.py). Identical bytes, WIT and files deployed again
    are a no-op.
    """
    check_name(name)
    listed, blobs = pack_files(files)
    refuse_unsupported(wasm)
    from .typed import invoke as typed  # WIT parsing only where a component has one
    wit = typed.wit_of(wasm, wit)  # a custom section could be lost in the transform
    if stackful:
        engine.compile(wasm)  # a clear message for invalid input, before Binaryen sees it
        if not asyncify.is_stackful(e[0] for e in engine.exports(engine.compile(wasm))):
            wasm = asyncify.asyncify(wasm)
    digest = content_hash(wasm)
    versions = store.component_versions(name, deleted=True)  # numbers are never reused
    for meta in versions:
        if meta["hash"] == digest and meta.get("wit") == wit and not meta.get("deleted") \
                and meta.get("files") == (listed or None):
            return DeployResult(meta, created=False)
    module = compile_instrumented(engine, wasm)
    missing = missing_imports(engine, module)
    if missing:
        raise MissingImportsError(missing)
    if wit is not None:
        typed.check_against(typed.load_wit(wit, wit_source or f"{name}.wit"),
                            {n: s for n, s in engine.func_exports(module).items()
                             if not is_internal_export(n)})
    exports = [e for e in engine.exports(module) if not is_internal_export(e[0])]
    meta = {
        "name": name,
        "version": len(versions),
        "hash": digest,
        "size": len(wasm),
        "deployed_at": time.time(),
        "imports": [list(i) for i in engine.imports(module)],
        "exports": [list(e) for e in exports],
        "model": "reactor" if any(e[0] == "_initialize" for e in exports)
        else "command" if any(e[0] == "_start" for e in exports) else "plain",
        "stackful": asyncify.is_stackful(e[0] for e in exports),
    }
    if wit is not None:
        meta["wit"] = wit
    if listed:
        meta["files"] = listed
    store.put_compiled(_compiled_key(engine, digest), engine.serialize(module))
    store.add_component(meta, wasm, blobs)
    return DeployResult(meta, created=True)


#: Bumped whenever instrumentation changes what gets compiled.
INSTRUMENTATION_VERSION = 1


def _compiled_key(engine: Engine, digest: str) -> str:
    return f"{digest}:{engine.fingerprint}:i{INSTRUMENTATION_VERSION}"


def resolve(store: Store, name: str, version: int | None = None) -> dict[str, Any]:
    meta = store.get_component(name, version)
    if meta is None:
        if version is None or not store.component_versions(name):
            raise NotFoundError(f"no component named {name!r}; deploy it first "
                                "with `golemish deploy FILE.wasm`")
        raise NotFoundError(f"component {name} has no version {version}")
    return meta


def _file_sha256(path: Path) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


class ModuleCache:
    """Loads compiled modules: memory, then the file cache, then the store, then compiles."""

    def __init__(self, store: Store, engine: Engine, cache_dir: Path | None, *,
                 readonly: bool = False) -> None:
        self.store = store
        self.engine = engine
        self.cache_dir = cache_dir
        #: Compile in memory when needed, but write nothing (a reader's store).
        self.readonly = readonly
        self._loaded: dict[str, wasmtime.Module] = {}
        self._sigs: dict[str, dict[str, FuncSig]] = {}
        self._ifaces: dict[tuple[str, str], Any] = {}  # typed.invoke.Interface

    def load(self, meta: dict[str, Any]) -> wasmtime.Module:
        digest = meta["hash"]
        module = self._loaded.get(digest)
        if module is None and meta.get("kind") == "python":
            from .python.component import load_interpreter
            module = load_interpreter(self.engine, meta.get("interpreter"))
        elif module is None:
            module = self._load(digest)
            self._loaded[digest] = module
        return module

    def _load(self, digest: str) -> wasmtime.Module:
        key = _compiled_key(self.engine, digest)
        path = self.cache_dir / f"{key.replace(':', '-')}.cwasm" if self.cache_dir else None
        want = self.store.compiled_digest(key)
        if path is not None and path.exists():
            if want is not None and _file_sha256(path) == want:
                try:
                    return self.engine.deserialize(path=path)
                except wasmtime.WasmtimeError:
                    pass  # made under another engine configuration: rebuild below
            elif want is not None:
                log.warning("golemish: compiled code %s does not match its recorded sha256; "
                            "compiling the module again", path)
            if not self.readonly:
                path.unlink(missing_ok=True)
        code = self.store.get_compiled(key) if want is not None else None
        module = None
        if code is not None:
            if hashlib.sha256(code).digest() != want:
                log.warning("golemish: compiled code of component %s in the store does not "
                            "match its recorded sha256; compiling the module again",
                            digest[:12])
            else:
                try:
                    module = self.engine.deserialize(code=code)
                except wasmtime.WasmtimeError:
                    pass
        if module is None:
            module = compile_instrumented(self.engine, self.store.get_wasm(digest))
            code = self.engine.serialize(module)
            if not self.readonly:
                self.store.put_compiled(key, code)
        if path is not None and not self.readonly:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")  # owner-only
            with os.fdopen(fd, "wb") as f:
                f.write(code)
            os.replace(tmp, path)
        return module

    def interface(self, meta: dict[str, Any]) -> Any:
        """The component's WIT interface, if it was deployed with one."""
        if "wit" not in meta:
            return None
        key = (meta["name"], meta["hash"] + str(meta["version"]))
        if key not in self._ifaces and meta.get("kind") == "python":
            from .python.guest import PythonInterface
            self._ifaces[key] = PythonInterface(meta["wit"], meta["name"], meta["python_names"])
        elif key not in self._ifaces:
            from .typed.invoke import Interface
            self._ifaces[key] = Interface(meta["wit"], meta["name"])
        return self._ifaces[key]

    def signatures(self, meta: dict[str, Any]) -> dict[str, FuncSig]:
        # Walking wasmtime's export list costs ~0.2 ms; an invocation asks every time.
        sigs = self._sigs.get(meta["hash"])
        if sigs is None and meta.get("kind") == "python":
            sigs = self._sigs[meta["hash"]] = {}  # only the WIT functions are callable
        if sigs is None:
            sigs = self._sigs[meta["hash"]] = {
                n: sig for n, sig in self.engine.func_exports(self.load(meta)).items()
                if not is_internal_export(n)}
        return sigs
