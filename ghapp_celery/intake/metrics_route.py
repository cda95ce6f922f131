"""``GET /metrics`` on the web app: the Prometheus scrape, with the store's queue gauges.

Mounted by ``init_app`` when ``GITHUBAPP_METRICS_ENABLED`` is set, at
``GITHUBAPP_METRICS_PATH``. With ``GITHUBAPP_METRICS_REQUIRE_TOKEN`` a scrape must send the
status API's token (``Authorization: Bearer ...``; Prometheus: ``authorization`` in the
scrape config); a wrong or missing one gets 401 with no metric in it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from ..exceptions import ConfigurationError
from ..observability import metrics

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import DeliveryStore

__all__ = ["mount_metrics", "store_reading"]

LOG = logging.getLogger("ghapp_celery.metrics")


def store_reading(store: DeliveryStore, queues: Iterable[str]) -> metrics.StoreReading:
    """The queue gauges' values now; every queue in ``queues`` appears, zero when empty."""
    now = datetime.now(UTC)
    waiting = store.waiting_runs()
    flying = store.runs_in_flight()
    stats = {}
    for queue in {*queues, *waiting, *flying}:
        depth, oldest = waiting.get(queue, (0, now))
        age = max(0.0, (now - oldest).total_seconds())
        stats[queue] = metrics.QueueStats(depth, age, flying.get(queue, 0))
    return metrics.StoreReading(stats, store.dead_runs())


def mount_metrics(
    app: FastAPI,
    settings: Settings,
    read_store: Callable[[], metrics.StoreReading] | None,
) -> None:
    """Enable the metrics in this process and add the scrape route to ``app``.

    ``read_store``: the queue gauges' reader (None when the app has no background handlers,
    so nothing waits in a queue). Raises ConfigurationError for a setting that cannot work.
    """
    token = settings.status_token.get_secret_value() if settings.status_token else ""
    if settings.metrics_require_token and not token:
        raise ConfigurationError(
            "GITHUBAPP_METRICS_REQUIRE_TOKEN is set but GITHUBAPP_STATUS_TOKEN is not: "
            "set the token scrapers must send"
        )
    try:
        metrics.enable(per_installation=settings.metrics_per_installation)
    except ModuleNotFoundError:
        raise ConfigurationError(
            "GITHUBAPP_METRICS_ENABLED needs prometheus-client: "
            "pip install 'ghapp-celery[prometheus]'"
        ) from None
    if read_store is not None:
        metrics.register_store_reader(read_store)
    expected = f"Bearer {token}".encode() if settings.metrics_require_token else None

    async def scrape(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse(
                    {"status": "ERROR", "error": "unauthorized", "description": "Bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        # Off the event loop: the store's gauges are a database read.
        body, content_type = await anyio.to_thread.run_sync(
            metrics.render, request.headers.get("accept")
        )
        return Response(body, media_type=content_type)

    app.add_route(settings.metrics_path, scrape, methods=["GET"], include_in_schema=False)
