"""Drive benchmarks/intake.py's user app in this process, straight through ASGI, and print
the microseconds one delivery takes: the app's own cost, without uvicorn or a socket.

Run by benchmarks/observability.py, one process per mode (the environment picks it): the
numbers of uvicorn under load move with everything else the shared machine runs, these move
much less, so "off costs nothing" can be read to a few percent.

    python benchmarks/obs_asgi_driver.py <requests> <rounds>
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from intake import OURS, SECRET, USER_CODE, delivery


async def deliver(app: Any, body: bytes, headers: dict[str, str]) -> None:
    sent = dict(headers, **{"X-GitHub-Delivery": str(uuid.uuid4())})
    raw = [(k.lower().encode(), v.encode()) for k, v in sent.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/webhooks/github/", "raw_path": b"/webhooks/github/",
        "query_string": b"", "root_path": "", "headers": raw, "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    received = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a client that stays: never a disconnect
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    if status != [200]:
        raise RuntimeError(f"answered {status}")


async def main(requests: int, rounds: int) -> None:
    os.environ.setdefault("BENCH_SECRET", SECRET)
    namespace: dict[str, Any] = {}
    exec(compile(USER_CODE.format(import_line=OURS.import_line), "app", "exec"), namespace)  # noqa: S102
    app = namespace["app"]
    body, headers = delivery()
    async with app.router.lifespan_context(app):
        for _ in range(300):  # warm-up: imports, the store, the first spans
            await deliver(app, body, headers)
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(requests):
                await deliver(app, body, headers)
            print(f"{(time.perf_counter() - started) / requests * 1e6:.1f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
