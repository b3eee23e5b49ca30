"""A lean HTTP load generator for scripts/bench_serve.py: keep-alive connections on one
event loop, in a process of its own.

On a 2-core machine the client shares the CPU with the server it measures. One
http.client thread per connection (bench_serve's default client) costs several
hundred microseconds of CPU per request in this interpreter, so at high rates the
table measures the client about as much as the server. Here each connection is an
asyncio protocol that writes a request built once and reads the response with two
``bytes.find`` calls: a few tens of microseconds per request, so that nearly all the
machine goes to the server.

``python scripts/loadgen.py HOST PORT CONNECTIONS SECONDS WORKERS`` invokes
``add 1`` on the counter workers counter/w0..w{WORKERS-1}, connection i taking
workers i, i+CONNECTIONS, … in turn (no two connections wait on one worker's turn),
and prints one JSON line: invocations, errors, seconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

_BODY = b'{"function":"add","args":["1"]}'


def _request(host: str, port: int, worker: str) -> bytes:
    return (f"POST /workers/{worker}/invoke HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(_BODY)}\r\n\r\n"
            ).encode() + _BODY


class _Conn(asyncio.Protocol):
    def __init__(self, requests: list[bytes], stats: dict[str, int],
                 done: asyncio.Event) -> None:
        self.requests = requests
        self.stats = stats
        self.done = done
        self.buf = b""
        self.k = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def go(self) -> None:
        assert self.transport is not None
        self.transport.write(self.requests[0])

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while True:
            head = buf.find(b"\r\n\r\n")
            if head < 0:
                break
            at = buf.find(b"content-length:", 0, head)
            if at < 0:
                at = buf.find(b"Content-Length:", 0, head)
            if at < 0:
                raise SystemExit(f"a response without Content-Length: {buf[:200]!r}")
            end = buf.find(b"\r\n", at)
            size = int(buf[at + 15:end])
            if len(buf) < head + 4 + size:
                break
            ok = buf.startswith(b"HTTP/1.1 200")
            if not ok and self.stats["errors"] == 0:
                print(f"loadgen: {buf[:head + 4 + size][:300]!r}", file=sys.stderr)
            self.stats["invocations" if ok else "errors"] += 1
            buf = buf[head + 4 + size:]
            if self.done.is_set():
                assert self.transport is not None
                self.transport.close()
                return
            self.k += 1
            assert self.transport is not None
            self.transport.write(self.requests[self.k % len(self.requests)])
        self.buf = buf

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.is_set():
            self.stats["lost"] += 1


async def run(host: str, port: int, conns: int, seconds: float, workers: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    stats = {"invocations": 0, "errors": 0, "lost": 0}
    done = asyncio.Event()
    protos = []
    for i in range(conns):
        reqs = [_request(host, port, f"counter/w{j}") for j in range(i, workers, conns)]
        _, proto = await loop.create_connection(lambda r=reqs: _Conn(r, stats, done), host, port)
        protos.append(proto)
    t0 = time.perf_counter()
    for p in protos:
        p.go()
    await asyncio.sleep(seconds)
    done.set()
    counted = dict(stats)
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(0.2)  # let the last responses come in and the connections close
    return {**counted, "seconds": elapsed}


def main() -> None:
    host, port, conns, seconds, workers = sys.argv[1:6]
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    out = asyncio.run(run(host, int(port), int(conns), float(seconds), int(workers)))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
