"""Posting deliveries for ``background.py`` with ``loadgen``'s raw HTTP/1.1 client.

``loadgen.run_load`` accepts only ``200`` answers (inline handlers); background handlers answer
``202 QUEUED``. This reuses loadgen's request writer and answer reader and adds what the
background scenarios need: the expected status, the wall-clock start (runs in the store are
timed against it) and a load that can run in a thread while the benchmark kills workers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from loadgen import UnexpectedAnswer, _read_response, _request

__all__ = ["Load", "post_deliveries"]


@dataclass(frozen=True)
class Load:
    requests: int
    started_wall: float  # time.time() when the first timed request was written
    seconds: float
    latencies_ms: list[float]
    client_cpu: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


async def _post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    requests: int,
    status: bytes,
    expect: bytes,
    progress: Callable[[int], None] | None,
) -> Load:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    streams = [await asyncio.open_connection(host, port) for _ in range(concurrency)]
    remaining = [requests]
    done = [0]
    latencies: list[float] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            fresh = headers | {"X-GitHub-Delivery": str(uuid.uuid4())}
            request = _request(f"{host}:{port}", path, body, fresh)
            started = time.perf_counter()
            writer.write(request)
            status_line, answer = await _read_response(reader)
            latencies.append((time.perf_counter() - started) * 1000)
            if status_line.split(b" ")[1:2] != [status] or expect not in answer:
                raise UnexpectedAnswer(f"{status_line!r}: {answer[:200]!r}")
            done[0] += 1
            if progress is not None and done[0] % 100 == 0:
                progress(done[0])

    try:
        cpu0, wall0, t0 = time.process_time(), time.time(), time.perf_counter()
        await asyncio.gather(*(connection(r, w) for r, w in streams))
        seconds = time.perf_counter() - t0
        cpu = (time.process_time() - cpu0) / seconds
    finally:
        for _, writer in streams:
            writer.close()
    return Load(requests, wall0, seconds, latencies, cpu)


def post_deliveries(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    requests: int,
    status: int = 202,
    expect: bytes = b'"QUEUED"',
    progress: Callable[[int], None] | None = None,
) -> Load:
    """Post ``body`` ``requests`` times, ``concurrency`` in flight, a fresh delivery id each.

    Every answer must carry ``status`` and contain ``expect``, or the run is void.
    """
    return asyncio.run(
        _post(
            url,
            body,
            headers,
            concurrency=concurrency,
            requests=requests,
            status=str(status).encode(),
            expect=expect,
            progress=progress,
        )
    )
