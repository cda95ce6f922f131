"""Celery side of ghapp_celery: the only package that imports celery.

For now it exports the per-process event loop API (``loop.py``); the Celery app, the handler
tasks and the sweeper will be added here.
"""

from __future__ import annotations

from .loop import (
    HandlerTimeout,
    WorkerLoop,
    arun_handler,
    install_signal_handlers,
    run_handler,
    worker_loop,
)

__all__ = [
    "HandlerTimeout",
    "WorkerLoop",
    "arun_handler",
    "install_signal_handlers",
    "run_handler",
    "worker_loop",
]
