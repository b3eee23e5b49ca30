"""One worker's oplog: dense entries 1..n, their recorded length, the archive.

Layout (backend tables; see store.py for the rest)::

    oplog    worker id \\0 u64be(index)   -> encoded entry (see entries)
    archive  worker id \\0 u64be(first)   -> a zstd chunk of ARCHIVE_CHUNK entries
    meta     b"head\\0" worker id        -> u64be(last index), the recorded length

Every batch that writes entries writes the worker's head with them, so the head
is the truth about how long an oplog is: a scan that ends before it (a lost table
file, a block RocksDB could not read) is corruption, never a shorter history.

Entries may wait in memory (:meth:`WorkerOplog.buffer`) until the next
:meth:`WorkerOplog.commit`, which writes all of them and the head in one batch:
the journal commits where something leaves the process, so a crash loses only
entries nobody outside has seen. Other readers of the store see the oplog as of
the last commit, never a part of one; this object's own reads include the
waiting entries, so the worker sees one oplog whatever has been committed.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterator, Sequence

import zstandard

from . import codec
from .backends.base import Backend, Op
from .entries import (
    FORMAT_VERSION, Entry, HostCall, HostCallEncoder, decode_entry, encode_entry, pack_header,
    peek_kind,
)
from .errors import CorruptionError

_U64 = struct.Struct(">Q")
_HOST_CALL = HostCall.KIND
_crc32 = zlib.crc32
_CRC = struct.Struct("<I")
#: Entries per archive chunk.
ARCHIVE_CHUNK = 1024
#: Waiting entries (or their bytes) past which :meth:`WorkerOplog.buffer` commits by
#: itself, so that a long invocation with no commit point holds bounded memory.
MAX_PENDING_ENTRIES = 4096
MAX_PENDING_BYTES = 8 << 20


HEAD_PREFIX = b"head\0"


def head_key(worker_id: str) -> bytes:
    """Where a worker's recorded last oplog index lives (table ``meta``)."""
    return HEAD_PREFIX + worker_id.encode()


