"""A worker's filesystem: read-only directories of the component, a writable directory
that is durable worker state, and the descriptor table. No WebAssembly here.

Everything lives in the host's memory, never on the host's disk, so a guest sees
nothing but its mounts (DESIGN.md invariant 10). Every operation is a
deterministic function of the guest's requests and the filesystem's state, like
a write to linear memory: replay from Create re-derives the directory by
running the same calls again, and a snapshot captures it with memory
(:meth:`FileSystem.state`), together with the descriptor table (open files,
their positions and flags), so that snapshot + tail gives the same state.
Timestamps are always 0, for the same reason.

Read-only mounts are rebuilt from the component at every instantiation (with
the same inode numbers, assigned in order); only the writable mount and the
descriptor table go into a snapshot.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from golemish.oplog import codec

#: Bytes of files one worker may hold in its writable directory (they are in snapshots).
MAX_BYTES = 64 << 20
STATE_VERSION = 1


class FsError(Exception):
    """An operation the filesystem refuses; ``errno`` is the WASI errno."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


# WASI errno values used here.
EACCES, EBADF, EEXIST, EINVAL, EISDIR, ENOENT = 2, 8, 20, 28, 31, 44
ENOSPC, ENOTDIR, ENOTEMPTY, EROFS, ENOTCAPABLE = 51, 54, 55, 69, 76


@dataclass(eq=False)
class File:
    ino: int
    data: bytearray = field(default_factory=bytearray)
    writable: bool = True
    #: (host descriptor, size) of a read-only file read from the host (the stdlib zip).
    host: tuple[int, int] | None = None

    @property
    def size(self) -> int:
        return self.host[1] if self.host is not None else len(self.data)

    def read(self, offset: int, n: int) -> bytes:
        if self.host is not None:
            return os.pread(self.host[0], max(0, min(n, self.host[1] - offset)), offset) \
                if offset < self.host[1] else b""
        return bytes(self.data[offset:offset + n])


@dataclass(eq=False)
class Dir:
    ino: int
    children: dict[str, File | Dir] = field(default_factory=dict)
    writable: bool = True


Node = File | Dir


@dataclass
class Open:
    """One descriptor: a node, a position (files), what it may do."""

    node: Node
    pos: int = 0
    read: bool = True
    write: bool = False
    append: bool = False
    #: Index of the mount for a preopened directory, else None.
    preopen: int | None = None


