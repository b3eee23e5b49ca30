"""Fuzzing the decoders and parsers that read untrusted bytes and text.

Random bytes and random text (plain, token soup, and mutations of valid input) go
into the oplog codec, oplog entry decoding, the snapshot manifest decoder, the WAVE
parser, the WIT parser and the command line. Each may refuse its input only with
its own error type (``DecodeError``, ``CorruptionError``, ``WaveError``,
``WitError``, or for the CLI a non-zero exit with a one-line message); anything
else escaping is a bug. The checksummed formats are fuzzed behind a valid
checksum too, so that the random payloads reach the decoding itself.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import zstandard
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from golemish.oplog import GolemishError, codec
from golemish.oplog.entries import ENTRY_TYPES, FORMAT_VERSION, InvokeStart, decode_entry, encode_entry
from golemish.oplog.errors import CorruptionError
from golemish.oplog.manifest import MANIFEST_VERSION, Manifest
from golemish.runtime.typed import wave
from golemish.runtime.cli import main
from golemish.runtime.typed.wave_lex import WaveError
from golemish.runtime.typed.wit import parse_wit
from golemish.runtime.typed.wit_syntax import WitError

from wit_strategies import types, typed_values

ROOT = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def mutated(base: st.SearchStrategy, alphabet: st.SearchStrategy) -> st.SearchStrategy:
    """Inputs a few edits (delete, insert, replace) away from a valid one."""
    @st.composite
    def edit(draw: st.DrawFn):
        s = draw(base)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(s)))
            what = draw(st.sampled_from(["del", "ins", "rep"]))
            piece = draw(alphabet)
            s = s[:i] + (piece if what != "del" else s[:0]) + s[i + (what != "ins"):]
        return s
    return edit()


# -- the oplog codec ---------------------------------------------------------------------
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.binary(max_size=20)
    | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=5) | st.lists(kids, max_size=5).map(tuple),
    max_leaves=20)


@FUZZ
@given(st.binary(max_size=300) | mutated(values.map(codec.encode),
                                        st.binary(min_size=1, max_size=3)))
@example(b"\x07\x80\x80\x80\x80\x80\x80\x80\x80\x80\x10")  # a list of 2**63 items
def test_codec_decode_raises_only_decode_error(data):
    try:
        codec.decode(data)
    except codec.DecodeError:
        pass


# -- oplog entries ------------------------------------------------------------------------
_HEADER = struct.Struct("<BBI")


def with_header(kind: int, payload: bytes) -> bytes:
    """An entry record with a valid header and checksum around any payload."""
    crc = zlib.crc32(payload, zlib.crc32(bytes((FORMAT_VERSION, kind))))
    return _HEADER.pack(FORMAT_VERSION, kind, crc) + payload


def decode_or_corrupt(raw: bytes) -> None:
    try:
        entry = decode_entry(raw, key="w/x", index=7)
    except CorruptionError as e:
        assert "w/x" in str(e)
        return
    entry.summary()  # what `worker oplog` shows of whatever decoded


@FUZZ
@given(st.binary(max_size=200))
def test_decode_entry_of_random_bytes_raises_corruption_error(raw):
    decode_or_corrupt(raw)


@FUZZ
@given(st.sampled_from(sorted(ENTRY_TYPES)), values.map(codec.encode) | st.binary(max_size=80))
@example(3, codec.encode([b"", None]))         # InvokeEnd: results not a tuple of pairs
@example(3, codec.encode("0"))                 # InvokeEnd: a string for the results
@example(5, codec.encode(b"\0\0"))             # HostCall from a byte string's items
@example(6, codec.encode([None, None]))        # Log without a stream or data
def test_decode_entry_of_any_payload_behind_a_valid_checksum(kind, payload):
    decode_or_corrupt(with_header(kind, payload))


def test_the_header_layout_is_the_one_the_fuzzer_builds():
    """with_header must produce what encode_entry does, or the fuzzing above is shallow."""
    raw = encode_entry(InvokeStart("add", (("i64", 5),), "k-1", 12))
    assert with_header(raw[1], raw[_HEADER.size:]) == raw
    assert decode_entry(raw) == InvokeStart("add", (("i64", 5),), "k-1", 12)


# -- snapshot manifests -----------------------------------------------------------------------
_BLOB_HEAD = struct.Struct("<BI")


def manifest_blob(body: bytes) -> bytes:
    packed = zstandard.ZstdCompressor(level=1).compress(body)
    return _BLOB_HEAD.pack(MANIFEST_VERSION, zlib.crc32(packed)) + packed


def decode_manifest(blob: bytes) -> None:
    try:
        m = Manifest.decode(blob, key="w/x snapshot 3")
    except CorruptionError as e:
        assert "w/x snapshot 3" in str(e)
        return
    list(m.hashes())
    m.nonzero()


manifest_fields = st.lists(values, min_size=10, max_size=11) | st.tuples(
    st.integers(-3, 10), st.binary(max_size=40), st.sampled_from([0, 1, 4096, -4096]),
    st.integers(-8192, 65536), st.binary(max_size=64) | st.text(max_size=8),
    st.lists(values, max_size=2), st.lists(values, max_size=2), values, st.lists(values, max_size=2),
    values).map(list)


@FUZZ
@given(st.binary(max_size=200))
def test_manifest_decode_of_random_bytes_raises_corruption_error(blob):
    decode_manifest(blob)


@FUZZ
@given(manifest_fields.map(codec.encode) | values.map(codec.encode) | st.binary(max_size=100))
@example(codec.encode([0, "h", 4096, 0, None, [], [], 0, [], b""]))  # pages: None
@example(codec.encode([0, "h", "4096", 4096, bytes(16), [], [], 0, [], b""]))  # a str size
def test_manifest_decode_behind_a_valid_checksum_raises_corruption_error(body):
    decode_manifest(manifest_blob(body))


def test_manifest_declaring_a_huge_body_is_corruption_not_memory_error():
    """A frame header may state any size; decoding must not try to allocate it."""
    frame = zstandard.ZstdCompressor(level=1).compress(b"a" * 100)
    fcs_8_bytes_single_segment = (3 << 6) | (1 << 5)
    forged = frame[:4] + bytes([fcs_8_bytes_single_segment]) + struct.pack("<Q", 1 << 40) \
        + frame[6:]
    assert zstandard.get_frame_parameters(forged).content_size == 1 << 40
    with pytest.raises(CorruptionError, match="exceeds"):
        Manifest.decode(_BLOB_HEAD.pack(MANIFEST_VERSION, zlib.crc32(forged)) + forged,
                        key="w/x snapshot 3")


# -- WAVE ------------------------------------------------------------------------------------
WAVE_TOKENS = ["{", "}", "[", "]", "(", ")", ",", ":", "%", '"', "'", "\\", "\\u{", "-", ".",
               "0", "1", "255", "-1", "1e400", "4294967296", "9223372036854775808", "nan",
               "inf", "-inf", "true", "false", "none", "some", "ok", "err", "a", "b-c", " ",
               "\n", "\u00e9", "\U0001f600", "\x00", "{:}", "//"]
wave_soup = st.lists(st.sampled_from(WAVE_TOKENS), max_size=20).map("".join)
wave_text = st.text(max_size=60) | wave_soup


@st.composite
def wave_cases(draw: st.DrawFn):
    """(type, text): random text, or a mutation of the canonical text of a valid value."""
    t, v = draw(typed_values())
    valid = wave.to_wave(v, t)
    text = draw(st.just(valid) | mutated(st.just(valid), st.sampled_from(WAVE_TOKENS))
                | wave_text)
    return t, text


@FUZZ
@given(wave_cases())
def test_wave_parse_raises_only_wave_error(case):
    t, text = case
    try:
        v = wave.parse(text, t)
    except WaveError:
        return
    wave.parse(wave.to_wave(v, t), t)  # what parsed prints, and the print reads back


@FUZZ
@given(st.lists(types, min_size=1, max_size=4), wave_text)
def test_wave_parse_call_raises_only_wave_error(params, args):
    from golemish.runtime.typed.wit_types import FuncDecl
    funcs = {"f": FuncDecl("f", tuple((f"p{i}", t) for i, t in enumerate(params)), None, "f")}
    try:
        wave.parse_call(f"f({args})", funcs)
    except WaveError:
        pass


# -- WIT -------------------------------------------------------------------------------------
WITS = [(ROOT / "guest_examples" / n).read_text() for n in ("cart.wit", "echo.wit")]
WIT_TOKENS = ["package", "world", "interface", "export", "import", "func", "record", "variant",
              "enum", "flags", "type", "use", "resource", "list<", "option<", "result<",
              "tuple<", "string", "u32", "s64", "f32", "char", "bool", "_", "{", "}", "(", ")",
              ":", ";", ",", "->", "<", ">", "=", "@", "/", ".", "%", "*", "//", "/*", "*/",
              "\n", " ", "a", "b-c", "%use", "0.1.0", "1", "\u00e9", "\t"]
wit_soup = st.lists(st.sampled_from(WIT_TOKENS), max_size=40).map(" ".join)


@FUZZ
@given(st.text(max_size=200) | wit_soup
       | mutated(st.sampled_from(WITS), st.sampled_from(WIT_TOKENS) | st.text(max_size=3)))
def test_parse_wit_raises_only_wit_error(text):
    try:
        parse_wit(text, "fuzz.wit")
    except WitError as e:
        assert str(e).startswith("fuzz.wit:"), e


# -- the command line ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_store(tmp_path_factory, guests):
    home = tmp_path_factory.mktemp("fuzz") / "store"
    runner = CliRunner()
    for argv in (["deploy", str(guests["counter"])],
                 ["deploy", str(guests["cart"]), "--wit", str(ROOT / "guest_examples/cart.wit")],
                 ["invoke", "counter/a", "add", "5"],
                 ["invoke", "cart/a", 'add-item({sku: "x", qty: 1, price-cents: 2})']):
        res = runner.invoke(main, ["--home", str(home), *argv])
        assert res.exit_code == 0, res.output
    return home


# Words of the CLI, and arguments that reach deeper. Never --crash-at (it SIGKILLs this
# process) nor functions that run until the time limit.
CLI_WORDS = ["deploy", "invoke", "component", "list", "show", "worker", "oplog", "snapshot",
             "config", "interrupt", "resume", "delete", "store", "check", "--deep", "promise",
             "complete", "--json", "--debug", "--sync", "--recovery", "auto", "replay",
             "snapshot", "--snapshot-policy", "every:0", "every:2", "adaptive:-1", "calls:x",
             "--oplog-retention", "archive", "--from", "--to", "0", "-1", "1", "99999999999",
             "--full", "--allow-http", "--deny-http", "VM", "", "-k", "--env", "A=B", "=",
             "--memory-limit", "--time-limit", "0.001", "1e400", "nan", "--ephemeral",
             "--name", "--wit", "--stackful", "--version", "--help", "counter/a", "cart/a",
             "counter/b", "nobody/x", "counter", "cart", "add", "get", "checksum", "now",
             "items", "total", "add-item", "checkout", 'some("HALF")', "none",
             '{sku: "y", qty: 2, price-cents: 3}', "9223372036854775808", "--", "-", "a/b/c",
             "\u00e9", "\x00"]
cli_words = st.sampled_from(CLI_WORDS) | st.text(
    st.characters(exclude_characters="/~\\", exclude_categories=["Cs"]), max_size=8)
COMMANDS = [["invoke", "counter/a"], ["invoke", "cart/a"], ["invoke", "counter/b"],
            ["worker", "list"], ["worker", "show"], ["worker", "oplog"], ["worker", "snapshot"],
            ["worker", "config"], ["worker", "interrupt"], ["worker", "resume"],
            ["worker", "delete"], ["store", "check"], ["component", "list"],
            ["component", "show"], ["promise", "list"], ["promise", "complete"],
            ["deploy", str(ROOT / "guest_examples/build/counter.wasm")], ["deploy"]]
GLOBAL_OPTIONS = [["--json"], ["--debug"], ["--sync"], ["--recovery", "replay"],
                  ["--snapshot-policy", "every:1"], ["--snapshot-policy", "off"],
                  ["--oplog-retention", "archive"]]
command_line = st.builds(lambda pre, cmd, rest: sum(pre, []) + cmd + rest,
                         st.lists(st.sampled_from(GLOBAL_OPTIONS), max_size=2),
                         st.sampled_from(COMMANDS), st.lists(cli_words, max_size=5))
# invocations: a function, then numbers, WAVE text or soup, and maybe an invoke option
invoke_line = st.builds(
    lambda w, f, args, opt: ["invoke", w, f, *args, *opt],
    st.sampled_from(["counter/a", "counter/b", "cart/a"]),
    st.sampled_from(["add", "get", "checksum", "history_len", "f64_scale", "add-item",
                     "remove-item", "items", "find", "checkout", "total", "add-item({",
                     'find("x")', "checkout(none)", "nope", "_initialize", "memory"]),
    st.lists(st.sampled_from(CLI_WORDS[-14:] + ["-5", "0x10", "1.5", "-0", "4294967296"])
             | wave_soup | st.text(max_size=6), max_size=3),
    st.sampled_from([[], ["--json"], ["-k", "key-1"], ["--ephemeral"], ["--env", "A"],
                     ["--time-limit", "5"], ["--memory-limit", "1"]]))
cli_argv = st.one_of(st.lists(cli_words, max_size=8), command_line, command_line, invoke_line,
                     invoke_line)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=cli_argv)
@example(argv=["invoke", "counter/a", "add", "1", "--time-limit", "0.001"])
@example(argv=["--snapshot-policy", "every:0", "worker", "list"])
def test_cli_argument_parsing_never_raises(cli_store, tmp_path_factory, monkeypatch, argv):
    monkeypatch.chdir(tmp_path_factory.getbasetemp())  # a stray --home lands in the tmp dir
    monkeypatch.delenv("GOLEMISH_CRASH_AT", raising=False)
    res = CliRunner().invoke(main, ["--home", str(cli_store), *argv])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        assert isinstance(res.exception, GolemishError), res.exc_info  # none escape `run`
        raise AssertionError(f"{argv}: uncaught {type(res.exception).__name__}: "
                             f"{res.exception}")
    assert "Traceback" not in res.output or "--debug" in argv, res.output
