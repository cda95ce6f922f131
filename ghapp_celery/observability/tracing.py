"""OpenTelemetry tracing: one trace per delivery, from the webhook to each GitHub call.

Spans: the webhook (a server span, or a child of FastAPI's own server span when FastAPI's
telemetry made one), the store write and the publish of each run in the web process; the
trace context travels in the Celery message's headers (``traceparent``/``tracestate``, never
anything else of the request); in the worker one span per handler run, a child of the
delivery's trace, and under it one span per GitHub API try and per installation-token mint.

Off unless asked for, and then free: ``enabled`` is a module global the hot paths read before
calling anything here, and nothing imports ``opentelemetry`` until a span is made. It is on when

- the standard variables ask for export (``OTEL_TRACES_EXPORTER`` other than ``none``, or an
  ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``): each process then installs an SDK TracerProvider
  with a BatchSpanProcessor and the OTLP/HTTP exporter on first use (after the fork, in a
  prefork child), unless a provider is installed already, which is then used as it is;
- or a provider was installed by the user's code before the web app starts or the worker
  initialises (``setup`` looks), or ``enable()`` is called.

Batched spans live in memory until the processor's next export: ``flush()`` runs at the web
app's shutdown and at each worker process's, or they would be lost.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from ._otel_provider import configured_by_env, installed_provider, sdk_provider

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["enable", "enabled", "flush", "setup"]

LOG = logging.getLogger("ghapp_celery.observability")
T = TypeVar("T")
R = TypeVar("R")

TRACER_NAME = "ghapp_celery"
#: The message headers the trace context travels in (W3C trace context).
TRACE_HEADERS = ("traceparent", "tracestate")


#: Read before every span: False means nothing here is called and nothing is imported.
enabled: bool = configured_by_env()

_lock = threading.Lock()
_pid: int | None = None  # the process whose tracer is set up
_tracer: Tracer | None = None
_provider: Any = None  # the provider spans go to (ours or the user's), for flush()
_explicit = False  # enable() was called: the choice is the user's
_given: Any = None  # the provider enable() was given


def setup(role: str = "app") -> bool:
    """Decide for this process (the web app's start-up, a worker process's init): use the
    provider installed, or install one from the OTEL_* variables. Returns ``enabled``."""
    global enabled
    if not (enabled or _explicit) and installed_provider() is None:
        return False  # the common case: nothing configured, nothing imported
    enabled = True
    _ensure(role)
    return True


def enable(tracer_provider: TracerProvider | None = None) -> None:
    """Turn tracing on from code: spans go to ``tracer_provider``, else to the global one
    (installed from the OTEL_* variables when nobody installed one)."""
    global enabled, _explicit, _given, _pid
    with _lock:
        _explicit = enabled = True
        _given, _pid = tracer_provider, None  # the next span sets up with it


def _ensure(role: str = "app") -> Tracer:
    tracer = _tracer
    if tracer is not None and _pid == os.getpid():
        return tracer
    with _lock:
        if _tracer is None or _pid != os.getpid():
            _install(role)
        assert _tracer is not None
        return _tracer


def _install(role: str) -> None:
    global _tracer, _provider, _pid
    from opentelemetry import trace

    provider = _given or installed_provider()
    if provider is None and configured_by_env():
        provider = sdk_provider(role)
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:  # another part won the race: use its
            provider.shutdown()
            provider = trace.get_tracer_provider()
    if provider is None:
        provider = trace.get_tracer_provider()  # the proxy: spans follow a provider set later
    _provider, _pid = provider, os.getpid()
    _tracer = provider.get_tracer(TRACER_NAME)


def flush(timeout_millis: int = 10_000) -> None:
    """Export the spans still batched (web app shutdown, worker process shutdown)."""
    provider = _provider
    if provider is not None and _pid == os.getpid():
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            try:
                force_flush(timeout_millis)
            except Exception:  # a shutdown must go on whatever the exporter does
                LOG.warning("Could not flush the trace spans", exc_info=True)


# -- the web process ---------------------------------------------------------------------------


async def traced_webhook(answer: Callable[[Any], Awaitable[R]], request: Any) -> R:
    """``answer(request)`` inside the delivery's span: the server span, or a child of the
    server span already current (FastAPI's own telemetry, an ASGI middleware's)."""
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, StatusCode

    tracer = _ensure("web")
    parent: Context | None = None
    kind = SpanKind.INTERNAL
    if not trace.get_current_span().get_span_context().is_valid:
        kind, parent = SpanKind.SERVER, propagate.extract(request.headers)
    headers = request.headers
    attributes = {
        "http.request.method": "POST",
        "url.path": request.scope.get("path", ""),
        "github.delivery.id": headers.get("x-github-delivery"),
        "github.event": headers.get("x-github-event"),
        "github.hook.id": headers.get("x-github-hook-id"),
    }
    with tracer.start_as_current_span(
        "github.webhook",
        context=parent,
        kind=kind,
        attributes={k: v for k, v in attributes.items() if v is not None},
    ) as span:
        response = await answer(request)
        code = int(getattr(response, "status_code", 0))
        span.set_attribute("http.response.status_code", code)
        if code >= 500:
            span.set_status(StatusCode.ERROR)
        return response


def annotate_delivery(delivery: Any) -> None:
    """Put what the parsed delivery says on the current (webhook) span."""
    from opentelemetry import trace

    span = trace.get_current_span()
    span.update_name(f"github.webhook {delivery.name}")
    repository = delivery.payload.get("repository")
    attributes = {
        "github.action": delivery.action,
        "github.installation.id": delivery.installation_id,
        "github.repository": repository.get("full_name") if isinstance(repository, dict) else None,
    }
    span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def current_context() -> Any:
    """The caller's trace context, to hand to another thread (the scheduler's)."""
    from opentelemetry import context

    return context.get_current()


class _Batch(threading.local):
    parents: dict[str, Context] | None = None
    first: Context | None = None


_batch = _Batch()


def with_parents(parents: Sequence[tuple[str, Any]] | None, func: Callable[[T], R], arg: T) -> R:
    """``func(arg)`` on a scheduler thread, where each delivery's spans (store write, publish)
    belong to the request that queued it: ``parents`` pairs delivery ids and contexts."""
    if not parents:
        return func(arg)
    _batch.parents, _batch.first = dict(parents), parents[0][1]
    try:
        return func(arg)
    finally:
        _batch.parents = _batch.first = None


@contextlib.contextmanager
def store_span(deliveries: int) -> Iterator[None]:
    """The store write of a batch: a child of its first delivery's span, linked to the
    others' (they share the one transaction)."""
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind

    parents = _batch.parents or {}
    links = [Link(trace.get_current_span(c).get_span_context()) for c in parents.values()]
    with _ensure().start_as_current_span(
        "ghapp.store.record",
        context=_batch.first,
        kind=SpanKind.CLIENT,
        links=links[1:],
        attributes={"ghapp.batch.deliveries": deliveries},
    ):
        yield


