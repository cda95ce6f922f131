"""githubkit's side of benchmarks/client.py; runs in githubkit's own venv (benchmarks/.cache).

Reads one JSON job on stdin and prints one JSON result: the wall time of N GETs at a given
concurrency through one ``GitHub`` object, after a warm-up, exactly as ours is measured.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from githubkit import AppInstallationAuthStrategy, GitHub, TokenAuthStrategy


async def drive(github: GitHub, paths: list[str], concurrency: int) -> float:
    queue = iter(paths)

    async def worker() -> None:
        for path in queue:
            response = await github.arequest("GET", path)
            assert response.status_code == 200

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def run(job: dict[str, Any]) -> dict[str, Any]:
    transport = None
    if job.get("pool"):
        limits = httpx.Limits(max_connections=job["pool"], max_keepalive_connections=job["pool"])
        transport = httpx.AsyncHTTPTransport(limits=limits)
    if job["mode"] == "token_burst":
        auth = AppInstallationAuthStrategy(
            job["app_id"], Path(job["key_path"]).read_text(), job["installation_id"]
        )
    else:
        auth = TokenAuthStrategy(job["token"])
    github = GitHub(
        auth, base_url=job["url"], http_cache=False, async_transport=transport, timeout=30
    )
    async with github:
        if job["mode"] == "token_burst":
            await asyncio.gather(*(github.arequest("GET", p) for p in job["paths"]))
            return {"elapsed": 0.0}
        await drive(github, job["warmup"], job["concurrency"])
        return {"elapsed": await drive(github, job["paths"], job["concurrency"])}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.stdin.read())))))
