"""One Celery task per background handler, and what a run does in the worker.

A message carries the run id (also the Celery task id), and the delivery: id, event, action,
installation id, hook ids and payload. Never a token: the worker mints its own.

In the worker, a run first *claims* itself in the store (an atomic update), so a message that
arrives twice (Redis redelivery after a crash, a sweeper republish) runs the handler once.
Then it runs the handler (coroutines on the process's event loop), and records the outcome:
succeeded; retrying (transient error, with Celery's exponential backoff; or a GitHub rate
limit, with a countdown to the reset, counted apart); failed (permanent); dead (retries used up).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from celery import Celery, Task

from ..context import Event, delivery_context
from ..exceptions import GitHubRateLimitError
from ..github.auth import no_rate_limit_waits
from ..observability import metrics, tracing
from ..policy import Outcome, classify
from ..routing import HandlerSpec
from ..webhooks import Delivery
from .celery_app import queue_of
from .lease import lease_keeper
from .loop import run_handler, worker_loop
from .outcome import write_through_outage
from .worker_logs import bind_task_log_context

if TYPE_CHECKING:
    from ..config import Settings
    from ..github.auth import GitHubAppAuth
    from ..store import DeliveryStore

__all__ = [
    "delivery_from_message",
    "delivery_message",
    "error_summary",
    "register_handler_task",
]

LOG = logging.getLogger("ghapp_celery.tasks")

_MAX_ERROR_CHARS = 2000


class AppServices(Protocol):
    """What a handler task needs from the GitHubApp (kept narrow to avoid an import cycle)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> DeliveryStore: ...

    @property
    def auth(self) -> GitHubAppAuth: ...


def delivery_message(delivery: Delivery) -> dict[str, Any]:
    """The JSON-able form of a delivery put into a task message.

    The payload travels as the zlib bytes the store keeps (``Delivery.payload_zlib``, in
    base64): kombu encodes one short string instead of walking the payload or escaping its
    text, and the worker parses it with the plain C decoder.
    """
    return {
        **delivery.header_fields(),
        "payload_zlib": base64.b64encode(delivery.payload_zlib).decode("ascii"),
    }


def delivery_from_message(message: dict[str, Any]) -> Delivery:
    """The delivery of a task message; messages of earlier versions carried the payload as
    its JSON text (``payload_json``) or as an object (``payload``)."""
    packed = message.get("payload_zlib")
    text = message.get("payload_json")
    if isinstance(packed, str):
        text = zlib.decompress(base64.b64decode(packed)).decode()
    payload = json.loads(text) if isinstance(text, str) else dict(message["payload"])
    return Delivery(
        id=str(message["id"]),
        event=str(message["event"]),
        payload=payload,
        action=message.get("action"),
        installation_id=message.get("installation_id"),
        hook_id=message.get("hook_id"),
        target_type=message.get("target_type"),
        target_id=message.get("target_id"),
        payload_json=text if isinstance(text, str) else None,
    )