@contextlib.contextmanager
def publish_span(
    delivery_id: str, run_id: str, task: str, queue: str, origin: Any = None
) -> Iterator[dict[str, str]]:
    """The publish of one run's message (``origin``: a republish's links and attributes, from
    trace_links.republished); yields the headers that carry its trace context."""
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind

    parent = (_batch.parents or {}).get(delivery_id)
    attributes = {
        "messaging.system": "celery",
        "messaging.operation.type": "send",
        "messaging.destination.name": queue,
        "ghapp.task": task,
        "ghapp.run.id": run_id,
        "github.delivery.id": delivery_id,
    }
    links, extra = origin or ((), {})
    attributes.update(extra)
    kind = SpanKind.PRODUCER
    with _ensure().start_as_current_span(
        f"publish {task}", context=parent, kind=kind, attributes=attributes, links=links
    ) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        # Only the trace context: a propagator configured for baggage must not carry more.
        yield {k: v for k, v in carrier.items() if k in TRACE_HEADERS}


# -- the worker --------------------------------------------------------------------------------

_outcome: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ghapp_run_outcome", default=None
)


def set_outcome(outcome: str) -> None:
    """Name the outcome of the run being traced (``failed`` or ``dead``, which look alike)."""
    _outcome.set(outcome)


def _message_context(request: Any) -> Context:
    from opentelemetry import propagate

    headers = getattr(request, "headers", None) or {}
    carrier = {}
    for key in TRACE_HEADERS:
        value = headers.get(key) if isinstance(headers, Mapping) else None
        value = value or getattr(request, key, None)  # Celery copies headers onto the request
        if isinstance(value, str):
            carrier[key] = value
    return propagate.extract(carrier)


