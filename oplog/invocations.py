"""Enqueued and scheduled invocations, kept durably until they have run.

Key layout in the ``invocations`` table::

    r \\0 id                                  -> checked JSON record (see below)
    q \\0 u64be(due_ns) u64be(seq) id         -> b""   while the invocation is pending
    k \\0 worker \\0 idempotency key           -> id    (an Idempotency-Key given at enqueue)
    n                                        -> u64be(last seq)

A record is ``{id, seq, worker, function, args, env, idempotency_key, key, due_ns,
created_ns, state, ...}``; ``state`` is queued, running, suspended, ok or failed.
Enqueueing writes the record, its queue key, the seq counter and the key mapping in
one batch; finishing writes the final record and deletes the queue key in one batch.
So after a crash every invocation is either pending (and runs again, under its
``key``, which makes that second run return the first run's recorded result) or
finished, never lost and never run twice. The queue sorts by due time, then by
arrival (seq), which is the order the scheduler runs each worker's invocations in.
"""

from __future__ import annotations

import secrets
import struct
import threading
from collections.abc import Iterator
from typing import Any

from .backends.base import Backend, Op

TABLE = "invocations"
_U64 = struct.Struct(">Q")
_SEQ = b"n"
#: Prefix of derived idempotency keys: an invocation without one runs under this + id.
DERIVED_KEY_PREFIX = "golemish-invocation:"
FINAL_STATES = ("ok", "failed")


def _record_key(inv_id: str) -> bytes:
    return b"r\0" + inv_id.encode()


def _queue_key(rec: dict[str, Any]) -> bytes:
    return b"q\0" + _U64.pack(rec["due_ns"]) + _U64.pack(rec["seq"]) + rec["id"].encode()


def _idem_key(worker: str, key: str) -> bytes:
    return b"k\0" + worker.encode() + b"\0" + key.encode()


class InvocationQueue:
    """The durable queue of one store (``Store.invocations``)."""

    def __init__(self, backend: Backend) -> None:
        from .store import _pack_json, _unpack_json  # one checked-JSON format
        self._b, self._pack, self._unpack = backend, _pack_json, _unpack_json
        self._lock = threading.Lock()  # seq counter and the key mapping

    def enqueue(self, rec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Store a new pending invocation; ``rec`` has worker, function, args, env,
        idempotency_key (or None), due_ns and created_ns. Returns (record, created):
        with an idempotency key seen before on that worker, the earlier record."""
        with self._lock:
            user_key = rec.get("idempotency_key")
            if user_key is not None:
                known = self._b.get(TABLE, _idem_key(rec["worker"], user_key))
                if known is not None:
                    old = self.get(known.decode())
                    if old is not None:
                        return old, False
            raw = self._b.get(TABLE, _SEQ)
            seq = (_U64.unpack(raw)[0] if raw else 0) + 1
            inv_id = f"inv-{seq}-{secrets.token_hex(4)}"
            rec = {**rec, "id": inv_id, "seq": seq, "state": "queued",
                   "key": user_key if user_key is not None else DERIVED_KEY_PREFIX + inv_id}
            ops: list[Op] = [(TABLE, _record_key(inv_id), self._pack(rec)),
                             (TABLE, _queue_key(rec), b""), (TABLE, _SEQ, _U64.pack(seq))]
            if user_key is not None:
                ops.append((TABLE, _idem_key(rec["worker"], user_key), inv_id.encode()))
            self._b.write(ops)
            return rec, True

    def get(self, inv_id: str) -> dict[str, Any] | None:
        raw = self._b.get(TABLE, _record_key(inv_id))
        return None if raw is None else self._unpack(raw, "invocation", inv_id)

    def update(self, rec: dict[str, Any]) -> None:
        """Record a state change of a pending invocation (running, suspended)."""
        self._b.put(TABLE, _record_key(rec["id"]), self._pack(rec))

    def finish(self, rec: dict[str, Any]) -> None:
        """The final record (ok or failed) and the end of its pending state, at once."""
        assert rec["state"] in FINAL_STATES
        self._b.write([(TABLE, _record_key(rec["id"]), self._pack(rec)),
                       (TABLE, _queue_key(rec), None)])

    def pending(self, due_by_ns: int | None = None) -> Iterator[dict[str, Any]]:
        """Pending invocations in run order (due time, then arrival); with
        ``due_by_ns`` only those due by then."""
        for k, _ in self._b.scan(TABLE, b"q\0", b"q\1"):
            if due_by_ns is not None and _U64.unpack_from(k, 2)[0] > due_by_ns:
                return
            rec = self.get(k[18:].decode())
            if rec is not None:
                yield rec

    def pending_count(self) -> int:
        return sum(1 for _ in self._b.scan(TABLE, b"q\0", b"q\1"))

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, oldest first (ids sort by seq only within a digit count)."""
        out = [self._unpack(v, "invocation", k[2:].decode())
               for k, v in self._b.scan(TABLE, b"r\0", b"r\1")]
        yield from sorted(out, key=lambda r: r["seq"])
