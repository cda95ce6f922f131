"""``GET /healthz`` and ``GET /readyz``: the probes a load balancer or Kubernetes sends.

- ``/healthz``: the process answers (liveness). It touches nothing else, so a store outage
  never makes an orchestrator restart web processes that would answer again once it is back.
- ``/readyz``: the store and the broker answer too (readiness): 200 ``{"status": "ready",
  "store": "ok", "broker": "ok"}``, or 503 with the part that does not (``"unavailable"``);
  a part the app does not use reads ``"not used"``. Why a part failed goes to the log only.

A probe every second from several sources must not cost a database and a broker round trip
each: one check runs at a time, and its answer is reused for ``cache_seconds``. The check
runs on a thread and is given ``timeout`` seconds; past it the answer is 503 ``timeout``
(a probe's own timeout is typically 1 s, so an answer must come well within it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse

__all__ = ["ReadinessCache", "mount_health"]

Check = Callable[[], Mapping[str, str]]


class ReadinessCache:
    """The last readiness answer, and the one check in flight that callers share."""

    def __init__(self, check: Check, *, cache_seconds: float, timeout: float) -> None:
        self._check = check
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._last: tuple[float, dict[str, str]] | None = None
        self._running: asyncio.Future[dict[str, str]] | None = None

    async def state(self) -> dict[str, str]:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self._cache_seconds:
            return self._last[1]
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(asyncio.to_thread(self._run))
        try:
            # shield: a caller giving up must not cancel the check the others wait for.
            return await asyncio.wait_for(asyncio.shield(self._running), self._timeout)
        except TimeoutError:
            return {"status": "timeout"}

    def _run(self) -> dict[str, str]:
        parts = dict(self._check())
        self._last = (time.monotonic(), parts)
        return parts


def mount_health(
    app: FastAPI,
    *,
    health_path: str,
    ready_path: str,
    check: Check,
    cache_seconds: float = 1.0,
    timeout: float = 3.0,
) -> None:
    """Add the two routes to ``app`` (an empty path leaves that one out)."""
    cache = ReadinessCache(check, cache_seconds=cache_seconds, timeout=timeout)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        parts = await cache.state()
        if parts.get("status") == "timeout":
            return JSONResponse(
                {
                    "status": "ERROR",
                    "error": "not_ready",
                    "description": "The readiness check did not finish in time",
                },
                status_code=503,
            )
        failing = sorted(name for name, state in parts.items() if state == "unavailable")
        if failing:
            return JSONResponse(
                {
                    "status": "ERROR",
                    "error": "not_ready",
                    "description": f"Not answering: {', '.join(failing)}",
                    **parts,
                },
                status_code=503,
            )
        return JSONResponse({"status": "ready", **parts})

    if health_path:
        app.add_route(health_path, healthz, methods=["GET"], include_in_schema=False)
    if ready_path:
        app.add_route(ready_path, readyz, methods=["GET"], include_in_schema=False)
