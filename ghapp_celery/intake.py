"""The webhook route: size limit, signature, parse, dispatch, answer (DESIGN section 2).

The answer code says what happened: 401 bad signature, 400 malformed, 413 too large, 415 wrong
content type, 500 a handler failed, 200 handled (``HIT``) or nothing to do (``MISS``).
Error bodies are JSON, say what was wrong, and never carry exception text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from .context import Event, delivery_context
from .exceptions import PayloadTooLarge, WebhookError
from .routing import HandlerRegistry, HandlerSpec
from .webhooks import Delivery, check_content_length, decode_body, parse_delivery, verify_signature

__all__ = ["STATUS_FUNC_CALLED", "STATUS_NO_FUNC_CALLED", "IntakePolicy", "WebhookIntake"]

LOG = logging.getLogger("ghapp_celery.intake")

STATUS_FUNC_CALLED = "HIT"
STATUS_NO_FUNC_CALLED = "MISS"


@dataclass(frozen=True)
class IntakePolicy:
    """What the intake enforces; built from Settings by the GitHubApp."""

    secrets: Sequence[bytes] = field(default_factory=tuple)
    verify: bool = True
    allow_sha1: bool = False
    max_body_bytes: int = 25 * 1024 * 1024


def error_response(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"status": "ERROR", "error": code, "description": description},
    )


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing as soon as it is known to exceed ``limit`` bytes.

    A declared Content-Length over the limit is refused before any byte is read; a chunked
    body is counted while it streams, so a huge upload never sits whole in memory.
    """
    check_content_length(request.headers.get("content-length"), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _encodable(value: Any) -> Any:
    try:
        return jsonable_encoder(value)
    except (TypeError, ValueError):
        # A handler may return anything; the answer must still be JSON.
        return repr(value)


class WebhookIntake:
    """The endpoint callable. ``policy`` is read per request so settings can change in tests."""

    def __init__(
        self,
        registry: HandlerRegistry,
        policy: Callable[[], IntakePolicy],
        *,
        sync_threads: int = 100,
    ) -> None:
        self.registry = registry
        self._policy = policy
        self._sync_threads = sync_threads
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        # Our own pool for blocking handlers: the default executor has min(32, cpu + 4)
        # threads (6 on two cores), which is what capped fastapi-githubapp at ~29 req/s when
        # each handler blocks for 200 ms.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._sync_threads)
        return self._limiter

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            delivery = await self.receive(request)
        except WebhookError as exc:
            LOG.info("Refused webhook delivery: %s (%s)", exc.code, exc.message)
            return error_response(exc.http_status, exc.code, exc.message)
        return await self.dispatch(delivery)

    async def receive(self, request: Request) -> Delivery:
        """Steps 1-2: limit, verify and parse; raises WebhookError subclasses."""
        policy = self._policy()
        body = await read_body(request, policy.max_body_bytes)
        if policy.verify and policy.secrets:
            verify_signature(
                body,
                secrets=policy.secrets,
                signature_256=request.headers.get("x-hub-signature-256"),
                signature_1=request.headers.get("x-hub-signature"),
                allow_sha1=policy.allow_sha1,
            )
        payload = decode_body(body, request.headers.get("content-type"))
        return parse_delivery(request.headers, payload)

    async def dispatch(self, delivery: Delivery) -> JSONResponse:
        """Run the matching inline handlers and answer HIT with their results, or MISS."""
        specs = self.registry.match(delivery.event, delivery.action)
        if not specs:
            return JSONResponse({"status": STATUS_NO_FUNC_CALLED, "calls": {}})
        calls: dict[str, Any] = {}
        failed: list[str] = []
        with delivery_context(delivery):
            for spec in specs:
                try:
                    calls[spec.name] = _encodable(await self.call(spec, delivery))
                except Exception:
                    # Keep running the other handlers: one broken handler must not starve
                    # the rest of the delivery. The traceback goes to the log only.
                    LOG.exception(
                        "Handler %s failed for delivery %s (%s)",
                        spec.qualified_name,
                        delivery.id,
                        delivery.name,
                    )
                    failed.append(spec.name)
        if failed:
            return error_response(
                500,
                "handler_failed",
                f"{len(failed)} handler(s) failed for delivery {delivery.id}; see the server log",
            )
        return JSONResponse({"status": STATUS_FUNC_CALLED, "calls": calls})

    async def call(self, spec: HandlerSpec, delivery: Delivery) -> Any:
        args = (Event(delivery),) if spec.takes_event else ()
        if spec.is_async:
            return await spec.func(*args)
        # anyio copies the current context into the worker thread, so the handler still
        # sees this delivery through github_app.payload.
        return await anyio.to_thread.run_sync(partial(spec.func, *args), limiter=self.limiter)
