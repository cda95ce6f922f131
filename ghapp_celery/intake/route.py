"""The webhook route: size limit, signature, parse, dispatch, answer (DESIGN section 2).

The answer code says what happened: 401 bad signature, 400 malformed, 413 too large, 415 wrong
content type, 503 the store could not record the delivery, 500 a handler failed, 202 background
runs recorded and queued (``QUEUED``), 200 handled inline (``HIT``), nothing to do (``MISS``) or
a redelivery whose background runs all succeeded already or are still running (``DUPLICATE``).
Error bodies are JSON, say what was wrong, and never carry exception text.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from ..compat import STATUS_FUNC_CALLED, STATUS_NO_FUNC_CALLED  # 0.2.7's names, kept there
from ..config import DEFAULT_BODY_BUDGET_BYTES, Settings
from ..context import Event, delivery_context
from ..exceptions import BodyTimeout, GitHubAppError, IntakeBusy, PayloadTooLarge, WebhookError
from ..observability import metrics, tracing
from ..observability.logs import log_context
from ..routing import HandlerRegistry, HandlerSpec
from ..webhooks import (
    Delivery,
    check_content_length,
    decode_body_text,
    parse_delivery,
    verify_signature,
)
from .batching import BatchScheduler, ScheduleBatcher, ScheduleTimeout
from .handled import HandledRecorder, HandledStore

__all__ = [
    "STATUS_DUPLICATE",
    "STATUS_FUNC_CALLED",
    "STATUS_NO_FUNC_CALLED",
    "STATUS_QUEUED",
    "BodyBudget",
    "IntakePolicy",
    "WebhookIntake",
]

LOG = logging.getLogger("ghapp_celery.intake")

STATUS_QUEUED = "QUEUED"
STATUS_DUPLICATE = "DUPLICATE"

#: Retry-After (seconds) of a 503 for the store. GitHub does not retry on its own; a person or
#: a script redelivering failed deliveries can read it.
RETRY_AFTER_STORE = 30


@dataclass(frozen=True)
class IntakePolicy:
    """What the intake enforces; built from Settings by the GitHubApp."""

    secrets: Sequence[bytes] = field(default_factory=tuple)
    verify: bool = True
    allow_sha1: bool = False
    max_body_bytes: int = 25 * 1024 * 1024
    #: Seconds from a request's arrival within which it is answered: GitHub gives up at 10 s
    #: and marks the delivery failed. Past it, a store that has not committed gets a 503.
    deadline: float = 8.0
    #: Body bytes all requests may hold at once; never less than one body of max_body_bytes.
    body_budget_bytes: int = DEFAULT_BODY_BUDGET_BYTES
    #: Record deliveries answered without background runs too (after the answer, handled.py).
    record_handled: bool = True

    @classmethod
    def from_settings(cls, s: Settings) -> IntakePolicy:
        return cls(
            secrets=tuple(s.webhook_secrets()),
            verify=s.verify_signatures,
            allow_sha1=s.webhook_allow_sha1,
            max_body_bytes=s.webhook_max_body_bytes,
            deadline=s.webhook_deadline,
            body_budget_bytes=s.webhook_body_budget_bytes,
            record_handled=s.record_handled_deliveries,
        )


def webhook_router(path: str, endpoint: Callable[..., Any]) -> APIRouter:
    """A router with the webhook route at ``path``: mount it yourself or let init_app."""
    router = APIRouter()
    # A plain Starlette route: the endpoint reads the raw body itself (it must, to check the
    # signature), so FastAPI's parameter parsing would only add cost to every delivery
    # (measured: about 5% of the instructions per request).
    router.add_route(
        path, endpoint, methods=["POST"], name="github_webhook", include_in_schema=False
    )
    return router


class BodyBudget:
    """The webhook body bytes this process's requests hold at once, against a budget.

    A body must be read whole before its signature can be checked, so anyone can make the
    web process hold bodies of up to ``max_body_bytes``; without a bound on how many at once,
    8 unsigned 24 MiB bodies took it from 90 to 266 MB. A request reserves its declared
    Content-Length before reading a byte (a chunked one, each chunk as it arrives) and gives
    it back when it has been answered, or its client went away. Past the budget the answer is
    503 ``intake_busy`` with Retry-After, as go-githubapp answers when its queue is full.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # requests may come from several event loops (tests)
        self._in_use = 0

    @property
    def in_use(self) -> int:
        """Bytes reserved right now."""
        return self._in_use

    def reserve(self, size: int, limit: int) -> None:
        """Take ``size`` bytes of the budget of ``limit``, or raise IntakeBusy."""
        with self._lock:
            if self._in_use + size > limit:
                raise IntakeBusy()
            self._in_use += size

    def release(self, size: int) -> None:
        with self._lock:
            self._in_use -= size


