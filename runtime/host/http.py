"""Outgoing HTTP for guests: the allow-list, request validation, retries, the request.

Guests reach nothing by default (DESIGN.md invariant 10), loopback included: a
request goes out only if its host is on an allow-list, the runtime's
(``GOLEMISH_HTTP_ALLOW``), the component version's (``deploy --allow-http``,
``component config``) or the worker's (``worker config``). An entry is
``host`` (any port) or ``host:port``; host names are case-insensitive, IPv6
addresses are written in brackets (``[::1]:8080``), and ``*`` allows every
host, loopback included. Entries are normalised (:func:`normalize_rule`) where
they are given, so ``VM`` and ``vm`` are one entry.

A request the guest got wrong (bad method, URL, port, header name or value) is
refused by :func:`prepare` before anything is recorded: it is a pure function of
the guest's arguments, so replay refuses it the same way. The host sets the
``Host`` header itself (a guest's own is dropped) and adds an
``Idempotency-Key`` derived from the worker and the oplog index, so a request
that recovery has to send again carries the same key.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ArgumentError

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")  # visible ASCII, space, tab
#: Headers only the host may set.
HOST_HEADERS = frozenset({"host"})


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing call is tried, with exponential backoff between tries."""

    attempts: int = 1
    min_delay_ms: int = 100
    max_delay_ms: int = 2000

    def delays(self) -> Iterable[float]:
        delay = self.min_delay_ms
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay_ms) / 1000
            delay *= 2


class HttpRefused(Exception):
    """The URL is not allowed for this worker."""


class HttpFailed(Exception):
    """No response: connection refused, timeout, bad URL."""



class HttpInvalid(Exception):
    """The guest's request is malformed: bad method, URL, port, header name or value."""


_ENTRY_HINT = "use HOST or HOST:PORT, e.g. api.example.com, 127.0.0.1:8080 or [::1]:8080"


def canonical_host(host: str) -> str:
    """A host as allow-lists compare it: lower case, IPv4 dotted, IPv6 compressed in
    brackets. Raises ValueError for anything that is not a host name or address."""
    h = host.lower()
    if h.startswith("[") and h.endswith("]"):
        return f"[{ipaddress.IPv6Address(h[1:-1]).compressed}]"
    if ":" in h:
        raise ValueError(f"{host!r}: an IPv6 address goes in brackets")
    try:
        return str(ipaddress.IPv4Address(h))
    except ValueError:
        pass
    name = h[:-1] if h.endswith(".") else h
    labels = name.split(".")
    # A numeric last label is no DNS name: '127.1' or '2130706433' would be loopback.
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels) \
            or labels[-1].isdigit():
        raise ValueError(f"{host!r} is not a host name or IP address")
    return name


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def normalize_rule(entry: str) -> str:
    """An allow-list entry in canonical form (``host``, ``host:port`` or ``*``).

    Raises ArgumentError, one line, for an empty or malformed entry.
    """
    text = entry.strip()
    if text == "*":
        return "*"
    if not text:
        raise ArgumentError(f"empty HTTP allow-list entry: {_ENTRY_HINT} ('*' for any host)")
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[:end + 1], text[end + 1:] if end >= 0 else ""
        if rest:
            port = rest[1:] if rest.startswith(":") else "?"
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:  # a bare IPv6 address
        host = f"[{text}]"
    try:
        canon = canonical_host(host)
        return canon if port is None else f"{canon}:{_port(port)}"
    except ValueError as e:
        raise ArgumentError(f"bad HTTP allow-list entry {entry!r} ({e}): {_ENTRY_HINT}") \
            from None


def normalize_rules(entries: Iterable[str]) -> list[str]:
    """Normalise entries, dropping duplicates but keeping their order."""
    out: list[str] = []
    for e in entries:
        rule = normalize_rule(e)
        if rule not in out:
            out.append(rule)
    return out


