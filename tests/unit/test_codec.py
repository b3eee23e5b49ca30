"""The value codec and entry encoding: round trips, the fast path, and damage."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from golemish.oplog import codec
from golemish.oplog.entries import (
    Create, HostCall, HostCallEncoder, InvokeEnd, InvokeFailed, InvokeStart, Log, decode_entry,
    encode_entry,
)
from golemish.oplog.errors import CorruptionError

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.binary(max_size=64) | st.text(max_size=32))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6), max_leaves=30)


def _listify(v):
    return [_listify(x) for x in v] if isinstance(v, (list, tuple)) else v


@given(values)
def test_codec_round_trips(v):
    assert codec.decode(codec.encode(v)) == _listify(v)


@given(st.text(max_size=40), st.binary(max_size=300), st.binary(max_size=300))
def test_host_call_fast_path_matches_generic_encoding(name, a, b):
    assert codec.encode_bytes_triple(name.encode(), a, b) == codec.encode([name, a, b])


_encoder = HostCallEncoder()  # shared across examples, so its cache is exercised


@given(st.sampled_from(["clock_time_get", "random_get", "ü"]), st.binary(max_size=3),
       st.binary(max_size=300))
def test_the_cached_host_call_encoder_gives_the_entry_encoding(name, request, response):
    raw = _encoder.encode(name.encode(), request, response)
    assert raw == encode_entry(HostCall(name, request, response))
    assert decode_entry(raw) == HostCall(name, request, response)
    # The journal passes the name as str: cached apart, the same bytes.
    assert _encoder.encode(name, request, response) == raw


@given(st.lists(st.binary(max_size=200), min_size=1, max_size=8), st.data())
def test_cached_encoding_follows_the_response_length_and_rejects_damage(responses, data):
    # One (name, request) whose responses change length: the cached part before the
    # response holds the length, so a stale one would give a wrong (or unreadable) entry.
    enc = HostCallEncoder()
    for response in responses:
        raw = enc.encode("random_get", b"\x08", response)
        assert raw == encode_entry(HostCall("random_get", b"\x08", response))
        at = data.draw(st.integers(0, len(raw) - 1))
        bit = data.draw(st.integers(0, 7))
        damaged = raw[:at] + bytes((raw[at] ^ (1 << bit),)) + raw[at + 1:]
        with pytest.raises(CorruptionError):
            decode_entry(damaged)


@given(st.binary(max_size=200))
def test_decoding_garbage_raises_only_decode_error(raw):
    try:
        codec.decode(raw)
    except codec.DecodeError:
        pass


typed = st.one_of(
    st.tuples(st.just("i32"), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just("i64"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("f64"), st.floats(allow_nan=False)),
)
entries = st.one_of(
    st.builds(Create, st.text(max_size=10), st.integers(0, 99), st.text(max_size=64),
              st.lists(st.text(max_size=8)).map(tuple),
              st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5))).map(tuple),
              st.integers(0, 2**63)),
    st.builds(InvokeStart, st.text(max_size=10), st.lists(typed, max_size=4).map(tuple),
              st.none() | st.text(max_size=10), st.integers(0, 2**63)),
    st.builds(InvokeEnd, st.lists(typed, max_size=3).map(tuple), st.integers(0, 2**40)),
    st.builds(InvokeFailed, st.sampled_from(["trap", "exit"]), st.text(max_size=40)),
    st.builds(HostCall, st.text(max_size=16), st.binary(max_size=40), st.binary(max_size=40)),
    st.builds(Log, st.sampled_from([1, 2]), st.binary(max_size=80)),
)


@given(entries)
def test_entries_round_trip(entry):
    assert decode_entry(encode_entry(entry)) == entry


@given(entries, st.data())
def test_any_flipped_bit_is_caught(entry, data):
    raw = bytearray(encode_entry(entry))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(CorruptionError):
        decode_entry(bytes(raw), key="w/x", index=7)


def test_corruption_error_names_key_and_index():
    raw = bytearray(encode_entry(HostCall("random_get", b"\x08\0\0\0", b"12345678")))
    raw[-1] ^= 0xFF
    with pytest.raises(CorruptionError) as e:
        decode_entry(bytes(raw), key="counter/alice", index=42)
    assert e.value.index == 42 and e.value.key == "counter/alice"
    assert "counter/alice index 42" in str(e.value) and "checksum" in str(e.value)


def test_truncated_entry_is_corruption():
    with pytest.raises(CorruptionError, match="only 3 bytes"):
        decode_entry(b"\x01\x05\x00")


def test_invoke_start_limits_are_stored_only_when_set():
    plain = InvokeStart("add", (("i32", 1),), None, 7)
    # Byte for byte the form of the four-field entry that older versions wrote and read.
    assert encode_entry(plain)[6:] == codec.encode(["add", [["i32", 1]], None, 7])
    limited = InvokeStart("add", (("i32", 1),), None, 7, memory_limit=64 << 20, time_limit=0.5)
    assert decode_entry(encode_entry(limited)) == limited
    only_time = InvokeStart("add", (), None, 7, time_limit=2.0)
    assert decode_entry(encode_entry(only_time)) == only_time
    assert decode_entry(encode_entry(plain)) == plain
    assert "limits=64MiB,0.5s" in limited.summary()
