"""Outgoing HTTP for guests: the allow-list, retries, and the request itself.

Loopback hosts are always allowed; anything else must be on the worker's or the
component's allow-list (``host`` or ``host:port``; ``*`` allows everything). The
host adds an ``Idempotency-Key`` header derived from the worker and the oplog
index, so a request that recovery has to send again carries the same key.
"""

from __future__ import annotations

import http.client
import ipaddress
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass


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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_allowed(url: str, allow: Iterable[str]) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpFailed(f"unsupported URL {url!r}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if _is_loopback(host):
        return parts
    for rule in allow:
        if rule == "*" or rule == host or rule == f"{host}:{port}":
            return parts
    raise HttpRefused(f"{host}:{port} is not on this worker's HTTP allow-list "
                      f"(add it with `golemish worker config W --allow-http {host}`)")


def request(method: str, url: str, headers: list[tuple[str, str]], body: bytes, *,
            allow: Iterable[str], timeout_s: float, retry: RetryPolicy
            ) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send one request (retrying as the policy says); (status, headers, body)."""
    parts = check_allowed(url, allow)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    delays = list(retry.delays())
    for attempt in range(len(delays) + 1):
        try:
            conn = conn_cls(parts.hostname, parts.port, timeout=timeout_s)
            try:
                conn.request(method, target, body=body or None, headers=dict(headers))
                resp = conn.getresponse()
                result = resp.status, [(k, v) for k, v in resp.getheaders()], resp.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            if attempt == len(delays):
                raise HttpFailed(f"{method} {url}: {e}") from None
        else:
            if result[0] < 500 or attempt == len(delays):
                return result
        time.sleep(delays[attempt])
    raise AssertionError("unreachable")