def is_allowed(host: str, port: int, allow: Iterable[str]) -> bool:
    """Does an allow-list let a request reach ``host`` (canonical) on ``port``?"""
    for rule in allow:
        try:
            rule = normalize_rule(rule)  # entries stored before normalisation, too
        except ArgumentError:
            continue
        if rule == "*" or rule == host or rule == f"{host}:{port}":
            return True
    return False


@dataclass(frozen=True)
class Request:
    """A validated request: what :func:`prepare` accepted from the guest."""

    method: str
    url: str
    scheme: str
    host: str              # canonical, as allow-lists name it
    port: int
    target: str            # path and query
    headers: tuple[tuple[str, str], ...]   # the guest's, validated

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_headers(text: str) -> list[tuple[str, str]]:
    """``Name: value`` lines (blank lines ignored); raises HttpInvalid."""
    headers = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _TOKEN.match(name):
            raise HttpInvalid(f"bad header line {line[:60]!r}: want 'Name: value'")
        if not _HEADER_VALUE.match(value):
            raise HttpInvalid(f"header {name}: the value must be printable ASCII")
        headers.append((name, value))
    return headers


def prepare(method: str, url: str, headers: Iterable[tuple[str, str]]) -> Request:
    """Validate a guest's request; raises HttpInvalid with the reason."""
    if not _TOKEN.match(method):
        raise HttpInvalid(f"bad HTTP method {method[:40]!r}")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise HttpInvalid(f"bad URL {url[:80]!r}: only printable ASCII, no spaces")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise HttpInvalid(f"bad URL {url[:80]!r}: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise HttpInvalid(f"bad URL {url[:80]!r}: only http:// and https://")
    if port == 0:
        raise HttpInvalid(f"bad URL {url[:80]!r}: port 0")
    name = parts.hostname or ""
    try:
        host = canonical_host(f"[{name}]" if ":" in name else name)
    except ValueError as e:
        raise HttpInvalid(f"bad URL {url[:80]!r}: {e}") from None
    checked = []
    for k, v in headers:
        if not _TOKEN.match(k) or not _HEADER_VALUE.match(v):
            raise HttpInvalid(f"bad header {k[:40]!r}")
        checked.append((k, v))
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return Request(method, url, parts.scheme, host,
                   port or (443 if parts.scheme == "https" else 80), target, tuple(checked))


def check_allowed(req: Request, allow: Iterable[str]) -> None:
    if not is_allowed(req.host, req.port, allow):
        raise HttpRefused(
            f"{req.address} is not on this worker's HTTP allow-list (guests reach nothing "
            f"by default; allow it with `golemish worker config W --allow-http "
            f"{req.address}` or `golemish component config C --allow-http {req.address}`)")


def request(req: Request, extra_headers: Iterable[tuple[str, str]], body: bytes, *,
            allow: Iterable[str], timeout_s: float, retry: RetryPolicy
            ) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send one request (retrying as the policy says); (status, headers, body).

    The ``Host`` header is the host's: http.client sets it from the URL, and a
    guest's own is dropped.
    """
    check_allowed(req, allow)
    conn_cls = http.client.HTTPSConnection if req.scheme == "https" else http.client.HTTPConnection
    headers = {k: v for k, v in req.headers if k.lower() not in HOST_HEADERS}
    headers.update(extra_headers)
    connect_to = req.host[1:-1] if req.host.startswith("[") else req.host
    delays = list(retry.delays())
    for attempt in range(len(delays) + 1):
        try:
            conn = conn_cls(connect_to, req.port, timeout=timeout_s)
            try:
                conn.request(req.method, req.target, body=body or None, headers=headers)
                resp = conn.getresponse()
                result = resp.status, [(k, v) for k, v in resp.getheaders()], resp.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            if attempt == len(delays):
                raise HttpFailed(f"{req.method} {req.url}: {e}") from None
        else:
            if result[0] < 500 or attempt == len(delays):
                return result
        time.sleep(delays[attempt])
    raise AssertionError("unreachable")
