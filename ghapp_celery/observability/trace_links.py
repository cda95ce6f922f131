"""Links from a delivery's later traces to the one it first came in with.

A GitHub redelivery (the same X-GitHub-Delivery posted again), a replay and a sweeper's
republish each start from a new request or from no request at all, so each is a trace of its
own. What ties them to the delivery's first trace is the W3C ``traceparent`` of its first
webhook span, stored with the delivery (the deliveries' ``trace_parent`` column): the new
span carries a span Link to it, so a tracing UI can jump from the replay to the original.

Only called when tracing is on (``tracing.enabled``); the store is handed strings, never
OpenTelemetry objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Link, SpanContext

__all__ = ["batch_traceparents", "link_redeliveries", "republished", "traceparent"]

#: The span attribute naming why a run was published again.
REASON = "ghapp.republish.reason"
#: The link attribute saying what the link points to.
LINKED = "ghapp.link"


def traceparent(context: Any = None) -> str | None:
    """The W3C traceparent of the span current in ``context`` (the caller's when None);
    None when there is no valid span (nothing sampled it, or tracing has no provider)."""
    from opentelemetry import trace

    span = trace.get_current_span(context).get_span_context()
    if not span.is_valid:
        return None
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{int(span.trace_flags):02x}"


def batch_traceparents() -> dict[str, str]:
    """On a scheduler thread inside ``tracing.with_parents``: each delivery's traceparent
    (its webhook span's), for the store to keep with a new delivery."""
    found: dict[str, str] = {}
    for delivery_id, context in (tracing._batch.parents or {}).items():
        value = traceparent(context)
        if value is not None:
            found[delivery_id] = value
    return found


def span_context(value: str | None) -> SpanContext | None:
    """The span context a stored traceparent names; None for None or a malformed one."""
    if not value:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    # The W3C propagator itself, not the global one: the column always holds W3C text.
    context = TraceContextTextMapPropagator().extract({"traceparent": value})
    found = trace.get_current_span(context).get_span_context()
    return found if found.is_valid else None


def link_redeliveries(originals: Mapping[str, str]) -> None:
    """Link each redelivery's webhook span (still open: its request awaits this batch) to
    the trace its first delivery stored. ``originals``: delivery id -> that traceparent."""
    from opentelemetry import trace

    parents = tracing._batch.parents or {}
    for delivery_id, value in originals.items():
        context = parents.get(delivery_id)
        original = span_context(value)
        if context is None or original is None:
            continue
        span = trace.get_current_span(context)
        if original.trace_id == span.get_span_context().trace_id:
            continue  # the same trace (a client that propagated it): a link says nothing
        span.add_link(original, {LINKED: "original_delivery"})
        span.set_attribute("github.redelivery", True)


def republished(reason: str, original: str | None) -> tuple[list[Link], dict[str, str]]:
    """The links and attributes of a republish's publish span: why it was published again,
    and a link to the delivery's first trace when the store knows it."""
    from opentelemetry.trace import Link

    context = span_context(original)
    links = [] if context is None else [Link(context, {LINKED: "original_delivery"})]
    return links, {REASON: reason}
