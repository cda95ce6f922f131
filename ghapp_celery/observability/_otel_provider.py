"""Which tracer provider a process uses: the one installed, or an SDK one from OTEL_*.

Kept apart from tracing.py (the span sites) so the decision reads in one place. Nothing here
imports ``opentelemetry`` at module level: ``installed_provider`` looks only at an API that is
imported already (FastAPI imports it), and ``sdk_provider`` runs only when tracing is on.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["configured_by_env", "installed_provider", "sdk_provider"]

LOG = logging.getLogger("ghapp_celery.observability")


def configured_by_env(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard OTEL_* variables ask for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def installed_provider() -> Any:
    """The global provider when someone installed a real one, else None. Looks only when the
    API is imported already (FastAPI imports it), so it never imports it itself."""
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return None
    provider = api.get_tracer_provider()
    if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
        return None
    return provider


def sdk_provider(role: str) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    env = os.environ
    named = env.get("OTEL_SERVICE_NAME") or "service.name" in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    # The SDK reads OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_* itself, the exporter the endpoint.
    provider = TracerProvider(
        resource=Resource.create({} if named else {"service.name": f"ghapp-celery-{role}"})
    )
    names = env.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")
    for name in filter(None, (n.strip() for n in names)):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol != "http/protobuf":
                LOG.warning("OTLP protocol %s is not supported; exporting http/protobuf", protocol)
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        else:
            LOG.warning("OTEL_TRACES_EXPORTER=%s is not supported here; install your own", name)
    return provider
