"""The `golemish` host module: durable HTTP, sleep, promises, calls to other workers.

Guests declare these in guest_examples/include/golemish.h. Every call goes
through the journal, so each is recorded live and answered from the oplog on
replay. Results of unknown size (HTTP bodies, promise payloads) are written into
memory the guest allocates with its exported ``cabi_realloc``; the guest frees
them. Calls return 0 or a GOLEMISH_ERR_* code. Each import is a thin layer over a
method on Python values (:meth:`GolemishHost.http`, ``new_promise``,
``await_promise``, ``call_wave``, ``new_key``, ``sleep_ms``, ...), which Python
workers call too (runtime/python/api.py): both kinds record the same entries.

The host's only state across invocations is the retry policy; it travels in
snapshot manifests (see :meth:`GolemishHost.state`).
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from golemish.oplog import codec

from ..clock import SYSTEM, Clock
from ..engine import FuncSig, HostFunc, Instance
from ..errors import Interrupted, Suspended
from ..journal import Journal
from . import http

MODULE = "golemish"

OK, ERR_REFUSED, ERR_NETWORK, ERR_INVALID, ERR_UNKNOWN, ERR_FAILED, ERR_NOMEM = range(7)

_REQ = struct.Struct("<9I")     # golemish_http_request_t
_RESP = struct.Struct("<5I")    # golemish_http_response_t
_BYTES = struct.Struct("<II")   # golemish_bytes_t
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")

SIGNATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "http_request": (("i32", "i32"), ("i32",)),
    "sleep_ms": (("i64",), ("i32",)),
    "promise_create": (("i32", "i32"), ("i32",)),
    "promise_await": (("i32", "i32", "i32"), ("i32",)),
    "invoke": (("i32",) * 8, ("i32",)),
    "invoke_wave": (("i32",) * 5, ("i32",)),
    "idempotency_key": (("i32", "i32"), ("i32",)),
    "oplog_index": ((), ("i64",)),
    "atomic_begin": ((), ("i64",)),
    "atomic_end": (("i64",), ("i32",)),
    "set_retry_policy": (("i32", "i32", "i32"), ("i32",)),
}

#: Calls that hand the guest memory it must free, so the guest must export an allocator.
NEEDS_REALLOC = {"http_request", "promise_await", "invoke_wave"}


def signature(name: str) -> FuncSig:
    params, results = SIGNATURES[name]
    return FuncSig(params, results)


class Services(Protocol):
    """What the host API needs from the runtime, kept narrow so the host stays testable."""

    def http_allow(self, worker_id: str) -> list[str]: ...
    def suspend_after_s(self) -> float: ...
    def promise_create(self, worker_id: str, promise_id: str) -> None: ...
    def promise_state(self, promise_id: str) -> tuple[str, bytes] | None: ...
    def call_worker(self, caller: str, callee: str, function: str, args: list[int],
                    key: str) -> list[int]: ...
    def call_worker_wave(self, caller: str, callee: str, call: str, key: str) -> str: ...


@dataclass
class _Fault(Exception):
    code: int


class GolemishHost:
    def __init__(self, worker_id: str, journal: Journal, services: Services,
                 clock: Clock = SYSTEM) -> None:
        self.worker_id = worker_id
        self.clock = clock
        self.journal = journal
        self.services = services
        self.mem: Instance | None = None
        self.retry = http.RetryPolicy()

    def bind(self, instance: Instance) -> None:
        self.mem = instance

    def state(self) -> bytes:
        """Host state a snapshot must carry: the retry policy."""
        r = self.retry
        return codec.encode([r.attempts, r.min_delay_ms, r.max_delay_ms])

    def restore_state(self, blob: bytes) -> None:
        if blob:
            self.retry = http.RetryPolicy(*codec.decode(blob))

    def functions(self) -> list[HostFunc]:
        return [HostFunc(MODULE, name, signature(name), _guarded(getattr(self, name)))
                for name in SIGNATURES]

    # -- memory helpers --------------------------------------------------------
    def _m(self) -> Instance:
        assert self.mem is not None
        return self.mem

    def _read(self, ptr: int, n: int) -> bytes:
        m = self._m()
        if not m.check(ptr, n):
            raise _Fault(ERR_INVALID)
        return m.read(ptr, n)

    def _text(self, ptr: int, n: int) -> str:
        try:
            return self._read(ptr, n).decode("utf-8")
        except UnicodeDecodeError:
            raise _Fault(ERR_INVALID) from None

    def _write(self, ptr: int, data: bytes) -> None:
        m = self._m()
        if not m.check(ptr, len(data)):
            raise _Fault(ERR_INVALID)
        m.write(ptr, data)

    def _give(self, data: bytes) -> int:
        """Copy bytes into a buffer the guest allocates (and will free)."""
        if not data:
            return 0
        ptr = self._m().call_nested("cabi_realloc", [0, 0, 1, len(data)])
        if not ptr:
            raise _Fault(ERR_NOMEM)
        self._write(ptr, data)
        return int(ptr)

    # -- HTTP ----------------------------------------------------------------------
    def http_request(self, req: int, resp: int) -> int:
        f = _REQ.unpack(self._read(req, _REQ.size))
        method = self._text(f[0], f[1]).upper() or "GET"
        url = self._text(f[2], f[3])
        body = self._read(f[6], f[7])
        timeout = (f[8] or 30000) / 1000
        self._read(resp, _RESP.size)  # check the output before any effect
        answer = self.http(method, url, self._text(f[4], f[5]), body, timeout)
        if isinstance(answer, int):
            return answer
        status, text, rbody = answer
        hdr = text.encode()
        self._write(resp, _RESP.pack(status, self._give(hdr), len(hdr), self._give(rbody),
                                     len(rbody)))
        return OK

    def http(self, method: str, url: str, headers_text: str, body: bytes, timeout_s: float
             ) -> tuple[int, str, bytes] | int:
        """One durable request: (status, ``Name: value`` header lines, body), or an
        ERR_* code. The C call and the Python guest library both come here, so both
        record the same entries."""
        try:
            # A malformed request depends only on the guest's arguments: refused before
            # anything is recorded, and refused alike on replay.
            headers = http.parse_headers(headers_text)
            prepared = http.prepare(method, url, headers)
        except http.HttpInvalid:
            return ERR_INVALID
        request = codec.encode([method, url, [list(h) for h in headers], body])

        def perform(key: str) -> bytes:
            try:
                status, rheaders, rbody = http.request(
                    prepared, [("Idempotency-Key", key)], body,
                    allow=self.services.http_allow(self.worker_id), timeout_s=timeout_s,
                    retry=self.retry)
            except http.HttpRefused as e:
                return codec.encode(["refused", str(e)])
            except http.HttpFailed as e:
                return codec.encode(["failed", str(e)])
            text = "".join(f"{k}: {v}\n" for k, v in rheaders)
            return codec.encode(["ok", status, text, rbody])

        answer = codec.decode(self.journal.effect("http_request", request, perform))
        if answer[0] != "ok":
            return ERR_REFUSED if answer[0] == "refused" else ERR_NETWORK
        _, status, text, rbody = answer
        return status, text, rbody

    def set_retry_policy(self, attempts: int, min_delay_ms: int, max_delay_ms: int) -> int:
        if attempts < 1 or min_delay_ms < 0 or max_delay_ms < min_delay_ms:
            return ERR_INVALID
        self.retry = http.RetryPolicy(attempts, min_delay_ms, max_delay_ms)
        return OK

    # -- time ----------------------------------------------------------------------
    def sleep_ms(self, ms: int) -> int:
        if ms < 0:
            return ERR_INVALID
        # Committed before a real wait: a kill during the sleep then resumes the same
        # invocation for what is left of it, instead of losing it.
        wake = _U64.unpack(self.journal.host_call(
            "sleep", _U64.pack(ms), lambda: _U64.pack(self.clock.time_ns() + ms * 1_000_000),
            commit=ms > 0))[0]
        remaining = (wake - self.clock.time_ns()) / 1e9
        if remaining > self.services.suspend_after_s():
            raise Suspended(self.worker_id, until_ns=wake)
        if remaining > 0:
            self.clock.sleep(remaining)
        return OK

    # -- promises --------------------------------------------------------------------
    def promise_create(self, buf: int, cap: int) -> int:
        """Writes the new promise's id (at most 128 bytes) to buf; returns its length."""
        self._read(buf, cap)
        pid = self.new_promise().encode()
        if len(pid) > cap:
            return -ERR_INVALID
        self._write(buf, pid)
        return len(pid)

    def new_promise(self) -> str:
        """Create a promise (recorded); its id."""
        def create() -> bytes:
            pid = f"{self.worker_id}#{secrets.token_hex(4)}"
            self.services.promise_create(self.worker_id, pid)
            return pid.encode()

        # Committed at once: the promise is in the store, where anyone may complete it.
        return self.journal.host_call("promise_create", b"", create, commit=True).decode()

    def promise_await(self, id_ptr: int, id_len: int, out: int) -> int:
        pid = self._text(id_ptr, id_len)
        self._read(out, _BYTES.size)
        payload = self.await_promise(pid)
        if payload is None:
            return ERR_UNKNOWN
        self._write(out, _BYTES.pack(self._give(payload), len(payload)))
        return OK

    def await_promise(self, pid: str) -> bytes | None:
        """The promise's payload (recorded), None for an unknown promise; suspends the
        worker (raises Suspended) until it is completed."""
        def check() -> bytes:
            state = self.services.promise_state(pid)
            if state is None:
                return codec.encode(["unknown"])
            if state[0] != "completed":
                raise Suspended(self.worker_id, promise=pid)  # nothing recorded yet
            return codec.encode(["ok", state[1]])

        answer = codec.decode(self.journal.host_call("promise_await", codec.encode(pid), check))
        return answer[1] if answer[0] == "ok" else None

    # -- other workers ----------------------------------------------------------------
    def invoke(self, w_ptr: int, w_len: int, f_ptr: int, f_len: int, args: int, nargs: int,
               results: int, nresults: int) -> int:
        callee = self._text(w_ptr, w_len)
        function = self._text(f_ptr, f_len)
        if nargs < 0 or nresults < 0:
            return ERR_INVALID
        values = [_I64.unpack_from(self._read(args, 8 * nargs), 8 * i)[0] for i in range(nargs)]
        self._read(results, 8 * nresults)
        request = codec.encode([callee, function, values])

        def perform(key: str) -> bytes:
            try:
                out = self.services.call_worker(self.worker_id, callee, function, values, key)
            except LookupError as e:
                return codec.encode(["unknown", str(e)])
            except Interrupted:
                raise  # a signal stopped the callee: it stops this invocation too
            except Exception as e:  # the callee failed: the caller decides what to do
                return codec.encode(["failed", f"{type(e).__name__}: {e}"])
            return codec.encode(["ok", out])

        answer = codec.decode(self.journal.effect("invoke", request, perform))
        if answer[0] != "ok":
            return ERR_UNKNOWN if answer[0] == "unknown" else ERR_FAILED
        out = answer[1][:nresults]
        self._write(results, b"".join(_I64.pack(v) for v in out))
        return OK

    def invoke_wave(self, w_ptr: int, w_len: int, c_ptr: int, c_len: int, out: int) -> int:
        """A typed call to a worker with a WIT interface: ``name(args…)`` in WAVE in,
        the result's WAVE text out (guest-allocated; empty for no result)."""
        callee = self._text(w_ptr, w_len)
        call = self._text(c_ptr, c_len)
        self._read(out, _BYTES.size)
        code, text = self.call_wave(callee, call)
        if code != OK:
            return code
        data = text.encode()
        self._write(out, _BYTES.pack(self._give(data), len(data)))
        return OK

    def call_wave(self, callee: str, call: str) -> tuple[int, str]:
        """Invoke ``callee`` with a WAVE call, exactly once: (OK, result WAVE text) or
        (ERR_UNKNOWN / ERR_FAILED, the reason)."""
        def perform(key: str) -> bytes:
            try:
                text = self.services.call_worker_wave(self.worker_id, callee, call, key)
            except LookupError as e:
                return codec.encode(["unknown", str(e)])
            except Interrupted:
                raise  # a signal stopped the callee: it stops this invocation too
            except Exception as e:
                return codec.encode(["failed", f"{type(e).__name__}: {e}"])
            return codec.encode(["ok", text])

        answer = codec.decode(self.journal.effect("invoke", codec.encode([callee, call]),
                                                  perform))
        if answer[0] != "ok":
            return (ERR_UNKNOWN if answer[0] == "unknown" else ERR_FAILED), answer[1]
        return OK, answer[1]

    # -- small calls --------------------------------------------------------------------
    def idempotency_key(self, buf: int, cap: int) -> int:
        if cap < 32:
            return -ERR_INVALID
        self._read(buf, 32)
        key = self.new_key().encode()
        self._write(buf, key)
        return len(key)

    def new_key(self) -> str:
        """A fresh idempotency key (32 hex characters), recorded."""
        return self.journal.host_call("idempotency_key", b"",
                                      lambda: secrets.token_hex(16).encode()).decode()

    def oplog_index(self) -> int:
        return self.journal.position()

    def atomic_begin(self) -> int:
        return self.journal.atomic_begin()

    def atomic_end(self, region: int) -> int:
        self.journal.atomic_end(region)
        return OK


def _guarded(fn: Callable[..., int]) -> Callable[..., int]:
    """Bad guest pointers become an error code instead of a host exception."""
    def call(*args: int) -> int:
        try:
            return fn(*args)
        except _Fault as f:
            return f.code
    call.__name__ = fn.__name__
    return call