def traced_run(task_name: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Wrap a bound Celery task function: one span per run, a child of the message's trace,
    with its attempt and outcome (succeeded, retrying, failed, dead, skipped)."""

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        @wraps(func)
        def run(task: Any, run_id: str, *args: Any, **kwargs: Any) -> R:
            if not enabled:
                return func(task, run_id, *args, **kwargs)
            return _run_in_span(func, task_name, task, run_id, args, kwargs)

        return run

    return decorate


def _run_in_span(
    func: Callable[..., R], task_name: str, task: Any, run_id: str, args: Any, kwargs: Any
) -> R:
    from opentelemetry.trace import SpanKind, StatusCode

    request = task.request
    delivery = kwargs.get("delivery") if isinstance(kwargs.get("delivery"), dict) else {}
    info = getattr(request, "delivery_info", None) or {}
    attributes = {
        "messaging.system": "celery",
        "messaging.operation.type": "process",
        "messaging.destination.name": info.get("routing_key") or info.get("queue"),
        "ghapp.task": task_name,
        "ghapp.run.id": run_id,
        "ghapp.run.attempt": int(getattr(request, "retries", 0) or 0) + 1,
        "github.delivery.id": delivery.get("id"),
        "github.event": delivery.get("event"),
        "github.action": delivery.get("action"),
        "github.installation.id": delivery.get("installation_id"),
    }
    token = _outcome.set(None)
    with _ensure("worker").start_as_current_span(
        f"run {task_name}",
        context=_message_context(request),
        kind=SpanKind.CONSUMER,
        attributes={k: v for k, v in attributes.items() if v is not None},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            result = func(task, run_id, *args, **kwargs)
        except BaseException as exc:
            retrying = type(exc).__name__ == "Retry"
            outcome = "retrying" if retrying else _outcome.get() or "failed"
            span.set_attribute("ghapp.run.outcome", outcome)
            if not retrying:
                span.record_exception(exc)
                span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        finally:
            _outcome.reset(token)
        skipped = isinstance(result, dict) and result.get("skipped")
        span.set_attribute("ghapp.run.outcome", "skipped" if skipped else "succeeded")
        return result


# -- GitHub calls ------------------------------------------------------------------------------

_NUMBER = re.compile(r"^\d+$")
_NAMED = {"repos": ("{owner}", "{repo}"), "orgs": ("{org}",), "users": ("{username}",)}


def route_template(path: str) -> str:
    """``/repos/o/r/issues/7/comments`` -> ``/repos/{owner}/{repo}/issues/{id}/comments``: a
    span name of bounded cardinality."""
    parts = path.strip("/").split("/")
    names = _NAMED.get(parts[0], ())
    for n, name in enumerate(names, start=1):
        if n < len(parts):
            parts[n] = name
    return "/" + "/".join("{id}" if _NUMBER.match(p) else p for p in parts)


def start_github_call(method: str, url: str, attempt: int) -> Span:
    """A client span for one try of a GitHub call; ended by ``end_github_call``."""
    from opentelemetry.trace import SpanKind

    parts = urlsplit(url)
    template = route_template(parts.path)
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "server.address": parts.hostname or "",
        "url.path": parts.path,
        "github.route": template,
    }
    if attempt:
        attributes["http.request.resend_count"] = attempt
    return _ensure().start_span(
        f"GitHub {method} {template}", kind=SpanKind.CLIENT, attributes=attributes
    )


def end_github_call(
    span: Span, status: int | None, limit: Any = None, *, from_cache: bool = False, error: str = ""
) -> None:
    from opentelemetry.trace import StatusCode

    if status is not None:
        span.set_attribute("http.response.status_code", status)
    span.set_attribute("github.from_cache", from_cache)
    if limit is not None:
        span.set_attribute("github.rate_limit.remaining", limit.remaining)
        if limit.resource:
            span.set_attribute("github.rate_limit.resource", limit.resource)
    if error or (status is not None and status >= 400):
        span.set_attribute("error.type", error or str(status))
        span.set_status(StatusCode.ERROR)
    span.end()


_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


def span(name: str, attributes: Mapping[str, Any]) -> contextlib.AbstractContextManager[Any]:
    """A span around a rare operation (a token mint); nothing when tracing is off."""
    if not enabled:
        return _NO_SPAN
    return _ensure().start_as_current_span(name, attributes=dict(attributes))
