"""Metrics in a Celery worker: enabled before the pool forks, served by the main process.

``celery -A myapp worker`` with ``GITHUBAPP_METRICS_ENABLED`` records the runs' metrics in
every pool process; with ``GITHUBAPP_METRICS_WORKER_PORT`` too, the worker's main process
serves their sum on that port (observability/worker_exposition.py says how).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..observability import metrics

if TYPE_CHECKING:
    from celery import Celery

    from ..config import Settings

__all__ = ["connect_worker_metrics"]


def _start(settings: Settings) -> None:
    from ..observability.worker_exposition import prepare_multiprocess_dir, serve_worker_metrics

    port = settings.metrics_worker_port
    # The directory first: prometheus-client decides at the first metric whether values go
    # to files, and the pool children inherit what the main process decided.
    path = prepare_multiprocess_dir() if port is not None else None
    if path is not None:
        # The app's module may have enabled them already (GitHubApp(FastAPI()) at import runs
        # init_app in the worker too), with values in this process's memory: the labelled
        # series would go to the files and the unlabelled ones, made at once, would not.
        # Made again here, every series goes to the files.
        metrics.disable()
    try:
        metrics.enable(per_installation=settings.metrics_per_installation)
    except ModuleNotFoundError:
        raise SystemExit(
            "ghapp_celery: the worker cannot start: GITHUBAPP_METRICS_ENABLED needs "
            "prometheus-client: pip install 'ghapp-celery[prometheus]'"
        ) from None
    if port is not None and path is not None:
        host = settings.metrics_worker_host
        try:
            serve_worker_metrics(port, host, path)
        except OSError as exc:
            raise SystemExit(
                f"ghapp_celery: the worker cannot start: its metrics port {host}:{port} "
                f"cannot be opened ({exc.strerror or type(exc).__name__})"
            ) from None


def connect_worker_metrics(celery: Celery, settings: Callable[[], Settings]) -> None:
    """Start the worker's metrics when a worker of ``celery`` starts (``celeryd_init``: in
    the main process, before the pool forks), if the settings ask for them."""
    from celery import signals

    def on_worker_start(sender: Any = None, instance: Any = None, **_: Any) -> None:
        if getattr(instance, "app", None) is not celery:
            return
        current = settings()
        if current.metrics_enabled:
            _start(current)

    signals.celeryd_init.connect(
        on_worker_start, weak=False, dispatch_uid=f"ghapp_celery.metrics.{id(celery)}"
    )
