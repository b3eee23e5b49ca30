"""WASI for the Python interpreter: the stdlib zip, read-only, at preopen fd 3.

The interpreter image expects exactly one preopen, ``/usr/local/lib`` at fd 3
(wasi-libc caches the preopen list in the image's memory), holding one file,
``python315.zip``. That file is immutable and pinned by its sha256 in the
component, so reading it is a deterministic function of the guest's requests
and nothing is recorded: replay reads the same bytes again.

Descriptors opened on the zip are host state. Between invocations the
interpreter has none open (zipimport opens and closes the archive per read),
so a snapshot of memory is the whole state; :meth:`PythonWasi.open_files`
lets the worker refuse a snapshot otherwise.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

from ..clock import SYSTEM, Clock
from ..host.wasi import (_FDSTAT, _FILESTAT, _U32, _U64, ALL_RIGHTS, EBADF, EFAULT, EINVAL,
                    ENOTDIR, STDIO, SUCCESS, WasiHost)
from ..journal import Journal

PREOPEN_FD = 3
PREOPEN_NAME = b"/usr/local/lib"
ZIP_NAME = "python315.zip"
ENOENT, EISDIR, EROFS, EACCES = 44, 31, 69, 2
FILETYPE_DIRECTORY, FILETYPE_REGULAR = 3, 4
O_CREAT, O_DIRECTORY, O_EXCL, O_TRUNC = 1, 2, 4, 8
RIGHT_FD_WRITE = 1 << 6
WHENCE_SET, WHENCE_CUR, WHENCE_END = 0, 1, 2
_PRESTAT = struct.Struct("<BxxxI")
_DIRENT = struct.Struct("<QQIB3x")


class PythonWasi(WasiHost):
    """WasiHost plus a read-only directory with the stdlib zip in it."""

    def __init__(self, journal: Journal, args: Sequence[str], env: Sequence[tuple[str, str]],
                 clock: Clock = SYSTEM, *, stdlib_zip: Path) -> None:
        super().__init__(journal, args, env, clock)
        self._zip_fd = os.open(stdlib_zip, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._zip_size = os.fstat(self._zip_fd).st_size
        #: Guest descriptor -> read offset, for descriptors open on the zip.
        self._files: dict[int, int] = {}

    def close(self) -> None:
        if self._zip_fd >= 0:
            os.close(self._zip_fd)
            self._zip_fd = -1

    def __del__(self) -> None:
        self.close()

    def open_files(self) -> int:
        return len(self._files)

    # -- helpers ------------------------------------------------------------
    def _path(self, ptr: int, length: int) -> str | None:
        m = self._m()
        if length < 0 or not m.check(ptr, length):
            return None
        return m.read(ptr, length).decode("utf-8", "replace").strip("/")

    def _lookup(self, path: str) -> str | None:
        """'dir', 'zip' or None, for a path relative to the preopen."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if not parts:
            return "dir"
        return "zip" if parts == [ZIP_NAME] else None

    def _filestat(self, kind: str, out: int) -> int:
        m = self._m()
        if not m.check(out, _FILESTAT.size):
            return EFAULT
        if kind == "dir":
            stat = _FILESTAT.pack(1, 1, FILETYPE_DIRECTORY, 1, 0, 0, 0, 0)
        else:
            stat = _FILESTAT.pack(1, 2, FILETYPE_REGULAR, 1, self._zip_size, 0, 0, 0)
        m.write(out, stat)
        return SUCCESS

    def _read_into(self, iovs: int, n: int, offset: int, out: int) -> tuple[int, int]:
        vecs = self._iovecs(iovs, n)
        m = self._m()
        if vecs is None or not m.check(out, 4):
            return EFAULT, 0
        total = 0
        for ptr, ln in vecs:
            chunk = os.pread(self._zip_fd, ln, offset + total) if ln else b""
            m.write(ptr, chunk)
            total += len(chunk)
            if len(chunk) < ln:
                break
        m.write(out, _U32.pack(total))
        return SUCCESS, total

    # -- preopens -------------------------------------------------------------
    def fd_prestat_get(self, fd: int, out: int) -> int:
        if fd != PREOPEN_FD:
            return EBADF
        m = self._m()
        if not m.check(out, _PRESTAT.size):
            return EFAULT
        m.write(out, _PRESTAT.pack(0, len(PREOPEN_NAME)))
        return SUCCESS

    def fd_prestat_dir_name(self, fd: int, path: int, length: int) -> int:
        if fd != PREOPEN_FD:
            return EBADF
        m = self._m()
        if length < len(PREOPEN_NAME) or not m.check(path, len(PREOPEN_NAME)):
            return EINVAL
        m.write(path, PREOPEN_NAME)
        return SUCCESS

    # -- paths --------------------------------------------------------------
    def path_open(self, fd: int, dirflags: int, path: int, length: int, oflags: int,
                  base: int, inheriting: int, fdflags: int, out: int) -> int:
        if fd != PREOPEN_FD:
            return super().path_open(fd, dirflags, path, length, oflags, base, inheriting,
                                     fdflags, out)
        name = self._path(path, length)
        if name is None:
            return EFAULT
        kind = self._lookup(name)
        if oflags & (O_CREAT | O_TRUNC) or base & RIGHT_FD_WRITE and kind != "dir":
            return EROFS if kind is not None or oflags & O_CREAT else ENOENT
        if kind is None:
            return ENOENT
        if kind == "dir":
            return EACCES  # a second handle on the directory is not needed by the interpreter
        if oflags & O_DIRECTORY:
            return ENOTDIR
        new = max([PREOPEN_FD, *self._files]) + 1
        self._files[new] = 0
        if not self._put_u32(out, new):
            del self._files[new]
            return EFAULT
        return SUCCESS

    def path_filestat_get(self, fd: int, flags: int, path: int, length: int, out: int) -> int:
        if fd != PREOPEN_FD:
            return super().path_filestat_get(fd, flags, path, length, out)
        name = self._path(path, length)
        if name is None:
            return EFAULT
        kind = self._lookup(name)
        return ENOENT if kind is None else self._filestat(kind, out)

    # -- descriptors ------------------------------------------------------------
    def fd_fdstat_get(self, fd: int, out: int) -> int:
        if fd in STDIO:
            return super().fd_fdstat_get(fd, out)
        if fd != PREOPEN_FD and fd not in self._files:
            return EBADF
        m = self._m()
        if not m.check(out, _FDSTAT.size):
            return EFAULT
        kind = FILETYPE_DIRECTORY if fd == PREOPEN_FD else FILETYPE_REGULAR
        rights = ALL_RIGHTS & ~RIGHT_FD_WRITE
        m.write(out, _FDSTAT.pack(kind, 0, rights, rights))
        return SUCCESS

    def fd_filestat_get(self, fd: int, out: int) -> int:
        if fd == PREOPEN_FD:
            return self._filestat("dir", out)
        if fd in self._files:
            return self._filestat("zip", out)
        return super().fd_filestat_get(fd, out)

    def fd_read(self, fd: int, iovs: int, n: int, nread: int) -> int:
        if fd not in self._files:
            return EISDIR if fd == PREOPEN_FD else super().fd_read(fd, iovs, n, nread)
        err, got = self._read_into(iovs, n, self._files[fd], nread)
        if err == SUCCESS:
            self._files[fd] += got
        return err

    def fd_pread(self, fd: int, iovs: int, n: int, offset: int, out: int) -> int:
        if fd not in self._files:
            return super().fd_pread(fd, iovs, n, offset, out)
        return self._read_into(iovs, n, offset, out)[0]

    def fd_seek(self, fd: int, offset: int, whence: int, out: int) -> int:
        if fd not in self._files:
            return super().fd_seek(fd, offset, whence, out)
        if offset >= 1 << 63:
            offset -= 1 << 64  # an i64 arrives unsigned
        base = {WHENCE_SET: 0, WHENCE_CUR: self._files[fd], WHENCE_END: self._zip_size}.get(whence)
        if base is None or base + offset < 0:
            return EINVAL
        m = self._m()
        if not m.check(out, 8):
            return EFAULT
        self._files[fd] = base + offset
        m.write(out, _U64.pack(base + offset))
        return SUCCESS

    def fd_tell(self, fd: int, out: int) -> int:
        if fd not in self._files:
            return super().fd_tell(fd, out)
        return self.fd_seek(fd, 0, WHENCE_CUR, out)

    def fd_close(self, fd: int) -> int:
        if self._files.pop(fd, None) is not None:
            return SUCCESS
        return super().fd_close(fd)

    def fd_readdir(self, fd: int, buf: int, length: int, cookie: int, out: int) -> int:
        if fd != PREOPEN_FD:
            return super().fd_readdir(fd, buf, length, cookie, out)
        m = self._m()
        if not m.check(buf, length) or not m.check(out, 4):
            return EFAULT
        data = b""
        if cookie == 0:
            name = ZIP_NAME.encode()
            data = (_DIRENT.pack(1, 2, len(name), FILETYPE_REGULAR) + name)[:length]
        m.write(buf, data)
        m.write(out, _U32.pack(len(data)))
        return SUCCESS
