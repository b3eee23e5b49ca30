"""Archived oplog chunks: reads across the archive boundary see one dense oplog."""

import pytest

from golemish.oplog import Create, Log, open_store
from golemish.oplog.worker_oplog import ARCHIVE_CHUNK


@pytest.fixture(params=["memory", "rocksdb"])
def store(request, tmp_path):
    s = open_store("memory://" if request.param == "memory" else str(tmp_path / "db"),
                   create=True)
    yield s
    s.close()


def fill(store, n):
    log = store.oplog("w/a")
    log.append(Create("w", 0, "h"))
    for i in range(2, n + 1):
        log.append(Log(1, str(i).encode()))
    return log


def test_whole_chunks_move_and_create_stays_live(store):
    log = fill(store, 3 * ARCHIVE_CHUNK + 10)
    ops = log.archive_ops(before=2 * ARCHIVE_CHUNK + 500)
    store.backend.write(ops)
    assert log.archive_span() == (2, 2 + 2 * ARCHIVE_CHUNK)
    assert store.backend.get("oplog", b"w/a\0" + (1).to_bytes(8, "big")) is not None
    assert log.archive_ops(before=2 * ARCHIVE_CHUNK + 500) == []  # nothing more to move


@pytest.mark.parametrize("start, end", [
    (1, None), (1, 1), (1, 5), (2, 2), (ARCHIVE_CHUNK, ARCHIVE_CHUNK + 3),
    (ARCHIVE_CHUNK + 1, ARCHIVE_CHUNK + 2), (2 * ARCHIVE_CHUNK, 2 * ARCHIVE_CHUNK + 5),
    (2 * ARCHIVE_CHUNK + 2, None), (3 * ARCHIVE_CHUNK, None),
])
def test_reads_span_the_archive(store, start, end):
    log = fill(store, 3 * ARCHIVE_CHUNK + 10)
    want = list(log.read(start, end))
    store.backend.write(log.archive_ops(before=3 * ARCHIVE_CHUNK))
    fresh = store.oplog("w/a")
    assert fresh.last_index == 3 * ARCHIVE_CHUNK + 10
    assert list(fresh.read(start, end)) == want
    assert fresh.get(start) == want[0][1]