class FileSystem:
    """Mounts and descriptors of one instance."""

    def __init__(self) -> None:
        self.mounts: list[tuple[str, Dir]] = []
        self.fds: dict[int, Open] = {}
        self._next_ino = 1
        self.writable: int | None = None  # the index of the worker's own mount

    def new_ino(self) -> int:
        self._next_ino += 1
        return self._next_ino

    # -- building ------------------------------------------------------------------
    def mount(self, guest_path: str, writable: bool) -> Dir:
        """A preopened directory at the next descriptor (3, 4, ...)."""
        d = Dir(self.new_ino(), writable=writable)
        self.mounts.append((guest_path, d))
        fd = 3 + len(self.mounts) - 1
        self.fds[fd] = Open(d, preopen=len(self.mounts) - 1)
        if writable:
            self.writable = len(self.mounts) - 1
        return d

    def add_file(self, root: Dir, rel: str, data: bytes | None = None, *, writable: bool,
                 host: tuple[int, int] | None = None) -> File:
        """Put a file at ``rel`` below ``root``, creating directories as needed."""
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        d = root
        for p in parts[:-1]:
            nxt = d.children.get(p)
            if not isinstance(nxt, Dir):
                nxt = d.children[p] = Dir(self.new_ino(), writable=root.writable)
            d = nxt
        f = File(self.new_ino(), bytearray(data or b""), writable, host)
        d.children[parts[-1]] = f
        return f

    # -- paths -----------------------------------------------------------------------
    def dir_of(self, fd: int) -> Dir:
        o = self.fds.get(fd)
        if o is None:
            raise FsError(EBADF)
        if not isinstance(o.node, Dir):
            raise FsError(ENOTDIR)
        return o.node

    @staticmethod
    def split(path: str) -> list[str]:
        if path.startswith("/"):
            raise FsError(ENOTCAPABLE)
        out: list[str] = []
        for p in path.split("/"):
            if p in ("", "."):
                continue
            if p == "..":
                if not out:
                    raise FsError(ENOTCAPABLE)  # never above the preopened directory
                out.pop()
            else:
                out.append(p)
        return out

    def lookup(self, fd: int, path: str) -> tuple[Dir, str, Node | None]:
        """(parent directory, last name, node or None) of a path relative to ``fd``."""
        d = self.dir_of(fd)
        parts = self.split(path)
        if not parts:
            return d, ".", d
        for p in parts[:-1]:
            nxt = d.children.get(p)
            if nxt is None:
                raise FsError(ENOENT)
            if not isinstance(nxt, Dir):
                raise FsError(ENOTDIR)
            d = nxt
        return d, parts[-1], d.children.get(parts[-1])

    def lowest_free_fd(self) -> int:
        fd = 3
        while fd in self.fds:
            fd += 1
        return fd

    def used_bytes(self) -> int:
        if self.writable is None:
            return 0
        return sum(f.size for f in _files(self.mounts[self.writable][1]))

    def check_space(self, extra: int) -> None:
        if self.used_bytes() + extra > MAX_BYTES:
            raise FsError(ENOSPC)

    # -- snapshot state -------------------------------------------------------------
    def state(self) -> bytes:
        """The writable mount and the descriptor table, for a snapshot."""
        tree = _encode_dir(self.mounts[self.writable][1]) if self.writable is not None else None
        reachable = {id(f) for f in _files(self.mounts[self.writable][1])} \
            if self.writable is not None else set()
        fds = []
        orphans = []
        for fd, o in sorted(self.fds.items()):
            if isinstance(o.node, File) and o.node.writable and id(o.node) not in reachable:
                orphans.append([o.node.ino, bytes(o.node.data)])  # unlinked, still open
                reachable.add(id(o.node))
            fds.append([fd, o.node.ino, o.pos, int(o.read), int(o.write), int(o.append),
                        -1 if o.preopen is None else o.preopen])
        return codec.encode([STATE_VERSION, self._next_ino, tree, fds, orphans])

    def restore(self, blob: bytes) -> None:
        """Replace the writable mount and the descriptor table by a snapshot's."""
        version, next_ino, tree, fds, orphans = codec.decode(blob)
        if version != STATE_VERSION:
            raise ValueError(f"filesystem state version {version}")
        if tree is not None:
            if self.writable is None:
                raise ValueError("the snapshot has a worker directory, the instance none")
            path, _ = self.mounts[self.writable]
            self.mounts[self.writable] = (path, _decode_dir(tree))
        by_ino: dict[int, Node] = {}
        for _, root in self.mounts:
            _index(root, by_ino)
        for ino, data in orphans:
            by_ino[ino] = File(ino, bytearray(data))
        self.fds = {}
        for fd, ino, pos, rd, wr, app, pre in fds:
            node = by_ino.get(ino)
            if node is None:
                raise ValueError(f"descriptor {fd} names no file")
            self.fds[fd] = Open(node, pos, bool(rd), bool(wr), bool(app),
                                None if pre < 0 else pre)
        self._next_ino = next_ino


def _files(d: Dir) -> Iterable[File]:
    for n in d.children.values():
        if isinstance(n, Dir):
            yield from _files(n)
        else:
            yield n


def _encode_dir(d: Dir) -> list:
    return [d.ino, [[name, _encode_dir(n)] if isinstance(n, Dir)
                    else [name, [n.ino, bytes(n.data)]]
                    for name, n in sorted(d.children.items())]]


def _decode_dir(v: list) -> Dir:
    d = Dir(v[0])
    for name, body in v[1]:
        if isinstance(body[1], list):
            d.children[name] = _decode_dir(body)
        else:
            d.children[name] = File(body[0], bytearray(body[1]))
    return d


def _index(d: Dir, out: dict[int, Node]) -> None:
    out[d.ino] = d
    for n in d.children.values():
        if isinstance(n, Dir):
            _index(n, out)
        else:
            out[n.ino] = n
