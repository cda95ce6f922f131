"""A closed-loop HTTP/1.1 load generator: ``concurrency`` keep-alive connections, each posting
back to back.

Why not httpx: on two cores an httpx ``AsyncClient`` used a whole core at 10 connections and
fell to ~90 req/s at 100 (its pool's bookkeeping grows with the connection count), so it
measured itself. This client writes prebuilt request bytes on raw asyncio streams and reads
just the status line, Content-Length and body: a few tens of microseconds per request, leaving
the CPU to the server. ``client_cpu`` still reports how busy it was.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Result", "UnexpectedAnswer", "run_load"]


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    latencies_ms: list[float]
    client_cpu: float  # load generator CPU seconds / wall seconds (1.0 = one core busy)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: int) -> float:
        # quantiles(n=100) gives the 1st..99th percentile cut points.
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


class UnexpectedAnswer(RuntimeError):
    """The server answered something other than what the scenario expects: results are void."""


def _request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, rest = head.partition(b"\r\n")
    length = None
    for line in rest.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise UnexpectedAnswer(f"No Content-Length in answer: {head[:200]!r}")
    return status_line, await reader.readexactly(length)


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connection(
    stream: Stream,
    request_for: Callable[[], bytes],
    remaining: list[int],
    latencies: list[float] | None,
    expect: bytes,
) -> None:
    reader, writer = stream
    while remaining[0] > 0:
        remaining[0] -= 1  # one event loop: no lock needed between connections
        request = request_for()
        started = time.perf_counter()
        writer.write(request)
        status_line, answer = await _read_response(reader)
        elapsed = time.perf_counter() - started
        if status_line.split(b" ")[1:2] != [b"200"] or expect not in answer:
            raise UnexpectedAnswer(f"{status_line!r}: {answer[:200]!r}")
        if latencies is not None:
            latencies.append(elapsed * 1000)


async def _run(
    url: str,
    body: bytes,
    make_headers: Callable[[], dict[str, str]],
    *,
    concurrency: int,
    requests: int,
    warmup: int,
    expect: bytes,
) -> Result:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"

    def request_for() -> bytes:
        return _request(f"{host}:{port}", path, body, make_headers())

    # Connections are opened once and kept alive, as GitHub's deliveries would be through a
    # proxy; handshakes are not what this measures.
    streams = [await asyncio.open_connection(host, port) for _ in range(concurrency)]

    async def wave(count: int, latencies: list[float] | None) -> None:
        remaining = [count]
        await asyncio.gather(
            *(_connection(s, request_for, remaining, latencies, expect) for s in streams)
        )

    try:
        # Warm-up lets the server create its handler threads and warm its code paths, so
        # the timed part measures steady-state intake.
        await wave(warmup, None)
        latencies: list[float] = []
        cpu_started, started = time.process_time(), time.perf_counter()
        await wave(requests, latencies)
        seconds = time.perf_counter() - started
        cpu = (time.process_time() - cpu_started) / seconds
    finally:
        for _, writer in streams:
            writer.close()
    return Result(requests, seconds, latencies, cpu)


def run_load(
    url: str,
    body: bytes,
    make_headers: Callable[[], dict[str, str]],
    *,
    concurrency: int,
    requests: int,
    warmup: int,
    expect: bytes = b'"HIT"',
) -> Result:
    """Post ``body`` ``requests`` times, ``concurrency`` in flight, headers fresh per request.

    Every answer must be 200 and contain ``expect``, or the run is void (UnexpectedAnswer).
    """
    return asyncio.run(
        _run(
            url,
            body,
            make_headers,
            concurrency=concurrency,
            requests=requests,
            warmup=warmup,
            expect=expect,
        )
    )
