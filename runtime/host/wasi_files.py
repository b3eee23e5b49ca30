"""WASI preview 1 file calls on a worker's FileSystem (vfs.py): preopens, paths,
descriptors. stdio and everything else stay as in wasi.py.

None of these calls is recorded: each is a deterministic function of the guest's
memory and the filesystem's state, which replay re-derives and a snapshot holds
(see vfs.py). Descriptors 0-2 are stdio; preopens start at 3.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from ..clock import SYSTEM, Clock
from ..journal import Journal
from .vfs import EISDIR, ENOTEMPTY, EROFS, Dir, File, FileSystem, FsError, Open
from .wasi import (_FDSTAT, _FILESTAT, _U32, _U64, ALL_RIGHTS, EBADF, EFAULT, EINVAL, STDIO,
                   SUCCESS, WasiHost)

EEXIST, ENOENT, ENOTDIR, EACCES = 20, 44, 54, 2
FILETYPE_DIRECTORY, FILETYPE_REGULAR = 3, 4
O_CREAT, O_DIRECTORY, O_EXCL, O_TRUNC = 1, 2, 4, 8
FDFLAG_APPEND = 1
RIGHT_FD_READ, RIGHT_FD_WRITE = 1 << 1, 1 << 6
WHENCE_SET, WHENCE_CUR, WHENCE_END = 0, 1, 2
_PRESTAT = struct.Struct("<BxxxI")
_DIRENT = struct.Struct("<QQIB3x")


def _errno(fn: Callable[..., int]) -> Callable[..., int]:
    def call(*a: int) -> int:
        try:
            return fn(*a)
        except FsError as e:
            return e.errno
    call.__name__ = fn.__name__
    return call


class FileWasi(WasiHost):
    """WasiHost with a filesystem behind descriptors 3 and up."""

    def __init__(self, journal: Journal, args: Sequence[str], env: Sequence[tuple[str, str]],
                 clock: Clock = SYSTEM, *, fs: FileSystem) -> None:
        super().__init__(journal, args, env, clock)
        self.fs = fs

    # -- helpers ------------------------------------------------------------------
    def _open(self, fd: int) -> Open:
        o = self.fs.fds.get(fd)
        if o is None:
            raise FsError(EBADF)
        return o

    def _file(self, fd: int) -> Open:
        o = self._open(fd)
        if not isinstance(o.node, File):
            raise FsError(EISDIR)
        return o

    def _path(self, ptr: int, length: int) -> str:
        m = self._m()
        if length < 0 or not m.check(ptr, length):
            raise FsError(EFAULT)
        return m.read(ptr, length).decode("utf-8", "replace")

    def _stat(self, node: File | Dir, out: int) -> int:
        m = self._m()
        if not m.check(out, _FILESTAT.size):
            return EFAULT
        kind = FILETYPE_DIRECTORY if isinstance(node, Dir) else FILETYPE_REGULAR
        size = node.size if isinstance(node, File) else 0
        m.write(out, _FILESTAT.pack(1, node.ino, kind, 1, size, 0, 0, 0))
        return SUCCESS

    def _read_into(self, f: File, iovs: int, n: int, offset: int, out: int) -> int:
        vecs = self._iovecs(iovs, n)
        m = self._m()
        if vecs is None or not m.check(out, 4):
            raise FsError(EFAULT)
        total = 0
        for ptr, ln in vecs:
            chunk = f.read(offset + total, ln) if ln else b""
            m.write(ptr, chunk)
            total += len(chunk)
            if len(chunk) < ln:
                break
        m.write(out, _U32.pack(total))
        return total

    def _write_from(self, f: File, iovs: int, n: int, offset: int, out: int) -> int:
        vecs = self._iovecs(iovs, n)
        m = self._m()
        if vecs is None or not m.check(out, 4):
            raise FsError(EFAULT)
        data = b"".join(m.read(p, ln) for p, ln in vecs)
        end = offset + len(data)
        self.fs.check_space(max(0, end - len(f.data)))
        if offset > len(f.data):
            f.data.extend(bytes(offset - len(f.data)))
        f.data[offset:end] = data
        m.write(out, _U32.pack(len(data)))
        return len(data)

    # -- preopens ---------------------------------------------------------------------
    @_errno
    def fd_prestat_get(self, fd: int, out: int) -> int:
        o = self.fs.fds.get(fd)
        if o is None or o.preopen is None:
            return EBADF
        name = self.fs.mounts[o.preopen][0].encode()
        m = self._m()
        if not m.check(out, _PRESTAT.size):
            return EFAULT
        m.write(out, _PRESTAT.pack(0, len(name)))
        return SUCCESS

    @_errno
    def fd_prestat_dir_name(self, fd: int, path: int, length: int) -> int:
        o = self.fs.fds.get(fd)
        if o is None or o.preopen is None:
            return EBADF
        name = self.fs.mounts[o.preopen][0].encode()
        m = self._m()
        if length < len(name) or not m.check(path, len(name)):
            return EINVAL
        m.write(path, name)
        return SUCCESS

    # -- paths ------------------------------------------------------------------------
    @_errno
    def path_open(self, fd: int, dirflags: int, path: int, length: int, oflags: int,
                  base: int, inheriting: int, fdflags: int, out: int) -> int:
        if fd in STDIO:
            return ENOTDIR
        parent, name, node = self.fs.lookup(fd, self._path(path, length))
        write = bool(base & RIGHT_FD_WRITE or oflags & O_TRUNC or fdflags & FDFLAG_APPEND)
        if node is None:
            if not oflags & O_CREAT:
                return ENOENT
            if not parent.writable:
                return EROFS
            if oflags & O_DIRECTORY:
                return ENOENT
            node = parent.children[name] = File(self.fs.new_ino())
        elif oflags & O_CREAT and oflags & O_EXCL:
            return EEXIST
        if isinstance(node, Dir):
            if write:
                return EISDIR
        else:
            if oflags & O_DIRECTORY:
                return ENOTDIR
            if write and not node.writable:
                return EROFS
            if oflags & O_TRUNC:
                node.data.clear()
        new = self.fs.lowest_free_fd()
        if not self._put_u32(out, new):
            return EFAULT
        self.fs.fds[new] = Open(node, 0, read=True, write=write,
                                append=bool(fdflags & FDFLAG_APPEND))
        return SUCCESS

    @_errno
    def path_filestat_get(self, fd: int, flags: int, path: int, length: int, out: int) -> int:
        if fd in STDIO:
            return ENOTDIR
        _, _, node = self.fs.lookup(fd, self._path(path, length))
        return ENOENT if node is None else self._stat(node, out)

    @_errno
    def path_create_directory(self, fd: int, path: int, length: int) -> int:
        if fd in STDIO:
            return ENOTDIR
        parent, name, node = self.fs.lookup(fd, self._path(path, length))
        if node is not None:
            return EEXIST
        if not parent.writable:
            return EROFS
        parent.children[name] = Dir(self.fs.new_ino())
        return SUCCESS

    def _remove(self, fd: int, path: int, length: int, want_dir: bool) -> int:
        if fd in STDIO:
            return ENOTDIR
        parent, name, node = self.fs.lookup(fd, self._path(path, length))
        if node is None:
            return ENOENT
        if not parent.writable:
            return EROFS
        if want_dir != isinstance(node, Dir):
            return ENOTDIR if want_dir else EISDIR
        if isinstance(node, Dir) and node.children:
            return ENOTEMPTY
        if node is parent:
            return EINVAL
        del parent.children[name]
        return SUCCESS

    @_errno
    def path_unlink_file(self, fd: int, path: int, length: int) -> int:
        return self._remove(fd, path, length, False)

    @_errno
    def path_remove_directory(self, fd: int, path: int, length: int) -> int:
        return self._remove(fd, path, length, True)

    @_errno
    def path_rename(self, fd: int, old: int, old_len: int, new_fd: int, new: int,
                    new_len: int) -> int:
        if fd in STDIO or new_fd in STDIO:
            return ENOTDIR
        p1, n1, node = self.fs.lookup(fd, self._path(old, old_len))
        p2, n2, target = self.fs.lookup(new_fd, self._path(new, new_len))
        if node is None:
            return ENOENT
        if not (p1.writable and p2.writable):
            return EROFS
        if isinstance(target, Dir) and (not isinstance(node, Dir) or target.children):
            return EISDIR if not isinstance(node, Dir) else ENOTEMPTY
        if isinstance(node, Dir) and target is not None and not isinstance(target, Dir):
            return ENOTDIR
        del p1.children[n1]
        p2.children[n2] = node
        return SUCCESS

    @_errno
    def path_filestat_set_times(self, fd: int, flags: int, path: int, length: int,
                                atim: int, mtim: int, fst_flags: int) -> int:
        if fd in STDIO:
            return ENOTDIR
        node = self.fs.lookup(fd, self._path(path, length))[2]
        return ENOENT if node is None else SUCCESS  # times are always 0 (determinism)

    # -- descriptors ------------------------------------------------------------------
    @_errno
    def fd_fdstat_get(self, fd: int, out: int) -> int:
        if fd in STDIO:
            return super().fd_fdstat_get(fd, out)
        o = self._open(fd)
        m = self._m()
        if not m.check(out, _FDSTAT.size):
            return EFAULT
        kind = FILETYPE_DIRECTORY if isinstance(o.node, Dir) else FILETYPE_REGULAR
        rights = ALL_RIGHTS if o.node.writable else ALL_RIGHTS & ~RIGHT_FD_WRITE
        m.write(out, _FDSTAT.pack(kind, FDFLAG_APPEND if o.append else 0, rights, rights))
        return SUCCESS

    @_errno
    def fd_fdstat_set_flags(self, fd: int, flags: int) -> int:
        if fd in STDIO:
            return super().fd_fdstat_set_flags(fd, flags)
        self._open(fd).append = bool(flags & FDFLAG_APPEND)
        return SUCCESS

    @_errno
    def fd_filestat_get(self, fd: int, out: int) -> int:
        if fd in STDIO:
            return super().fd_filestat_get(fd, out)
        return self._stat(self._open(fd).node, out)

    @_errno
    def fd_filestat_set_size(self, fd: int, size: int) -> int:
        if fd in STDIO:
            return super().fd_filestat_set_size(fd, size)
        o = self._file(fd)
        f = o.node
        assert isinstance(f, File)
        if not (o.write and f.writable):
            return EBADF if f.writable else EROFS
        self.fs.check_space(max(0, size - len(f.data)))
        if size < len(f.data):
            del f.data[size:]
        else:
            f.data.extend(bytes(size - len(f.data)))
        return SUCCESS

    @_errno
    def fd_filestat_set_times(self, fd: int, atim: int, mtim: int, flags: int) -> int:
        if fd in STDIO:
            return super().fd_filestat_set_times(fd, atim, mtim, flags)
        self._open(fd)
        return SUCCESS

    @_errno
    def fd_read(self, fd: int, iovs: int, n: int, nread: int) -> int:
        if fd in STDIO:
            return super().fd_read(fd, iovs, n, nread)
        o = self._file(fd)
        assert isinstance(o.node, File)
        o.pos += self._read_into(o.node, iovs, n, o.pos, nread)
        return SUCCESS

    @_errno
    def fd_pread(self, fd: int, iovs: int, n: int, offset: int, out: int) -> int:
        if fd in STDIO:
            return super().fd_pread(fd, iovs, n, offset, out)
        o = self._file(fd)
        assert isinstance(o.node, File)
        self._read_into(o.node, iovs, n, offset, out)
        return SUCCESS

    @_errno
    def fd_write(self, fd: int, iovs: int, n: int, nwritten: int) -> int:
        if fd in STDIO:
            return super().fd_write(fd, iovs, n, nwritten)
        o = self._file(fd)
        f = o.node
        assert isinstance(f, File)
        if not (o.write and f.writable):
            return EBADF
        if o.append:
            o.pos = len(f.data)
        o.pos += self._write_from(f, iovs, n, o.pos, nwritten)
        return SUCCESS

    @_errno
    def fd_pwrite(self, fd: int, iovs: int, n: int, offset: int, out: int) -> int:
        if fd in STDIO:
            return super().fd_pwrite(fd, iovs, n, offset, out)
        o = self._file(fd)
        f = o.node
        assert isinstance(f, File)
        if not (o.write and f.writable):
            return EBADF
        self._write_from(f, iovs, n, offset, out)
        return SUCCESS

    @_errno
    def fd_seek(self, fd: int, offset: int, whence: int, out: int) -> int:
        if fd in STDIO:
            return super().fd_seek(fd, offset, whence, out)
        o = self._file(fd)
        assert isinstance(o.node, File)
        if offset >= 1 << 63:
            offset -= 1 << 64  # an i64 arrives unsigned
        base = {WHENCE_SET: 0, WHENCE_CUR: o.pos, WHENCE_END: o.node.size}.get(whence)
        if base is None or base + offset < 0:
            return EINVAL
        m = self._m()
        if not m.check(out, 8):
            return EFAULT
        o.pos = base + offset
        m.write(out, _U64.pack(o.pos))
        return SUCCESS

    def fd_tell(self, fd: int, out: int) -> int:
        if fd in STDIO:
            return super().fd_tell(fd, out)
        return self.fd_seek(fd, 0, WHENCE_CUR, out)

    @_errno
    def fd_sync(self, fd: int) -> int:
        if fd in STDIO:
            return super().fd_sync(fd)
        self._open(fd)
        return SUCCESS  # durable through snapshots and replay, not through the host's disk

    @_errno
    def fd_datasync(self, fd: int) -> int:
        if fd in STDIO:
            return super().fd_datasync(fd)
        self._open(fd)
        return SUCCESS

    @_errno
    def fd_advise(self, fd: int, offset: int, length: int, advice: int) -> int:
        if fd in STDIO:
            return super().fd_advise(fd, offset, length, advice)
        self._file(fd)
        return SUCCESS

    @_errno
    def fd_close(self, fd: int) -> int:
        if fd in STDIO:
            return super().fd_close(fd)
        if self.fs.fds.pop(fd, None) is None:
            return EBADF
        return SUCCESS

    @_errno
    def fd_renumber(self, fd: int, to: int) -> int:
        if fd in STDIO or to in STDIO:
            return super().fd_renumber(fd, to)
        o = self._open(fd)
        self._open(to)
        self.fs.fds[to] = o
        del self.fs.fds[fd]
        return SUCCESS

    @_errno
    def fd_readdir(self, fd: int, buf: int, length: int, cookie: int, out: int) -> int:
        if fd in STDIO:
            return super().fd_readdir(fd, buf, length, cookie, out)
        d = self._open(fd).node
        if not isinstance(d, Dir):
            return ENOTDIR
        m = self._m()
        if not m.check(buf, length) or not m.check(out, 4):
            return EFAULT
        entries = [(".", d.ino, FILETYPE_DIRECTORY), ("..", d.ino, FILETYPE_DIRECTORY)]
        entries += [(name, n.ino, FILETYPE_DIRECTORY if isinstance(n, Dir) else
                     FILETYPE_REGULAR) for name, n in sorted(d.children.items())]
        data = bytearray()
        for i, (name, ino, kind) in enumerate(entries[cookie:], start=cookie):
            raw = name.encode()
            data += _DIRENT.pack(i + 1, ino, len(raw), kind) + raw
            if len(data) >= length:
                break
        data = data[:length]
        m.write(buf, bytes(data))
        m.write(out, _U32.pack(len(data)))
        return SUCCESS


__all__ = ["FileWasi", "EACCES"]
