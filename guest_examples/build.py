#!/usr/bin/env python3
"""Build the C guest examples into wasm32-wasi reactor modules.

    python guest_examples/build.py [NAME ...]

builds guest_examples/NAME.c into guest_examples/build/NAME.wasm (default: every
*.c directly in guest_examples/). Tests load this file with importlib and call
``build()``.

A build is skipped when its inputs are unchanged: the hash of the source, every
header in include/, the compiler flags and the zig version is stored next to the
module in NAME.wasm.hash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INCLUDE_DIR = HERE / "include"
BUILD_DIR = HERE / "build"

# Everything passed to `zig cc` apart from the -I/-o/source paths, which are
# left out of the hash so it does not depend on where the repo is checked out.
# Reactor modules export `_initialize` instead of `_start`: the runtime
# instantiates a guest once and then calls its exports any number of times.
FLAGS = [
    "--target=wasm32-wasi",
    "-O2",
    "-s",  # strip debug info: smaller modules, and faster to load and snapshot
    "-mexec-model=reactor",
    "-Wl,-z,stack-size=1048576",
]


class BuildError(Exception):
    """A guest could not be built; the message carries the compiler's stderr."""


def _zig_version() -> str:
    # The ziglang wheel's version is the version of the zig it bundles; reading
    # it from the package metadata avoids starting a process on cache hits.
    try:
        return importlib.metadata.version("ziglang")
    except importlib.metadata.PackageNotFoundError:
        raise BuildError("ziglang is not installed (pip install ziglang)") from None


def _input_hash(source: Path) -> str:
    h = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        # Length-prefix every field so no two different inputs hash alike.
        for part in (label.encode(), data):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)

    feed("zig", _zig_version().encode())
    feed("flags", "\0".join(FLAGS).encode())
    feed("source", source.read_bytes())
    for header in sorted(INCLUDE_DIR.rglob("*.h")):
        feed(header.relative_to(INCLUDE_DIR).as_posix(), header.read_bytes())
    return h.hexdigest()


def _temp_path(path: Path) -> Path:
    # A hidden sibling, so os.replace stays within one filesystem; the pid keeps
    # concurrent builds (e.g. parallel test workers) out of each other's way.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = _temp_path(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _compile(source: Path, out: Path) -> None:
    # zig writes to a temp name in the build dir, which is then renamed into
    # place, so a reader never sees a half-written module.
    tmp = _temp_path(out)
    cmd = [sys.executable, "-m", "ziglang", "cc", *FLAGS,
           "-I", str(INCLUDE_DIR), "-o", str(tmp), str(source)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"compiling {source.name} failed "
                             f"(exit {proc.returncode}):\n{proc.stderr.strip()}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _resolve(names: list[str] | None) -> list[Path]:
    if not names:
        return sorted(HERE.glob("*.c"))
    sources = []
    for name in names:
        source = HERE / f"{name.removesuffix('.c').removesuffix('.wasm')}.c"
        if not source.is_file():
            raise BuildError(f"no such guest: {name} (expected {source})")
        sources.append(source)
    return sources


def build(names: list[str] | None = None, *, verbose: bool = True) -> dict[str, Path]:
    """Build the named guests (default: all); return {name: path to .wasm}."""
    BUILD_DIR.mkdir(exist_ok=True)
    built = {}
    for source in _resolve(names):
        name = source.stem
        out = BUILD_DIR / f"{name}.wasm"
        hash_file = BUILD_DIR / f"{name}.wasm.hash"
        digest = _input_hash(source)
        cached = hash_file.read_text().strip() if hash_file.is_file() else None
        if cached == digest and out.is_file():
            if verbose:
                print(f"{out.name} up to date")
        else:
            # Drop the old hash first and write the new one only after the
            # module is in place, so an interrupted build can never leave a
            # hash that vouches for a module built from other inputs.
            hash_file.unlink(missing_ok=True)
            _compile(source, out)
            _write_atomic(hash_file, digest.encode() + b"\n")
            if verbose:
                print(f"built {out.name} ({round(out.stat().st_size / 1024)} KB)")
        built[name] = out
    return built


def main(argv: list[str]) -> int:
    try:
        build(argv or None)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
