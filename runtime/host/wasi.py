"""WASI preview 1, implemented in Python so that every call passes the journal.

What is real: stdio (stdout/stderr become Log entries, stdin is empty), clocks,
random, args and environment (fixed in the worker's Create entry), poll_oneoff
on clocks, sched_yield and proc_exit. There are no preopened directories, so the
filesystem and socket calls answer with the errno a POSIX system would give for
a descriptor of the wrong kind, and wasi-libc reports "not found"/EBADF to C code.

Recorded in the oplog: clock_time_get, random_get, poll_oneoff and fd_read of
stdin. Everything else is a deterministic function of the guest's memory and
the Create entry, so replay recomputes it. The host keeps no state of its own
between calls, which is what lets a snapshot of guest memory be the whole story.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Sequence

from ..clock import SYSTEM, Clock
from ..engine import FuncSig, HostFunc, Instance
from ..errors import GuestExit
from ..journal import Journal

MODULE = "wasi_snapshot_preview1"

# errno values from the preview 1 witx.
SUCCESS, EBADF, EFAULT, EINVAL, ENOSYS = 0, 8, 21, 28, 52
ENOTDIR, ENOTSOCK, ENOTSUP, ESPIPE = 54, 57, 58, 70

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS, CLOCK_THREAD = 0, 1, 2, 3
FILETYPE_CHARACTER_DEVICE = 2
EVENTTYPE_CLOCK, EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE = 0, 1, 2
SUBCLOCK_ABSTIME = 1
EVENTRWFLAGS_HANGUP = 1
STDIO = (0, 1, 2)
ALL_RIGHTS = (1 << 30) - 1

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_IOVEC = struct.Struct("<II")
_SUB = struct.Struct("<QB7xIxxxxQQH6x")   # subscription, clock variant: 48 bytes
_SUB_FD = struct.Struct("<QB7xI")          # subscription, fd variant prefix
_EVENT = struct.Struct("<QHB5xQH6x")       # event: 32 bytes
_FDSTAT = struct.Struct("<BxHxxxxQQ")      # 24 bytes
_FILESTAT = struct.Struct("<QQBxxxxxxxQQQQQ")  # 64 bytes

# name -> (params, results); "i" is i32, "I" is i64.
SIGNATURES: dict[str, tuple[str, str]] = {
    "args_get": ("ii", "i"), "args_sizes_get": ("ii", "i"),
    "environ_get": ("ii", "i"), "environ_sizes_get": ("ii", "i"),
    "clock_res_get": ("ii", "i"), "clock_time_get": ("iIi", "i"),
    "fd_advise": ("iIIi", "i"), "fd_allocate": ("iII", "i"), "fd_close": ("i", "i"),
    "fd_datasync": ("i", "i"), "fd_fdstat_get": ("ii", "i"),
    "fd_fdstat_set_flags": ("ii", "i"), "fd_fdstat_set_rights": ("iII", "i"),
    "fd_filestat_get": ("ii", "i"), "fd_filestat_set_size": ("iI", "i"),
    "fd_filestat_set_times": ("iIIi", "i"), "fd_pread": ("iiiIi", "i"),
    "fd_prestat_get": ("ii", "i"), "fd_prestat_dir_name": ("iii", "i"),
    "fd_pwrite": ("iiiIi", "i"), "fd_read": ("iiii", "i"), "fd_readdir": ("iiiIi", "i"),
    "fd_renumber": ("ii", "i"), "fd_seek": ("iIii", "i"), "fd_sync": ("i", "i"),
    "fd_tell": ("ii", "i"), "fd_write": ("iiii", "i"),
    "path_create_directory": ("iii", "i"), "path_filestat_get": ("iiiii", "i"),
    "path_filestat_set_times": ("iiiiIIi", "i"), "path_link": ("iiiiiii", "i"),
    "path_open": ("iiiiiIIii", "i"), "path_readlink": ("iiiiii", "i"),
    "path_remove_directory": ("iii", "i"), "path_rename": ("iiiiii", "i"),
    "path_symlink": ("iiiii", "i"), "path_unlink_file": ("iii", "i"),
    "poll_oneoff": ("iiii", "i"), "proc_exit": ("i", ""), "proc_raise": ("i", "i"),
    "sched_yield": ("", "i"), "random_get": ("ii", "i"),
    "sock_accept": ("iii", "i"), "sock_recv": ("iiiiii", "i"), "sock_send": ("iiiii", "i"),
    "sock_shutdown": ("ii", "i"),
}

_TYPES = {"i": "i32", "I": "i64"}


def signature(name: str) -> FuncSig:
    params, results = SIGNATURES[name]
    return FuncSig(tuple(_TYPES[c] for c in params), tuple(_TYPES[c] for c in results))


def _now(clock: int, source: Clock = SYSTEM) -> int:
    # CPU-time clocks measure this process, not the world: they stay real.
    if clock == CLOCK_REALTIME:
        return source.time_ns()
    if clock == CLOCK_MONOTONIC:
        return source.monotonic_ns()
    if clock == CLOCK_PROCESS:
        return time.process_time_ns()
    return time.thread_time_ns()


def _strings_block(items: Sequence[str]) -> list[bytes]:
    return [s.encode("utf-8") + b"\0" for s in items]


class WasiHost:
    """The preview 1 functions of one worker instance."""

    def __init__(self, journal: Journal, args: Sequence[str],
                 env: Sequence[tuple[str, str]], clock: Clock = SYSTEM) -> None:
        self.journal = journal
        self.clock = clock
        self._args = _strings_block(args)
        self._env = _strings_block([f"{k}={v}" for k, v in env])
        self.mem: Instance | None = None

    def bind(self, instance: Instance) -> None:
        self.mem = instance

    def functions(self) -> list[HostFunc]:
        return [HostFunc(MODULE, name, signature(name), getattr(self, name))
                for name in SIGNATURES]

    # -- helpers ----------------------------------------------------------
    def _m(self) -> Instance:
        m = self.mem
        if m is None:  # only a start function could call us this early
            raise GuestExit(1)
        return m

    def _put_u32(self, ptr: int, value: int) -> bool:
        m = self._m()
        if not m.check(ptr, 4):
            return False
        m.write(ptr, _U32.pack(value & 0xFFFFFFFF))
        return True

    def _write_block(self, ptrs: int, buf: int, items: list[bytes]) -> int:
        m = self._m()
        total = sum(map(len, items))
        if not (m.check(ptrs, 4 * len(items)) and m.check(buf, total)):
            return EFAULT
        offset = buf
        for i, item in enumerate(items):
            m.write(ptrs + 4 * i, _U32.pack(offset))
            m.write(offset, item)
            offset += len(item)
        return SUCCESS

    def _sizes(self, count_ptr: int, size_ptr: int, items: list[bytes]) -> int:
        if self._put_u32(count_ptr, len(items)) and self._put_u32(size_ptr, sum(map(len, items))):
            return SUCCESS
        return EFAULT

    def _iovecs(self, iovs: int, n: int) -> list[tuple[int, int]] | None:
        m = self._m()
        if n < 0 or not m.check(iovs, 8 * n):
            return None
        raw = m.read(iovs, 8 * n)
        vecs = [_IOVEC.unpack_from(raw, 8 * i) for i in range(n)]
        for ptr, length in vecs:
            if not m.check(ptr, length):
                return None
        return vecs

    @staticmethod
    def _bad_fd(fd: int, stdio_errno: int) -> int:
        """The answer for a call that no stdio descriptor supports."""
        return stdio_errno if fd in STDIO else EBADF

    # -- args and environment (fixed at Create) ----------------------------
    def args_sizes_get(self, argc: int, size: int) -> int:
        return self._sizes(argc, size, self._args)

    def args_get(self, argv: int, buf: int) -> int:
        return self._write_block(argv, buf, self._args)

    def environ_sizes_get(self, count: int, size: int) -> int:
        return self._sizes(count, size, self._env)

    def environ_get(self, environ: int, buf: int) -> int:
        return self._write_block(environ, buf, self._env)

    # -- clocks and randomness (recorded) -----------------------------------
    def clock_res_get(self, clock: int, out: int) -> int:
        if clock not in (0, 1, 2, 3):
            return EINVAL
        m = self._m()
        if not m.check(out, 8):
            return EFAULT
        m.write(out, _U64.pack(1000 if clock == CLOCK_REALTIME else 1))
        return SUCCESS

    def clock_time_get(self, clock: int, precision: int, out: int) -> int:
        if clock not in (0, 1, 2, 3):
            return EINVAL
        m = self._m()
        if not m.check(out, 8):
            return EFAULT
        value = self.journal.host_call("clock_time_get", bytes((clock,)),
                                       lambda: _U64.pack(_now(clock, self.clock)))
        m.write(out, value)
        return SUCCESS

    def random_get(self, buf: int, length: int) -> int:
        m = self._m()
        if not m.check(buf, length):
            return EFAULT
        data = self.journal.host_call("random_get", _U32.pack(length),
                                      lambda: os.urandom(length))
        m.write(buf, data)
        return SUCCESS

    def poll_oneoff(self, subs: int, events: int, nsubs: int, nevents: int) -> int:
        if nsubs <= 0:
            return EINVAL
        m = self._m()
        if not (m.check(subs, 48 * nsubs) and m.check(events, 32 * nsubs)
                and m.check(nevents, 4)):
            return EFAULT
        request = m.read(subs, 48 * nsubs)
        out = self.journal.host_call("poll_oneoff", request,
                                     lambda: _poll(request, nsubs, self.clock))
        m.write(events, out)
        m.write(nevents, _U32.pack(len(out) // _EVENT.size))
        return SUCCESS

    def sched_yield(self) -> int:
        return SUCCESS

    def proc_exit(self, code: int) -> None:
        raise GuestExit(code)

    def proc_raise(self, sig: int) -> int:
        return ENOSYS

    # -- stdio ----------------------------------------------------------------
    def fd_write(self, fd: int, iovs: int, n: int, nwritten: int) -> int:
        if fd not in (1, 2):
            return EBADF
        vecs = self._iovecs(iovs, n)
        m = self._m()
        if vecs is None or not m.check(nwritten, 4):
            return EFAULT
        data = b"".join(m.read(p, ln) for p, ln in vecs)
        if data:
            self.journal.log(fd, data)
        m.write(nwritten, _U32.pack(len(data)))
        return SUCCESS

    def fd_read(self, fd: int, iovs: int, n: int, nread: int) -> int:
        if fd != 0:
            return EBADF
        vecs = self._iovecs(iovs, n)
        m = self._m()
        if vecs is None or not m.check(nread, 4):
            return EFAULT
        want = sum(ln for _, ln in vecs)
        # Workers have no stdin yet: every read is end-of-file. Recorded all the same, so
        # that feeding stdin later cannot change what an existing oplog replays.
        data = self.journal.host_call("fd_read", _U32.pack(want), lambda: b"")
        offset = 0
        for ptr, ln in vecs:
            chunk = data[offset:offset + ln]
            m.write(ptr, chunk)
            offset += len(chunk)
        m.write(nread, _U32.pack(len(data)))
        return SUCCESS

    def fd_fdstat_get(self, fd: int, out: int) -> int:
        if fd not in STDIO:
            return EBADF
        m = self._m()
        if not m.check(out, _FDSTAT.size):
            return EFAULT
        m.write(out, _FDSTAT.pack(FILETYPE_CHARACTER_DEVICE, 0, ALL_RIGHTS, 0))
        return SUCCESS

    def fd_filestat_get(self, fd: int, out: int) -> int:
        if fd not in STDIO:
            return EBADF
        m = self._m()
        if not m.check(out, _FILESTAT.size):
            return EFAULT
        m.write(out, _FILESTAT.pack(0, 0, FILETYPE_CHARACTER_DEVICE, 1, 0, 0, 0, 0))
        return SUCCESS

    def fd_close(self, fd: int) -> int:
        # Closing stdio is accepted and changes nothing: the host keeps no fd table,
        # so that guest memory alone is the worker's state.
        return SUCCESS if fd in STDIO else EBADF

    def fd_prestat_get(self, fd: int, out: int) -> int:
        return EBADF  # no preopened directories

    def fd_prestat_dir_name(self, fd: int, path: int, length: int) -> int:
        return EBADF

    def fd_seek(self, fd: int, offset: int, whence: int, out: int) -> int:
        return self._bad_fd(fd, ESPIPE)

    def fd_tell(self, fd: int, out: int) -> int:
        return self._bad_fd(fd, ESPIPE)

    def fd_pread(self, fd: int, iovs: int, n: int, offset: int, out: int) -> int:
        return self._bad_fd(fd, ESPIPE)

    def fd_pwrite(self, fd: int, iovs: int, n: int, offset: int, out: int) -> int:
        return self._bad_fd(fd, ESPIPE)

    def fd_advise(self, fd: int, offset: int, length: int, advice: int) -> int:
        return self._bad_fd(fd, ESPIPE)

    def fd_allocate(self, fd: int, offset: int, length: int) -> int:
        return self._bad_fd(fd, ENOTSUP)

    def fd_datasync(self, fd: int) -> int:
        return self._bad_fd(fd, EINVAL)

    def fd_sync(self, fd: int) -> int:
        return self._bad_fd(fd, EINVAL)

    def fd_fdstat_set_flags(self, fd: int, flags: int) -> int:
        return self._bad_fd(fd, ENOTSUP)

    def fd_fdstat_set_rights(self, fd: int, base: int, inheriting: int) -> int:
        return self._bad_fd(fd, ENOTSUP)

    def fd_filestat_set_size(self, fd: int, size: int) -> int:
        return self._bad_fd(fd, EINVAL)

    def fd_filestat_set_times(self, fd: int, atim: int, mtim: int, flags: int) -> int:
        return self._bad_fd(fd, ENOTSUP)

    def fd_readdir(self, fd: int, buf: int, length: int, cookie: int, out: int) -> int:
        return self._bad_fd(fd, ENOTDIR)

    def fd_renumber(self, fd: int, to: int) -> int:
        return self._bad_fd(fd, ENOTSUP) if to in STDIO else EBADF

    # -- filesystem: no preopens, so no descriptor is a directory ------------------
    def path_create_directory(self, fd: int, path: int, length: int) -> int:
        return self._bad_fd(fd, ENOTDIR)

    def path_filestat_get(self, fd: int, flags: int, path: int, length: int, out: int) -> int:
        return self._bad_fd(fd, ENOTDIR)

    def path_filestat_set_times(self, fd: int, flags: int, path: int, length: int,
                                atim: int, mtim: int, fst: int) -> int:
        return self._bad_fd(fd, ENOTDIR)

    def path_link(self, fd: int, flags: int, old: int, old_len: int, new_fd: int,
                  new: int, new_len: int) -> int:
        return self._bad_fd(fd, ENOTDIR)

    def path_open(self, fd: int, dirflags: int, path: int, length: int, oflags: int,
                  base: int, inheriting: int, fdflags: int, out: int) -> int:
        return self._bad_fd(fd, ENOTDIR)

    def path_readlink(self, fd: int, path: int, length: int, buf: int, buf_len: int,
                      out: int) -> int:
        return self._bad_fd(fd, ENOTDIR)

    def path_remove_directory(self, fd: int, path: int, length: int) -> int:
        return self._bad_fd(fd, ENOTDIR)

    def path_rename(self, fd: int, old: int, old_len: int, new_fd: int, new: int,
                    new_len: int) -> int:
        return self._bad_fd(fd, ENOTDIR)

    def path_symlink(self, old: int, old_len: int, fd: int, new: int, new_len: int) -> int:
        return self._bad_fd(fd, ENOTDIR)

    def path_unlink_file(self, fd: int, path: int, length: int) -> int:
        return self._bad_fd(fd, ENOTDIR)

    # -- sockets: none ----------------------------------------------------------
    def sock_accept(self, fd: int, flags: int, out: int) -> int:
        return self._bad_fd(fd, ENOTSOCK)

    def sock_recv(self, fd: int, ri: int, ri_len: int, flags: int, out_len: int,
                  out_flags: int) -> int:
        return self._bad_fd(fd, ENOTSOCK)

    def sock_send(self, fd: int, si: int, si_len: int, flags: int, out: int) -> int:
        return self._bad_fd(fd, ENOTSOCK)

    def sock_shutdown(self, fd: int, how: int) -> int:
        return self._bad_fd(fd, ENOTSOCK)


def _poll(request: bytes, nsubs: int, source: Clock = SYSTEM) -> bytes:
    """Wait as poll_oneoff asks, live. Returns the packed events.

    stdin is always at end-of-file and stdout/stderr always writable, so fd
    subscriptions fire at once; otherwise we sleep until the earliest clock.
    """
    fd_events: list[bytes] = []
    clocks: list[tuple[int, int]] = []  # (deadline in monotonic ns, userdata)
    now = source.monotonic_ns()
    for i in range(nsubs):
        userdata, tag, ident = _SUB_FD.unpack_from(request, 48 * i)
        if tag == EVENTTYPE_CLOCK:
            _, _, clock_id, timeout, _, flags = _SUB.unpack_from(request, 48 * i)
            if flags & SUBCLOCK_ABSTIME:
                known = clock_id in (0, 1, 2, 3)
                timeout = max(0, timeout - (_now(clock_id, source) if known else now))
            clocks.append((now + timeout, userdata))
        elif tag in (EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE):
            if ident not in STDIO:
                fd_events.append(_EVENT.pack(userdata, EBADF, tag, 0, 0))
            else:
                hangup = EVENTRWFLAGS_HANGUP if tag == EVENTTYPE_FD_READ else 0
                fd_events.append(_EVENT.pack(userdata, SUCCESS, tag, 0, hangup))
        else:
            fd_events.append(_EVENT.pack(userdata, EINVAL, tag, 0, 0))
    if fd_events or not clocks:
        return b"".join(fd_events)
    first = min(d for d, _ in clocks)
    delay = first - source.monotonic_ns()
    if delay > 0:
        source.sleep(delay / 1e9)
    return b"".join(_EVENT.pack(u, SUCCESS, EVENTTYPE_CLOCK, 0, 0)
                    for d, u in clocks if d <= first)
