"""Oplog entry types and their stored form.

Stored form of one entry::

    u8 format version | u8 kind | u32 LE crc32(version, kind, payload) | payload

``payload`` is the entry's fields as a list in :mod:`codec` encoding. The
checksum covers everything but itself, so a flipped bit anywhere is caught
before a wrong value can reach a guest.

Typed wasm values (arguments and results) are stored as ``[type, value]``
pairs where type is one of ``i32 i64 f32 f64``; floats are stored as binary64,
which represents every f32 exactly.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from . import codec
from .errors import CorruptionError

FORMAT_VERSION = 1
_HEADER = struct.Struct("<BBI")

#: A wasm value with its type name, e.g. ("i64", 5).
TypedValue = tuple[str, "int | float"]


@dataclass(frozen=True, slots=True)
class Entry:
    """Base of every oplog entry. Subclasses set KIND and declare fields."""

    KIND: ClassVar[int] = 0
    NAME: ClassVar[str] = "entry"

    def summary(self) -> str:
        """One human-readable line for `golemish worker oplog`."""
        return ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.NAME}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bytes):
                try:
                    v = v.decode("utf-8")
                except UnicodeDecodeError:
                    v = v.hex()
            out[f.name] = v
        return out


def _fmt_values(values: list[TypedValue] | tuple[TypedValue, ...]) -> str:
    # WAVE text (typed interfaces) is shown as is; numbers with their core type.
    return ", ".join(str(v) if t == "wave" else f"{v!r}:{t}" for t, v in values)


def _payload(data: bytes, limit: int = 70) -> str:
    """A readable rendering of a host call's encoded request or answer."""
    try:
        value = codec.decode(data)
    except codec.DecodeError:
        return data.hex()[:limit] or "-"

    def show(v: Any) -> str:
        if isinstance(v, bytes):
            return repr(v[:24]) if len(v) <= 24 else f"<{len(v)} bytes>"
        if isinstance(v, list):
            return "[" + ", ".join(show(x) for x in v) + "]"
        return repr(v) if isinstance(v, str) else str(v)

    text = show(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _preview(data: bytes, limit: int = 60) -> str:
    text = data.decode("utf-8", "replace").rstrip("\n")
    return repr(text if len(text) <= limit else text[:limit] + "…")


@dataclass(frozen=True, slots=True)
class Create(Entry):
    """Index 1 of every oplog: what the worker is and the inputs fixed for its life."""

    KIND: ClassVar[int] = 1
    NAME: ClassVar[str] = "create"
    component: str
    version: int
    component_hash: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    timestamp_ns: int = 0

    def summary(self) -> str:
        return f"{self.component} v{self.version} ({self.component_hash[:12]})"


@dataclass(frozen=True, slots=True)
class InvokeStart(Entry):
    """An invocation of an export begins."""

    KIND: ClassVar[int] = 2
    NAME: ClassVar[str] = "invoke"
    function: str
    params: tuple[TypedValue, ...] = ()
    idempotency_key: str | None = None
    timestamp_ns: int = 0
    #: Limits this invocation ran under, when they differ from those the worker was
    #: created with (0: unchanged). Replay runs it under the same ones.
    memory_limit: int = 0
    time_limit: float = 0.0

    def summary(self) -> str:
        key = f" key={self.idempotency_key}" if self.idempotency_key else ""
        limits = (f" limits={self.memory_limit >> 20}MiB,{self.time_limit:g}s"
                  if self.memory_limit or self.time_limit else "")
        return f"{self.function}({_fmt_values(self.params)}){key}{limits}"


@dataclass(frozen=True, slots=True)
class InvokeEnd(Entry):
    """The invocation that began last returned these results."""

    KIND: ClassVar[int] = 3
    NAME: ClassVar[str] = "return"
    results: tuple[TypedValue, ...] = ()
    duration_ns: int = 0

    def summary(self) -> str:
        return f"-> ({_fmt_values(self.results)}) in {self.duration_ns / 1e6:.3f} ms"


@dataclass(frozen=True, slots=True)
class InvokeFailed(Entry):
    """The invocation that began last failed; the worker keeps its state from before it."""

    KIND: ClassVar[int] = 4
    NAME: ClassVar[str] = "failed"
    reason: str = "trap"  # trap | time-limit | memory-limit | exit | host-error
    message: str = ""

    def summary(self) -> str:
        return f"{self.reason}: {self.message}"


#: Host calls whose request and answer are codec-encoded (shown decoded).
_STRUCTURED = {"http_request", "invoke", "promise_await"}


@dataclass(frozen=True, slots=True)
class HostCall(Entry):
    """A non-deterministic host call: what the guest asked and what it was told."""

    KIND: ClassVar[int] = 5
    NAME: ClassVar[str] = "host-call"
    name: str
    request: bytes = b""
    response: bytes = b""

    def summary(self) -> str:
        if self.name in _STRUCTURED:
            req = f" {_payload(self.request)}" if self.request else ""
            return f"{self.name}{req} -> {_payload(self.response)}"
        return f"{self.name} req={self.request.hex() or '-'} resp={self.response.hex()[:48] or '-'}"


@dataclass(frozen=True, slots=True)
class Log(Entry):
    """Bytes the guest wrote to stdout (1) or stderr (2)."""

    KIND: ClassVar[int] = 6
    NAME: ClassVar[str] = "log"
    stream: int
    data: bytes

    def summary(self) -> str:
        return f"{'stdout' if self.stream == 1 else 'stderr'} {_preview(self.data)}"


@dataclass(frozen=True, slots=True)
class Snapshot(Entry):
    """Memory and globals were captured here; the manifest is stored under this index.

    Written in one batch with the manifest and its new pages (DESIGN.md invariant 3).
    """

    KIND: ClassVar[int] = 7
    NAME: ClassVar[str] = "snapshot"
    memory_size: int
    page_size: int
    changed_pages: int = 0
    stored_bytes: int = 0
    tracker: str = ""
    duration_ns: int = 0

    def summary(self) -> str:
        return (f"{self.memory_size >> 10} KiB in {self.page_size >> 10} KiB pages, "
                f"{self.changed_pages} changed, {self.stored_bytes:,} bytes stored "
                f"({self.tracker}, {self.duration_ns / 1e6:.2f} ms)")


@dataclass(frozen=True, slots=True)
class EffectBegin(Entry):
    """A call with an outside effect (HTTP, a call to another worker) is about to start.

    Written before the effect runs. A Begin with no HostCall answer after it tells
    recovery the effect may already have happened: it is sent again with the same
    idempotency key, which the receiver uses to deduplicate.
    """

    KIND: ClassVar[int] = 8
    NAME: ClassVar[str] = "effect"
    name: str
    request: bytes = b""
    idempotency_key: str = ""

    def summary(self) -> str:
        return f"{self.name} {_payload(self.request)} key={self.idempotency_key[:12]}…"


@dataclass(frozen=True, slots=True)
class AtomicBegin(Entry):
    """The guest opened an atomic region: a crash inside it re-runs the whole region."""

    KIND: ClassVar[int] = 9
    NAME: ClassVar[str] = "atomic-begin"


@dataclass(frozen=True, slots=True)
class AtomicEnd(Entry):
    """The atomic region begun at ``begin`` is complete."""

    KIND: ClassVar[int] = 10
    NAME: ClassVar[str] = "atomic-end"
    begin: int = 0

    def summary(self) -> str:
        return f"closes the region begun at {self.begin}"


@dataclass(frozen=True, slots=True)
class Rewind(Entry):
    """Entries after ``to`` up to this one are void: a crash cut an atomic region short
    and recovery re-ran it from its start. Kept for audit, skipped by replay."""

    KIND: ClassVar[int] = 11
    NAME: ClassVar[str] = "rewind"
    to: int = 0

    def summary(self) -> str:
        return f"entries after {self.to} are void: the atomic region there was re-run"


@dataclass(frozen=True, slots=True)
class Revert(Entry):
    """The user reverted the worker to its state at ``to``: entries after ``to`` up to
    this one are void. They stay for inspection; every later recovery skips them.
    ``effects`` counts the outside effects (HTTP, worker calls) that were not undone."""

    KIND: ClassVar[int] = 12
    NAME: ClassVar[str] = "revert"
    to: int = 0
    invocations: int = 0
    effects: int = 0

    def summary(self) -> str:
        extra = f", {self.effects} outside effect(s) not undone" if self.effects else ""
        return (f"reverted to index {self.to}: {self.invocations} invocation(s) "
                f"undone{extra}")


@dataclass(frozen=True, slots=True)
class Update(Entry):
    """From here on the worker runs ``version``. ``mode`` auto: the whole oplog replayed
    on it without divergence; manual: ``state`` is what the old version's
    ``golemish_save`` returned and the new one's ``golemish_load`` took."""

    KIND: ClassVar[int] = 13
    NAME: ClassVar[str] = "update"
    version: int
    component_hash: str
    mode: str = "auto"
    from_version: int = 0
    state: bytes = b""

    def summary(self) -> str:
        extra = f", {len(self.state):,} bytes of saved state" if self.mode == "manual" else ""
        return (f"v{self.from_version} -> v{self.version} ({self.mode}, "
                f"{self.component_hash[:12]}){extra}")


@dataclass(frozen=True, slots=True)
class UpdateFailed(Entry):
    """An update to ``version`` was tried and refused; the worker stayed as it was."""

    KIND: ClassVar[int] = 14
    NAME: ClassVar[str] = "update-failed"
    version: int
    mode: str = "auto"
    message: str = ""

    def summary(self) -> str:
        return f"to v{self.version} ({self.mode}): {self.message}"


#: Entries that record what happened to the worker, not guest execution: replay passes
#: over them.
BOOKKEEPING: tuple[type[Entry], ...] = (Snapshot, Update, UpdateFailed)


ENTRY_TYPES: dict[int, type[Entry]] = {
    t.KIND: t for t in (Create, InvokeStart, InvokeEnd, InvokeFailed, HostCall, Log, Snapshot,
                        EffectBegin, AtomicBegin, AtomicEnd, Rewind, Revert, Update,
                        UpdateFailed)
}


def _tupled(v: Any) -> Any:
    return tuple(_tupled(x) for x in v) if isinstance(v, list) else v


def _is_typed_value(v: Any) -> bool:
    return (type(v) is tuple and len(v) == 2 and type(v[0]) is str
            and type(v[1]) in (int, float, str))


#: What each declared field type accepts once decoded: a payload that decodes but
#: does not fit its entry (a checksum-valid forgery, or a bug) is corruption too.
_FIELD_CHECKS: dict[str, Any] = {
    "str": lambda v: type(v) is str,
    "int": lambda v: type(v) is int,
    "bytes": lambda v: type(v) is bytes,
    "float": lambda v: type(v) is float,
    "str | None": lambda v: v is None or type(v) is str,
    "tuple[str, ...]": lambda v: type(v) is tuple and all(type(x) is str for x in v),
    "tuple[tuple[str, str], ...]": lambda v: type(v) is tuple and all(
        type(x) is tuple and len(x) == 2 and type(x[0]) is type(x[1]) is str for x in v),
    "tuple[TypedValue, ...]": lambda v: type(v) is tuple and all(map(_is_typed_value, v)),
}


_FIELD_NAMES: dict[type[Entry], tuple[str, ...]] = {
    t: tuple(f.name for f in fields(t)) for t in ENTRY_TYPES.values()
}
_CHECKS: dict[type[Entry], tuple[tuple[str, Any], ...]] = {
    t: tuple((f.name, _FIELD_CHECKS[f.type]) for f in fields(t)) for t in ENTRY_TYPES.values()
}


#: Fields added to an entry type after its first release: left out of the stored form
#: while they hold their defaults, so such entries read exactly as before (also by
#: versions that do not know the fields); decoding fills them in with the defaults.
_OPTIONAL_TAIL: dict[type[Entry], tuple[tuple[str, Any], ...]] = {
    InvokeStart: (("memory_limit", 0), ("time_limit", 0.0)),
}


def encode_entry(entry: Entry) -> bytes:
    """Entry -> stored bytes (header with checksum, then payload)."""
    if type(entry) is HostCall:
        return encode_host_call(entry.name.encode(), entry.request, entry.response)
    values = [getattr(entry, n) for n in _FIELD_NAMES[type(entry)]]
    optional = _OPTIONAL_TAIL.get(type(entry), ())
    for name, default in reversed(optional):
        if values[-1] != default or name != _FIELD_NAMES[type(entry)][len(values) - 1]:
            break
        values.pop()
    payload = codec.encode(values)
    head = bytes((FORMAT_VERSION, entry.KIND))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return _HEADER.pack(FORMAT_VERSION, entry.KIND, crc) + payload


def encode_host_call(name_utf8: bytes, request: bytes, response: bytes) -> bytes:
    """``encode_entry(HostCall(...))`` without building the entry: the journal's hot path."""
    payload = codec.encode_bytes_triple(name_utf8, request, response)
    return _HEADER.pack(FORMAT_VERSION, HostCall.KIND,
                        zlib.crc32(payload, _HOST_CALL_SEED)) + payload


_HOST_CALL_SEED = zlib.crc32(bytes((FORMAT_VERSION, HostCall.KIND)))


class HostCallEncoder:
    """:func:`encode_host_call` with everything but the response of each entry cached.

    Clocks and randomness repeat a handful of (name, request) pairs millions of
    times, with responses of one length: the bytes before the response (the name,
    the request and the response's length) and their checksum are kept, and only
    the response is checksummed per call (CRC32 continues over the parts). Gives
    the same bytes as :func:`encode_host_call`; tests hold it to that. ``name`` is
    the call's name as str or as UTF-8 (the two are cached apart).
    """

    #: Distinct (name, request) pairs kept; past it the cache starts over.
    LIMIT = 256

    def __init__(self) -> None:
        #: (name, request) -> (response length, the bytes before the response, their crc).
        self.heads: dict[tuple[str | bytes, bytes], tuple[int, bytes, int]] = {}

    def head(self, name: str | bytes, request: bytes, n: int) -> tuple[int, bytes, int]:
        """Cache and return the part of an entry before a response of ``n`` bytes."""
        name_utf8 = name.encode() if isinstance(name, str) else name
        head = codec.encode_bytes_triple(name_utf8, request, b"")[:-1] + codec.varint(n)
        if len(self.heads) >= self.LIMIT:
            self.heads.clear()
        cached = self.heads[(name, request)] = (n, head, zlib.crc32(head, _HOST_CALL_SEED))
        return cached

    def encode(self, name: str | bytes, request: bytes, response: bytes) -> bytes:
        # WorkerOplog.buffer_host_call inlines this (the journal's hot path).
        cached = self.heads.get((name, request))
        if cached is None or cached[0] != len(response):
            cached = self.head(name, request, len(response))
        return pack_header(FORMAT_VERSION, HostCall.KIND,
                                zlib.crc32(response, cached[2])) + cached[1] + response


#: Packs a stored entry's header: version, kind, checksum.
pack_header = _HEADER.pack


def peek_kind(raw: bytes) -> int:
    """The kind byte of a stored entry, without verifying it (planners skim with this)."""
    return raw[1] if len(raw) >= 2 else 0


def decode_entry(raw: bytes, *, key: str = "oplog", index: int | None = None) -> Entry:
    """Stored bytes -> Entry. Any damage raises CorruptionError naming key and index."""
    def bad(detail: str) -> CorruptionError:
        return CorruptionError("oplog entry", key, detail, index=index,
                               hint="the store was damaged; run `golemish store check`")

    if len(raw) < _HEADER.size:
        raise bad(f"only {len(raw)} bytes")
    version, kind, crc = _HEADER.unpack_from(raw)
    if version != FORMAT_VERSION:
        raise bad(f"unknown format version {version}")
    payload = raw[_HEADER.size:]
    if zlib.crc32(payload, zlib.crc32(bytes((version, kind)))) != crc:
        raise bad("checksum mismatch")
    cls = ENTRY_TYPES.get(kind)
    if cls is None:
        raise bad(f"unknown entry kind {kind}")
    try:
        values = codec.decode(payload)
        entry = cls(*_tupled(values))
    except (codec.DecodeError, TypeError) as e:
        raise bad(f"undecodable payload: {e}") from None
    for name, check in _CHECKS[cls]:
        if not check(getattr(entry, name)):
            raise bad(f"{cls.NAME} field {name} has the wrong type")
    return entry


__all__ = [
    "FORMAT_VERSION", "Entry", "Create", "InvokeStart", "InvokeEnd", "InvokeFailed",
    "HostCall", "Log", "Snapshot", "EffectBegin", "AtomicBegin", "AtomicEnd", "Rewind",
    "Revert", "Update", "UpdateFailed", "BOOKKEEPING",
    "ENTRY_TYPES", "TypedValue", "encode_entry", "decode_entry",
    "peek_kind", "encode_host_call",
]