def run_log_fields(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a run's log lines carry (observability/logs.py), from its message's header fields
    only: the payload is not decoded for it, and no token is in a message."""
    message = kwargs.get("delivery", args[1] if len(args) > 1 else None)
    message = message if isinstance(message, dict) else {}
    event, action = message.get("event"), message.get("action")
    return {
        "run_id": task.request.id,
        "task": task.name,
        "attempt": int(task.request.retries or 0) + 1,
        "delivery_id": message.get("id"),
        "event": f"{event}.{action}" if event and action else event,
        "installation_id": message.get("installation_id"),
    }


def error_summary(exc: BaseException) -> str:
    """``Type: message``, bounded, for the run's ``last_error`` (the store is not public)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def _now() -> datetime:
    return datetime.now(UTC)


_sessions_ready: set[tuple[int, int]] = set()


def _ensure_github_session(auth: GitHubAppAuth) -> None:
    """Create the process's GitHub session on the worker loop once, as a loop resource, so
    the loop closes it at shutdown (``Event.github`` then finds it there)."""
    key = (os.getpid(), id(auth))
    if key in _sessions_ready:
        return
    from ..github import session_resource

    name = f"ghapp-github-session-{id(auth)}"
    worker_loop.register_resource(name, *session_resource(auth))
    worker_loop.resource(name)
    _sessions_ready.add(key)


def register_handler_task(celery: Celery, services: AppServices, spec: HandlerSpec) -> Task:
    """Register ``spec``'s Celery task on ``celery`` and return it."""
    policy = spec.retry
    queue = queue_of(celery, spec.task_name)  # the metrics' label, as the scheduler's
    bind_task_log_context(celery, run_log_fields)  # once per Celery app

    @celery.task(  # type: ignore[untyped-decorator]
        name=spec.task_name,
        # Not shared: Celery would otherwise add this task to every Celery app in the
        # process, and a second GitHubApp's task of the same name would be ignored.
        shared=False,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
        **policy.celery_options(),
    )
    @tracing.traced_run(spec.task_name)  # a span per run when tracing is on
    def run(
        self: Task, run_id: str, delivery: dict[str, Any], rate_limited: int = 0
    ) -> dict[str, Any]:
        settings = services.settings
        store = services.store
        timeout = spec.timeout or settings.handler_timeout
        lease = settings.run_lease
        within = settings.outcome_write_timeout
        claimed = write_through_outage(
            lambda: store.start(run_id, lease_seconds=lease),
            what="the claim",
            run_id=run_id,
            within=within,
        )
        if not claimed:
            # Already done, or running in a live worker: this message is a duplicate.
            LOG.info("Run %s of %s is not claimable; skipping duplicate", run_id, spec.task_name)
            return {"run": run_id, "skipped": True}
        if metrics.enabled():
            metrics.run_state(spec.task_name, queue, "started")
            _observe_queue_wait(self, queue)
        parsed = delivery_from_message(delivery)
        auth = services.auth
        if spec.is_async:
            _ensure_github_session(auth)
        args = (Event(parsed, auth=auth, run_id=run_id),) if spec.takes_event else ()
        started = time.monotonic()
        # The lease is held until the outcome is written, however long the store takes.
        with lease_keeper.hold(store, run_id, lease):
            try:
                # A rate-limited token mint raises instead of sleeping on this thread; the
                # failure below then retries the run with a countdown to the reset.
                with delivery_context(parsed), no_rate_limit_waits():
                    run_handler(spec.func, *args, timeout=timeout)
            except Exception as exc:
                metrics.run_finished(spec.task_name, time.monotonic() - started)
                _after_failure(
                    self, store, spec, queue, run_id, delivery, rate_limited, exc, within
                )
                raise
            write_through_outage(
                lambda: store.mark_succeeded(run_id),
                what="success",
                run_id=run_id,
                within=within,
            )
        if metrics.enabled():
            metrics.run_finished(spec.task_name, time.monotonic() - started)
            metrics.run_state(spec.task_name, queue, "succeeded")
        LOG.info(
            "Run %s (%s, delivery %s) succeeded in %.1f ms",
            run_id,
            spec.task_name,
            parsed.id,
            (time.monotonic() - started) * 1000,
        )
        return {"run": run_id, "state": "succeeded"}

    return run


#: The message header with the run's recorded time (epoch seconds), set by the scheduler.
RECORDED_AT_HEADER = "ghapp_recorded_at"


def _observe_queue_wait(task: Task, queue: str) -> None:
    """Recorded to started, for a run's first start (a retry's wait is its countdown)."""
    if task.request.retries:
        return
    recorded = task.request.get(RECORDED_AT_HEADER)
    if isinstance(recorded, (int, float)):
        # Wall clocks of two hosts (web, worker): as good as their NTP, which is what a
        # queue wait of seconds to minutes needs.
        metrics.run_queue_wait(queue, time.time() - float(recorded))


def _after_failure(
    task: Task,
    store: DeliveryStore,
    spec: HandlerSpec,
    queue: str,
    run_id: str,
    delivery: dict[str, Any],
    rate_limited: int,
    exc: Exception,
    within: float,
) -> None:
    """Record the failure and, when the policy allows, raise Celery's Retry for another try.

    Each record is written through a store outage of up to ``within`` seconds."""
    policy = spec.retry

    def record(what: str, state: str, write: Callable[[], bool]) -> None:
        write_through_outage(write, what=what, run_id=run_id, within=within)
        metrics.run_state(spec.task_name, queue, state)

    outcome = classify(exc, policy)
    retries = int(task.request.retries or 0)
    error_retries = retries - rate_limited
    summary = error_summary(exc)

    if outcome is Outcome.RATE_LIMITED and rate_limited < policy.max_rate_limit_retries:
        assert isinstance(exc, GitHubRateLimitError)
        wait = exc.retry_after if exc.retry_after is not None else 60.0
        countdown = max(1.0, min(float(wait), policy.max_rate_limit_wait))
        retry_at = _now() + timedelta(seconds=countdown)
        record(
            "a rate-limit wait",
            "retrying",
            lambda: store.mark_retrying(run_id, summary, retry_at=retry_at),
        )
        LOG.warning("Run %s rate limited; retrying in %.0f s", run_id, countdown)
        # A rate-limit wait must not use up the error retries: allow exactly one more retry
        # than Celery has counted, and carry our own count in the message.
        raise task.retry(
            exc=exc,
            countdown=countdown,
            max_retries=retries + 1,
            args=(run_id,),
            kwargs={"delivery": delivery, "rate_limited": rate_limited + 1},
        )

    if outcome is Outcome.RETRY and error_retries < policy.max_retries:
        countdown = policy.backoff(error_retries)
        retry_at = _now() + timedelta(seconds=countdown)
        record(
            "a retry", "retrying", lambda: store.mark_retrying(run_id, summary, retry_at=retry_at)
        )
        LOG.warning(
            "Run %s failed (%s); retry %d/%d in %.1f s",
            run_id,
            type(exc).__name__,
            error_retries + 1,
            policy.max_retries,
            countdown,
        )
        raise task.retry(
            exc=exc,
            countdown=countdown,
            # Celery counts every retry; offset its bound by the rate-limit waits so only
            # error retries count against max_retries.
            max_retries=policy.max_retries + rate_limited,
            args=(run_id,),
            kwargs={"delivery": delivery, "rate_limited": rate_limited},
        )

    # No traceback here: the exception is re-raised, and Celery logs it with its traceback
    # ("Task ...[<run id>] raised unexpected"); logging it here too printed it twice.
    if outcome is Outcome.FAIL:
        record("the failure", "failed", lambda: store.mark_failed(run_id, summary))
        tracing.set_outcome("failed")
        LOG.error("Run %s failed permanently: %s", run_id, summary)
    else:
        record("the death", "dead", lambda: store.mark_dead(run_id, summary))
        tracing.set_outcome("dead")
        LOG.error("Run %s is dead after %d retries: %s", run_id, retries, summary)