class WorkerOplog:
    """The append-only oplog of one worker. Entries are indexed 1..n densely.

    Its length is recorded (the *head*, written with every append): opening an oplog
    whose newest stored entry is not the recorded one, or reading one that ends
    early, raises CorruptionError instead of returning a shorter history.
    """

    def __init__(self, backend: Backend, worker_id: str, *, require_head: bool = True) -> None:
        self._b = backend
        self.worker_id = worker_id
        self._prefix = worker_id.encode() + b"\0"
        #: key of an index: pack(prefix, index), one call instead of a pack and a concat.
        self._pack_key = struct.Struct(f">{len(self._prefix)}sQ").pack
        self._end = worker_id.encode() + b"\1"
        self._head = head_key(worker_id)
        # The head and the newest entry are two reads; another thread's append (both in
        # one batch) may land between them. Reading the head again tells: if it did not
        # move, no append committed in between and the pair is consistent.
        raw_head = backend.get("meta", self._head)
        while True:
            # Archiving never takes the newest entries, so the last index is always live.
            last = next(backend.scan("oplog", self._prefix, self._end, reverse=True), None)
            again = backend.get("meta", self._head)
            if again == raw_head:
                break
            raw_head = again
        self.stored_last = self._index_of(last[0]) if last else 0
        #: The recorded length; None for an oplog written before heads were kept.
        self.recorded_last: int | None = (
            None if raw_head is None or len(raw_head) != 8 else _U64.unpack(raw_head)[0])
        self._damage: CorruptionError | None = None
        if raw_head is not None and self.recorded_last is None:
            self._damage = CorruptionError("oplog head", worker_id, "undecodable",
                                           hint="run `golemish store check`")
        elif self.recorded_last is not None and self.recorded_last != self.stored_last:
            self._damage = length_mismatch(worker_id, self.recorded_last, self.stored_last)
        elif self.recorded_last is None and self.stored_last and require_head:
            self._damage = CorruptionError(
                "oplog head", worker_id, "missing: the oplog's length is not recorded",
                hint="run `golemish store check`")
        self._last = self.stored_last if self.recorded_last is None else self.recorded_last
        #: The last committed index; entries after it up to _last wait in _pending.
        self._durable = self._last
        #: The index at which buffering commits by itself (MAX_PENDING_ENTRIES waiting).
        self._commit_at = self._durable + MAX_PENDING_ENTRIES
        #: Ops of entries not written yet (and what must be written with them).
        self._pending: list[Op] = []
        self._pending_bytes = 0
        self._stats = getattr(backend, "stats", None)
        self._encoder = HostCallEncoder()
        self._heads = self._encoder.heads

    @property
    def damage(self) -> CorruptionError | None:
        """Why this oplog cannot be trusted (its length disagrees with the record), or None."""
        return self._damage

    def _intact(self) -> None:
        if self._damage is not None:
            raise self._damage

    def head_op(self, index: int) -> tuple[str, bytes, bytes]:
        """The op recording ``index`` as the last one; batch it with the entry's op."""
        return ("meta", self._head, _U64.pack(index))

    def _key(self, index: int) -> bytes:
        return self._pack_key(self._prefix, index)

    def _index_of(self, key: bytes) -> int:
        return _U64.unpack_from(key, len(self._prefix))[0]

    @property
    def last_index(self) -> int:
        """Index of the newest entry; 0 when the oplog is empty."""
        return self._last

    def append(self, entry: Entry) -> int:
        """Append durably (with every waiting entry) and return the new entry's index.

        If the write fails, the entry is not appended (the waiting ones still wait)."""
        mark = (len(self._pending), self._last, self._pending_bytes)
        index = self.buffer(entry)
        self._commit_or_undo(mark)
        return index

    def append_host_call(self, name_utf8: bytes, request: bytes, response: bytes) -> int:
        """:meth:`append` of a HostCall entry, skipping the entry object."""
        mark = (len(self._pending), self._last, self._pending_bytes)
        index = self.buffer_host_call(name_utf8, request, response)
        self._commit_or_undo(mark)
        return index

    def _commit_or_undo(self, mark: tuple[int, int, int]) -> None:
        try:
            self.commit()
        except BaseException:
            if self._durable <= mark[1]:  # (not written by buffer's own commit)
                del self._pending[mark[0]:]
                self._last, self._pending_bytes = mark[1], mark[2]
            raise

    def buffer(self, entry: Entry, extra: Sequence[Op] = ()) -> int:
        """Add an entry that waits in memory for the next commit; returns its index.

        ``extra`` ops are written in the same batch as the entry (an idempotency key).
        """
        self._intact()
        return self._add(encode_entry(entry), extra)

    def buffer_host_call(self, name: str | bytes, request: bytes, response: bytes) -> int:
        """:meth:`buffer` of a HostCall entry, skipping the entry object (the hot path:
        one per recorded host call). ``name`` as str or UTF-8; the same bytes either way."""
        if self._damage is not None:
            raise self._damage
        # HostCallEncoder.encode, inlined.
        cached = self._heads.get((name, request))
        if cached is None or cached[0] != len(response):
            cached = self._encoder.head(name, request, len(response))
        raw = pack_header(FORMAT_VERSION, _HOST_CALL, _crc32(response, cached[2])) \
            + cached[1] + response
        index = self._last = self._last + 1
        self._pending.append(("oplog", self._pack_key(self._prefix, index), raw))
        self._pending_bytes += len(raw)
        if index >= self._commit_at or self._pending_bytes >= MAX_PENDING_BYTES:
            self.commit()
        return index

    def _add(self, raw: bytes, extra: Sequence[Op]) -> int:
        index = self._last + 1
        self._pending.append(("oplog", self._pack_key(self._prefix, index), raw))
        if extra:
            self._pending.extend(extra)
        self._last = index
        self._pending_bytes += len(raw)
        if index >= self._commit_at or self._pending_bytes >= MAX_PENDING_BYTES:
            self.commit()
        return index

    @property
    def pending(self) -> int:
        """Entries waiting in memory for a commit."""
        return self._last - self._durable

    @property
    def durable_index(self) -> int:
        """The last index committed to the store (what other readers see)."""
        return self._durable

    def commit(self, extra: Sequence[Op] = ()) -> int:
        """Write the waiting entries, the head and ``extra`` in one batch; returns the
        number of entries written (0, and nothing written, when none wait and no
        ``extra`` is given)."""
        if self._last == self._durable and not extra:
            return 0
        self._intact()
        t0 = time.perf_counter()
        n, last = self._last - self._durable, self._last
        # The batch is the waiting list itself (replaced by committed()): no copy of it.
        batch, mark = self._pending, len(self._pending)
        batch.append(("meta", self._head, _U64.pack(last)))
        batch.extend(extra)
        try:
            self._b.write(batch)
        except BaseException:
            del batch[mark:]  # they wait on, as before
            raise
        self.committed(last)
        if self._stats is not None and n:
            self._stats.committed(n, time.perf_counter() - t0)
        return n

    def pending_ops(self) -> list[Op]:
        """The waiting entries as ops, for a batch that writes them with other things.

        Such a batch carries :meth:`head_op` of its last index; call :meth:`committed`
        once it is written.
        """
        return list(self._pending)

    def append_ops(self, entry: Entry) -> tuple[int, tuple[str, bytes, bytes]]:
        """An append as a batch op, for callers that commit it with other writes.

        The index follows the waiting entries: the batch must carry
        :meth:`pending_ops` too, and :meth:`head_op` of the index. Call
        :meth:`committed` after the batch is written.
        """
        self._intact()
        index = self._last + 1
        return index, ("oplog", self._key(index), encode_entry(entry))

    def committed(self, index: int) -> None:
        """A batch recording ``index`` as the head (and every waiting entry) is written."""
        self._last = self._durable = index
        self._commit_at = index + MAX_PENDING_ENTRIES
        self._pending = []
        self._pending_bytes = 0

    def _waiting(self, start: int, stop: int | None) -> Iterator[tuple[int, bytes]]:
        """Waiting entries with start <= index < stop (None: no bound), in order."""
        for table, key, value in self._pending:
            if table == "oplog" and key.startswith(self._prefix) and value is not None:
                index = self._index_of(key)
                if start <= index and (stop is None or index < stop):
                    yield index, value

    def archive_span(self) -> tuple[int, int]:
        """[lo, hi) of the archived indexes; (2, 2) when nothing is archived.

        The Create entry (index 1) is never archived: every recovery needs it.
        """
        first = next(self._b.scan("archive", self._prefix, self._end), None)
        if first is None:
            return 2, 2
        last = next(self._b.scan("archive", self._prefix, self._end, reverse=True))
        return self._index_of(first[0]), self._index_of(last[0]) + ARCHIVE_CHUNK

    def _archived(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """Archived entries in [start, end), from the chunks overlapping it."""
        first_chunk = max(2, start - (start - 2) % ARCHIVE_CHUNK)
        for k, blob in self._b.scan("archive", self._key(first_chunk), self._key(end)):
            first = self._index_of(k)
            for i, raw in enumerate(_unpack_chunk(blob, self.worker_id, first)):
                if start <= first + i < end:
                    yield first + i, raw

    def _live(self, a: int, b: int | None) -> Iterator[tuple[int, bytes]]:
        if b is None or a < b:
            stop = self._end if b is None else self._key(b)
            for k, v in self._b.scan("oplog", self._key(a), stop):
                yield self._index_of(k), v

    def raw(self, start: int = 1, end: int | None = None, *,
            check_length: bool = True) -> Iterator[tuple[int, bytes]]:
        """(index, stored bytes) for start <= index <= end, not verified.

        Raises CorruptionError when the entries end before the recorded length (the
        density of what is yielded is :meth:`read`'s to check); ``check_length=False``
        leaves that to the caller (`store check` reports it itself).
        """
        if check_length:
            self._intact()
        stop = None if end is None else end + 1
        lo, hi = self.archive_span()
        last = 0
        for item in self._live(start, lo if stop is None else min(lo, stop)):  # Create
            last = item[0]
            yield item
        if lo < hi:
            for item in self._archived(max(start, lo), hi if stop is None else min(hi, stop)):
                last = item[0]
                yield item
        for item in self._live(max(start, hi), stop):
            last = item[0]
            yield item
        for item in self._waiting(max(start, last + 1, self._durable + 1), stop):
            last = item[0]
            yield item
        if check_length:  # the recorded length, kept up to date by our own appends
            want = self._last if end is None else min(end, self._last)
            if last < want and start <= want:
                raise length_mismatch(self.worker_id, self._last, max(last, start - 1))

    def archive_ops(self, before: int) -> list[tuple[str, bytes, bytes | None]]:
        """Ops moving whole chunks of live entries with 2 <= index < ``before`` to the archive.

        Only full chunks move, so the archive is never a litter of tiny pieces.
        """
        _, first = self.archive_span()
        ops: list[tuple[str, bytes, bytes | None]] = []
        while before - first >= ARCHIVE_CHUNK:
            chunk = [v for _, v in self._b.scan("oplog", self._key(first),
                                                 self._key(first + ARCHIVE_CHUNK))]
            if len(chunk) != ARCHIVE_CHUNK:
                raise CorruptionError("oplog", self.worker_id, "gap in entries to archive",
                                      index=first)
            ops.append(("archive", self._key(first), _pack_chunk(chunk)))
            ops.extend(("oplog", self._key(i), None) for i in range(first, first + ARCHIVE_CHUNK))
            first += ARCHIVE_CHUNK
        return ops

    def read(self, start: int = 1, end: int | None = None) -> Iterator[tuple[int, Entry]]:
        """Verified, decoded entries for start <= index <= end.

        Raises CorruptionError on a damaged entry or a gap in the indexes.
        """
        for index, raw in self._dense(start, end):
            yield index, decode_entry(raw, key=self.worker_id, index=index)

    def read_kinds(self, kinds: frozenset[int], start: int = 1) -> Iterator[tuple[int, Entry]]:
        """:meth:`read` of the entries of these kinds only: the others are skimmed by
        their kind byte, not decoded (a gap in the indexes is still damage)."""
        for index, raw in self._dense(start, None):
            if peek_kind(raw) in kinds:
                yield index, decode_entry(raw, key=self.worker_id, index=index)

    def _dense(self, start: int, end: int | None) -> Iterator[tuple[int, bytes]]:
        """:meth:`raw`, raising CorruptionError at a gap in the indexes."""
        if start < 1:
            raise ValueError("oplog indexes start at 1")
        expected = start
        for index, raw in self.raw(start, end):
            if index != expected:
                raise CorruptionError("oplog", self.worker_id, f"missing entry {expected}",
                                      index=expected, hint="run `golemish store check`")
            yield index, raw
            expected += 1

    def get(self, index: int) -> Entry | None:
        if self._durable < index <= self._last:
            raw = next((r for _, r in self._waiting(index, index + 1)), None)
            return None if raw is None else decode_entry(raw, key=self.worker_id, index=index)
        raw = self._b.get("oplog", self._key(index))
        if raw is None and 1 <= index <= self._last:
            raw = next((r for _, r in self.raw(index, index)), None)
        return None if raw is None else decode_entry(raw, key=self.worker_id, index=index)

    def kinds(self, start: int = 1) -> Iterator[tuple[int, int]]:
        """(index, kind) from ``start`` on, skimming headers only: planners use this."""
        for index, raw in self.raw(start):
            yield index, peek_kind(raw)

    def delete_ops(self) -> list[tuple[str, bytes, None]]:
        return [(t, k, None) for t in ("oplog", "archive")
                for k, _ in self._b.scan(t, self._prefix, self._end)] + [
                    ("meta", self._head, None)]


def length_mismatch(worker_id: str, recorded: int, stored: int) -> CorruptionError:
    """The error for an oplog whose stored entries end elsewhere than recorded."""
    if stored < recorded:
        detail = (f"{recorded} entries were recorded but the stored entries end at index "
                  f"{stored}: entries {stored + 1}..{recorded} are lost")
    else:
        detail = (f"{recorded} entries were recorded but entries up to index {stored} "
                  "are stored")
    return CorruptionError("oplog", worker_id, detail, index=stored + 1,
                           hint="the worker is not rolled back; run `golemish store check`")


def _pack_chunk(entries: list[bytes]) -> bytes:
    body = zstandard.ZstdCompressor(level=3).compress(codec.encode(entries))
    return _CRC.pack(zlib.crc32(body)) + body


def _unpack_chunk(blob: bytes, worker_id: str, first: int) -> list[bytes]:
    body = blob[_CRC.size:]
    if len(blob) < _CRC.size or _CRC.unpack_from(blob)[0] != zlib.crc32(body):
        raise CorruptionError("archived oplog chunk", worker_id, "checksum mismatch",
                              index=first, hint="run `golemish store check`")
    try:
        entries = codec.decode(zstandard.ZstdDecompressor().decompress(body))
    except (codec.DecodeError, zstandard.ZstdError) as e:
        raise CorruptionError("archived oplog chunk", worker_id, f"undecodable: {e}",
                              index=first) from None
    return entries
