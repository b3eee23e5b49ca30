"""Files a component carries into its workers' filesystems (``deploy --file``).

``--file SRC:DEST[:ro]`` stores SRC's bytes in the component (content-addressed,
beside its module bytes) under the guest path DEST. A read-only file is served
from the component: its top directory (``/etc`` for ``/etc/app.conf``) becomes
a read-only preopen. A writable one must lie in ``/data``, the worker's own
durable directory, and is its initial content there; the worker changes its
own copy. Components with files get the filesystem of runtime/host/vfs.py; others
keep the plain WASI host, which has no preopens at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from golemish.oplog import Store

from .clock import Clock
from .errors import ArgumentError
from .host.vfs import FileSystem
from .host.wasi_files import FileWasi
from .journal import Journal

DATA_DIR = "/data"


def parse_file_spec(spec: str) -> tuple[Path, str, bool]:
    """SRC:DEST[:ro] -> (source path, guest path, read-only)."""
    parts = spec.split(":")
    ro = len(parts) == 3 and parts[2] == "ro"
    if len(parts) not in (2, 3) or (len(parts) == 3 and not ro) or not parts[0]:
        raise ArgumentError(f"--file {spec!r}: expected SRC:DEST or SRC:DEST:ro")
    return Path(parts[0]), check_dest(parts[1], ro), ro


def check_dest(dest: str, ro: bool) -> str:
    parts = dest.split("/")
    if not dest.startswith("/") or any(p in ("", ".", "..") for p in parts[1:]) \
            or len(parts) < 3:
        raise ArgumentError(f"--file destination {dest!r}: an absolute path to a file in a "
                            "directory, like /data/notes.txt or /etc/app.conf")
    if ro == (parts[1] == DATA_DIR[1:]):
        raise ArgumentError(f"--file destination {dest!r}: writable files go in "
                            f"{DATA_DIR}/, read-only ones anywhere else")
    return dest


def pack_files(files: Sequence[tuple[str, bytes, bool]]
               ) -> tuple[list[list[Any]], dict[str, bytes]]:
    """(the meta list [[dest, sha256, ro], ...], blobs by sha256)."""
    listed: dict[str, list[Any]] = {}
    blobs: dict[str, bytes] = {}
    for dest, data, ro in files:
        check_dest(dest, ro)
        if dest in listed:
            raise ArgumentError(f"--file destination {dest} given twice")
        digest = hashlib.sha256(data).hexdigest()
        listed[dest] = [dest, digest, ro]
        blobs[digest] = data
    return [listed[d] for d in sorted(listed)], blobs


def filesystem(store: Store, component: dict[str, Any]) -> FileSystem:
    """The filesystem a fresh instance of the component starts with."""
    fs = FileSystem()
    data = fs.mount(DATA_DIR, writable=True)
    mounts = {}
    for dest, digest, ro in component.get("files", []):
        top, rel = dest[1:].split("/", 1)
        content = store.get_wasm(digest)  # verified by its hash
        if not ro:
            fs.add_file(data, rel, content, writable=True)
            continue
        if top not in mounts:
            mounts[top] = fs.mount("/" + top, writable=False)
        fs.add_file(mounts[top], rel, content, writable=False)
    return fs


def component_wasi(store: Store, component: dict[str, Any], journal: Journal, create: Any,
                   clock: Clock) -> FileWasi:
    return FileWasi(journal, create.args, create.env, clock, fs=filesystem(store, component))
