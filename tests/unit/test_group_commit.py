"""Group commit (oplog/backends/group_commit.py): who writes, in what order, with whom.

The write function here is a real one standing in for RocksDB's synced write: it
records the groups it is given and can be held (an Event) the way a slow fsync
holds the leader, which makes the grouping deterministic.
"""

from __future__ import annotations

import threading
import time

import pytest

from golemish.oplog.backends.group_commit import GroupCommit
from golemish.oplog.backends.rocksdb import RocksBackend
from golemish.oplog.backends.group_commit import GroupConfig


class Disk:
    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.fail_next = False

    def write(self, batches) -> None:
        self.entered.set()
        self.hold.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        self.groups.append(list(batches))


def wait_queued(gc: GroupCommit, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(gc._queue) < n:
        assert time.monotonic() < deadline, "committers never queued"
        time.sleep(0.001)


def test_commits_made_while_a_write_runs_go_out_together_in_order():
    disk = Disk()
    gc = GroupCommit(disk.write, window_s=0)
    disk.hold.clear()
    first = threading.Thread(target=gc.commit, args=("a",))
    first.start()
    assert disk.entered.wait(10)  # the leader is in its (held) fsync
    others = []
    for name in "bcde":
        t = threading.Thread(target=gc.commit, args=(name,))
        t.start()
        others.append(t)
        wait_queued(gc, 1 + len(others))  # queued in this order
    disk.hold.set()
    for t in [first, *others]:
        t.join(10)
    assert disk.groups == [["a"], ["b", "c", "d", "e"]]  # one fsync for four commits


def test_a_group_is_at_most_max_batches():
    disk = Disk()
    gc = GroupCommit(disk.write, window_s=0, max_batches=2)
    disk.hold.clear()
    threads = [threading.Thread(target=gc.commit, args=("a",))]
    threads[0].start()
    assert disk.entered.wait(10)
    for i, name in enumerate("bcde"):
        threads.append(threading.Thread(target=gc.commit, args=(name,)))
        threads[-1].start()
        wait_queued(gc, i + 2)
    disk.hold.set()
    for t in threads:
        t.join(10)
    assert disk.groups == [["a"], ["b", "c"], ["d", "e"]]


def test_a_failed_write_fails_every_member_of_its_group_and_the_next_group_goes_on():
    disk = Disk()
    gc = GroupCommit(disk.write, window_s=0)
    disk.hold.clear()
    errors: dict[str, BaseException | None] = {}

    def commit(name: str) -> None:
        try:
            gc.commit(name)
            errors[name] = None
        except OSError as e:
            errors[name] = e

    lead = threading.Thread(target=commit, args=("a",))
    lead.start()
    assert disk.entered.wait(10)
    followers = [threading.Thread(target=commit, args=(n,)) for n in "bc"]
    for i, t in enumerate(followers):
        t.start()
        wait_queued(gc, i + 2)
    disk.fail_next = True  # the leader's own write fails
    disk.hold.set()
    for t in [lead, *followers]:
        t.join(10)
    assert isinstance(errors["a"], OSError) and errors["b"] is None and errors["c"] is None
    assert disk.groups == [["b", "c"]]
    gc.commit("d")  # and the queue is free again
    assert disk.groups[-1] == ["d"]


def test_a_lone_committer_never_waits_for_company():
    disk = Disk()
    gc = GroupCommit(disk.write, window_s=5.0)  # a window nobody should ever pay alone
    t0 = time.monotonic()
    for name in "abc":
        gc.commit(name)
    assert disk.groups == [["a"], ["b"], ["c"]]
    assert time.monotonic() - t0 < 5.0


def test_a_synced_rocksdb_store_writes_concurrent_batches_whole(tmp_path):
    b = RocksBackend(str(tmp_path / "db"), sync=True, create=True,
                     group=GroupConfig(window_s=0.001))
    try:
        def writer(i: int) -> None:
            for j in range(50):
                b.write([("oplog", f"w{i}\0{j:04}a".encode(), b"x"),
                         ("oplog", f"w{i}\0{j:04}b".encode(), b"y"),
                         ("meta", f"head{i}".encode(), str(j).encode())])
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        c = b.stats.counters()
        assert c["fsync_batches"] == 8 * 50 and 1 <= c["fsyncs"] <= 8 * 50
        with pytest.raises(Exception, match="unknown table"):
            b.write([("nope", b"k", b"v")])
    finally:
        b.close()
    b = RocksBackend(str(tmp_path / "db"))
    try:
        for i in range(8):
            assert b.get("meta", f"head{i}".encode()) == b"49"
            assert len(list(b.scan("oplog", f"w{i}\0".encode(), f"w{i}\1".encode()))) == 100
    finally:
        b.close()
