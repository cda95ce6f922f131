"""Celery side of ghapp_celery: the only package that imports celery.

It exports the per-process event loop API (``loop.py``); the Celery app (``celery_app``), the
handler tasks (``handlers``), the scheduler, the sweeper and the embedded broker's transport
(``sqlite_broker``) are imported from their modules.
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES

from .loop import (
    HandlerTimeout,
    WorkerLoop,
    arun_handler,
    install_signal_handlers,
    run_handler,
    worker_loop,
)

# kombu resolves a broker URL's scheme through this table and imports the transport only when
# a connection is made; no kombu transport uses "sqlite". Here, so that any Celery app in a
# process that imports ghapp_celery.tasks can use the embedded broker's URL.
TRANSPORT_ALIASES.setdefault("sqlite", "ghapp_celery.tasks.sqlite_broker:Transport")

__all__ = [
    "HandlerTimeout",
    "WorkerLoop",
    "arun_handler",
    "install_signal_handlers",
    "run_handler",
    "worker_loop",
]
