"""The worker filesystem's snapshot state: tree, descriptors and positions round-trip."""

from __future__ import annotations

from golemish.runtime.host.vfs import Dir, File, FileSystem, FsError, Open, ENOTCAPABLE

import pytest


def make() -> FileSystem:
    fs = FileSystem()
    etc = fs.mount("/etc", writable=False)
    fs.add_file(etc, "app/conf", b"ro bytes", writable=False)
    data = fs.mount("/data", writable=True)
    fs.add_file(data, "a/b.txt", b"hello", writable=True)
    return fs


def test_state_round_trips_tree_descriptors_and_unlinked_open_files() -> None:
    fs = make()
    data = fs.mounts[1][1]
    b = data.children["a"].children["b.txt"]
    gone = File(fs.new_ino(), bytearray(b"still open"))
    fs.fds[5] = Open(b, pos=3, write=True, append=True)
    fs.fds[6] = Open(gone, pos=2)
    conf = fs.mounts[0][1].children["app"].children["conf"]
    fs.fds[7] = Open(conf, pos=1)
    blob = fs.state()

    again = make()  # a fresh instance: read-only mounts rebuilt, same inode numbers
    again.restore(blob)
    assert again.state() == blob
    o = again.fds[5]
    assert isinstance(o.node, File) and bytes(o.node.data) == b"hello"
    assert (o.pos, o.write, o.append) == (3, True, True)
    assert bytes(again.fds[6].node.data) == b"still open" and again.fds[6].pos == 2
    assert again.fds[7].node.read(0, 100) == b"ro bytes"
    assert isinstance(again.fds[4].node, Dir) and again.fds[4].preopen == 1
    # The restored tree is the worker's own: the descriptor writes into it.
    again.fds[5].node.data += b"!"
    assert bytes(again.mounts[1][1].children["a"].children["b.txt"].data) == b"hello!"


def test_paths_never_leave_their_preopen() -> None:
    fs = make()
    with pytest.raises(FsError) as e:
        fs.lookup(4, "a/../../etc/app/conf")
    assert e.value.errno == ENOTCAPABLE
    with pytest.raises(FsError):
        fs.lookup(4, "/etc/app/conf")
    assert fs.lookup(4, "a/./b.txt")[1] == "b.txt"