class _Reservation:
    """What one request holds of the budget; released once, when the request ends."""

    __slots__ = ("_budget", "_limit", "held")

    def __init__(self, budget: BodyBudget, policy: IntakePolicy) -> None:
        self._budget = budget
        # One body of the largest size accepted always fits, whatever the budget says.
        self._limit = max(policy.body_budget_bytes, policy.max_body_bytes)
        self.held = 0

    def take(self, size: int) -> None:
        self._budget.reserve(size, self._limit)
        self.held += size

    def release(self) -> None:
        if self.held:
            self._budget.release(self.held)
            self.held = 0


def error_response(
    status: int, code: str, description: str, *, retry_after: int | None = None
) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(
        status_code=status,
        content={"status": "ERROR", "error": code, "description": description},
        headers=headers,
    )


async def read_body(
    request: Request, limit: int, reserve: Callable[[int], None] | None = None
) -> bytes:
    """Read the body, refusing as soon as it is known to exceed ``limit`` bytes.

    A declared Content-Length over the limit is refused before any byte is read; a chunked
    body is counted while it streams, so a huge upload never sits whole in memory.
    ``reserve(n)`` is called before ``n`` more bytes are held (the declared length up front,
    else each chunk) and may raise to refuse them (BodyBudget).
    """
    declared = request.headers.get("content-length")
    check_content_length(declared, limit)
    if declared is not None:
        if reserve is not None:
            reserve(int(declared))
        # The declared size is within the limit and the server will not pass more than it
        # declared, so read it in one go (cheaper than counting chunks).
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Body exceeds the limit of {limit} bytes")
        if reserve is not None:
            reserve(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


def _encodable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value  # the common case, without jsonable_encoder's type walk
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
        schedule_threads: int = 2,
        scheduler: Callable[[], BatchScheduler] | None = None,
        auth: Callable[[], Any] | None = None,
        store: Callable[[], HandledStore] | None = None,
    ) -> None:
        self.registry = registry
        self._policy = policy
        self._scheduler = scheduler
        self._auth = auth  # the app's GitHubAppAuth, for Event.github
        self._sync_threads = sync_threads
        self._executor: ThreadPoolExecutor | None = None
        self._batcher = (
            ScheduleBatcher(scheduler, schedule_threads) if scheduler is not None else None
        )
        self._handled = HandledRecorder(store) if store is not None else None
        #: The body bytes this intake's requests hold at once (see BodyBudget).
        self.body_budget = BodyBudget()

    def close(self) -> None:
        """Let the scheduler threads and the handler pool end (the app is shutting down)."""
        if self._batcher is not None:
            self._batcher.close()
        if self._handled is not None:
            self._handled.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        # Our own pool for blocking handlers: the default executor has min(32, cpu + 4)
        # threads (6 on two cores), which is what capped fastapi-githubapp at ~29 req/s when
        # each handler blocks for 200 ms. Threads start lazily, up to the limit.
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._sync_threads, thread_name_prefix="ghapp-handler"
            )
        return self._executor

    async def __call__(self, request: Request) -> Response:
        if tracing.enabled:  # one module global read when tracing is off
            return await tracing.traced_webhook(self.answer, request)
        return await self.answer(request)

    async def answer(self, request: Request) -> Response:
        """Receive, dispatch and answer one request (``__call__`` without its span)."""
        policy = self._policy()
        started = asyncio.get_running_loop().time()
        deadline = started + policy.deadline
        reservation = _Reservation(self.body_budget, policy)
        delivery: Delivery | None = None
        response: Response | None = None  # None: an error escaped, and the server answers 500
        try:
            try:
                delivery = await self.receive(
                    request, policy, reserve=reservation.take, deadline=deadline
                )
            except WebhookError as exc:
                LOG.info("Refused webhook delivery: %s (%s)", exc.code, exc.message)
                response = error_response(
                    exc.http_status, exc.code, exc.message, retry_after=exc.retry_after
                )
                return response
            except ClientDisconnect:
                # Nobody is left to answer (the server drops the response), and the client
                # need not be authenticated: one line, no traceback, so it cannot fill the log.
                client = request.client
                LOG.info(
                    "Webhook client %s went away before sending its whole body",
                    client.host if client else "?",
                )
                response = Response(status_code=400)
                return response
            # From the parse to the answer, every log line (the inline handlers' too, and in
            # their threads: call() copies this context) names the delivery.
            with log_context(
                delivery_id=delivery.id,
                event=delivery.name,
                installation_id=delivery.installation_id,
            ):
                response = await self.dispatch(
                    delivery, deadline=deadline, record_handled=policy.record_handled
                )
            return response
        finally:
            reservation.release()
            if metrics.enabled():
                # The event only once the signature verified: a label from an unsigned
                # request would let anyone create series.
                metrics.webhook_answered(
                    delivery.event if delivery is not None else None,
                    500 if response is None else response.status_code,
                    asyncio.get_running_loop().time() - started,
                )

    async def receive(
        self,
        request: Request,
        policy: IntakePolicy | None = None,
        *,
        reserve: Callable[[int], None] | None = None,
        deadline: float | None = None,
    ) -> Delivery:
        """Steps 1-2: limit, verify and parse; raises WebhookError subclasses.

        ``reserve`` takes the body's bytes from the budget (see read_body); ``deadline`` (the
        event loop's clock) bounds the wait for the body: past it, BodyTimeout."""
        policy = policy or self._policy()
        if deadline is None:
            body = await read_body(request, policy.max_body_bytes, reserve)
        else:
            try:
                async with asyncio.timeout_at(deadline):
                    body = await read_body(request, policy.max_body_bytes, reserve)
            except TimeoutError:
                raise BodyTimeout() from None
        if policy.verify and policy.secrets:
            verify_signature(
                body,
                secrets=policy.secrets,
                signature_256=request.headers.get("x-hub-signature-256"),
                signature_1=request.headers.get("x-hub-signature"),
                allow_sha1=policy.allow_sha1,
            )
        payload, text = decode_body_text(body, request.headers.get("content-type"))
        return parse_delivery(request.headers, payload, payload_json=text)

    async def dispatch(
        self, delivery: Delivery, *, deadline: float | None = None, record_handled: bool = False
    ) -> JSONResponse:
        """Queue background handlers, run inline ones, and answer what happened.

        ``deadline`` (the event loop's clock) bounds the wait for the store: past it the
        answer is 503 ``store_timeout`` (inline handlers are not bounded: they are yours).
        ``record_handled``: a delivery without background runs is queued for the store once
        its inline handlers ran (handled.py); the answer does not wait for it."""
        if tracing.enabled:
            tracing.annotate_delivery(delivery)
        specs = self.registry.match(delivery.event, delivery.action)
        if not specs:
            self._record_handled(delivery, ok=True, wanted=record_handled)
            return JSONResponse({"status": STATUS_NO_FUNC_CALLED, "calls": {}})
        background = [s for s in specs if s.background]
        runs: list[dict[str, Any]] = []
        if background:
            timeout = None if deadline is None else deadline - asyncio.get_running_loop().time()
            try:
                runs = await self.schedule(delivery, background, timeout=timeout)
            except ScheduleTimeout:
                # GitHub would give up at 10 s and mark the delivery failed anyway; answer
                # while it still listens. If a scheduler thread had taken the delivery, the
                # commit may still land and its runs be published, once: GitHub's
                # redelivery of this id is then a DUPLICATE.
                LOG.warning(
                    "Delivery %s (%s) was not recorded within the deadline; answered 503",
                    delivery.id,
                    delivery.name,
                )
                return error_response(
                    503,
                    "store_timeout",
                    "The delivery could not be recorded in time; redeliver it later",
                    retry_after=RETRY_AFTER_STORE,
                )
            except GitHubAppError:
                # The store could not commit: nothing is recorded, so say so and let GitHub
                # mark the delivery failed (it can be redelivered). No detail leaves the server.
                LOG.exception("Could not record delivery %s (%s)", delivery.id, delivery.name)
                return error_response(
                    503,
                    "store_unavailable",
                    "The delivery could not be recorded; retry later",
                    retry_after=RETRY_AFTER_STORE,
                )
        inline = [s for s in specs if not s.background]
        calls, failed = await self.run_inline(delivery, inline)
        if not background:
            self._record_handled(delivery, ok=not failed, wanted=record_handled)
        if failed:
            return error_response(
                500,
                "handler_failed",
                f"{len(failed)} handler(s) failed for delivery {delivery.id}; see the server log",
            )
        if background:
            status = STATUS_QUEUED if runs else STATUS_DUPLICATE
            return JSONResponse(
                {"status": status, "delivery": delivery.id, "runs": runs, "calls": calls},
                status_code=202 if runs else 200,
            )
        return JSONResponse({"status": STATUS_FUNC_CALLED, "calls": calls})

    def _record_handled(self, delivery: Delivery, *, ok: bool, wanted: bool) -> None:
        if wanted and self._handled is not None:
            self._handled.submit(delivery, ok)

    async def schedule(
        self, delivery: Delivery, specs: list[HandlerSpec], *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Record and publish the background runs (on scheduler threads, in batches with
        other requests' deliveries: the store and broker block, see batching.py).
        Raises ScheduleTimeout when that takes longer than ``timeout`` seconds."""
        if self._batcher is None:
            raise RuntimeError("Background handlers need a scheduler (GitHubApp provides one)")
        records, published = await self._batcher.schedule(delivery, specs, timeout)
        sent = set(published)
        return [
            {
                "id": r.id,
                "handler": r.handler,
                "queue": r.queue,
                "state": "queued" if r.id in sent else "received",
            }
            for r in records
        ]

    async def run_inline(
        self, delivery: Delivery, specs: list[HandlerSpec]
    ) -> tuple[dict[str, Any], list[str]]:
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
        return calls, failed

    async def call(self, spec: HandlerSpec, delivery: Delivery) -> Any:
        args = (
            (Event(delivery, auth=self._auth() if self._auth else None),)
            if spec.takes_event
            else ()
        )
        if spec.is_async:
            return await spec.func(*args)
        # Run in a copy of this context, so the handler still sees this delivery through
        # github_app.payload. run_in_executor costs about a third of anyio.to_thread here
        # (measured on the intake benchmark), and this is the hot path of every delivery.
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, context.run, partial(spec.func, *args))
