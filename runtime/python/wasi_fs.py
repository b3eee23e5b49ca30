"""WASI for the Python interpreter: the stdlib zip read-only at fd 3, the worker's
durable directory ``/data`` at fd 4.

The interpreter image expects its first preopen, ``/usr/local/lib``, at fd 3,
holding one file, ``python315.zip``. That file is immutable and pinned by its
sha256 in the component, so reading it is a deterministic function of the
guest's requests and nothing is recorded: replay reads the same bytes again.
It is read from the host file on demand, never copied into the worker.

``/data`` is the worker's own writable directory (runtime/host/vfs.py): durable state
like the interpreter's heap, captured in snapshots with the descriptor table, so
a file may stay open between invocations.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..clock import SYSTEM, Clock
from ..host.vfs import FileSystem
from ..host.wasi_files import FileWasi
from ..journal import Journal

PREOPEN_FD = 3
PREOPEN_NAME = "/usr/local/lib"
ZIP_NAME = "python315.zip"
DATA_DIR = "/data"


class PythonWasi(FileWasi):
    """FileWasi with the stdlib zip and the worker directory mounted."""

    def __init__(self, journal: Journal, args: Sequence[str], env: Sequence[tuple[str, str]],
                 clock: Clock = SYSTEM, *, stdlib_zip: Path) -> None:
        self._zip_fd = os.open(stdlib_zip, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        fs = FileSystem()
        lib = fs.mount(PREOPEN_NAME, writable=False)
        fs.add_file(lib, ZIP_NAME, writable=False,
                    host=(self._zip_fd, os.fstat(self._zip_fd).st_size))
        fs.mount(DATA_DIR, writable=True)
        super().__init__(journal, args, env, clock, fs=fs)

    def close(self) -> None:
        if self._zip_fd >= 0:
            os.close(self._zip_fd)
            self._zip_fd = -1

    def __del__(self) -> None:
        self.close()

    def open_files(self) -> int:
        """Descriptors open beyond stdio and the preopens."""
        return sum(1 for o in self.fs.fds.values() if o.preopen is None)
