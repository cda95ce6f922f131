"""The log context in a Celery worker: Celery's handlers get the fields, each run its own.

Here, not in observability/logs.py, because it is Celery wiring (only tasks/ imports celery,
and an inline-only app must not load it: tests/test_import_surface.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import Any

from celery import Celery, signals

from ..observability.logs import adopt_handler, pop_log_context, push_log_context

__all__ = ["bind_task_log_context", "connect_worker_logging"]

RunFields = Callable[[Any, tuple[Any, ...], dict[str, Any]], Mapping[str, Any]]


def _on_celery_logging(logger: logging.Logger | None = None, **_: Any) -> None:
    """``after_setup_logger`` / ``after_setup_task_logger``: the handlers Celery just put in
    place (sent only when no ``setup_logging`` receiver took over logging) get the context
    fields, and the JSON format when GITHUBAPP_LOG_FORMAT asks for it."""
    if logger is not None:
        for handler in logger.handlers:
            adopt_handler(handler)


def connect_worker_logging() -> None:
    uid = "ghapp_celery.tasks.worker_logs"
    signals.after_setup_logger.connect(_on_celery_logging, weak=False, dispatch_uid=f"{uid}.root")
    signals.after_setup_task_logger.connect(
        _on_celery_logging, weak=False, dispatch_uid=f"{uid}.task"
    )


# By task id and thread: the same message delivered twice may run in two threads at once.
_task_tokens: dict[tuple[str, int], Token[Mapping[str, Any]]] = {}


def bind_task_log_context(celery: Celery, fields: RunFields) -> None:
    """While a task of ``celery`` runs, its records carry ``fields(task, args, kwargs)``.

    Set on ``task_prerun`` and reset on ``task_postrun``, not inside the task function: Celery
    logs a run's outcome (``Task ... succeeded in``, ``raised unexpected``, ``retry: Retry
    in``) after the function returned and before postrun, and those lines belong to the run.
    Both signals are sent in the thread that runs the task (prefork child, threads pool thread,
    solo), so the context is that run's. Idempotent per Celery app.
    """

    def prerun(
        task_id: str = "", task: Any = None, args: Any = (), kwargs: Any = None, **_: Any
    ) -> None:
        if getattr(task, "app", None) is not celery or not task_id:
            return
        token = push_log_context(fields(task, tuple(args or ()), dict(kwargs or {})))
        _task_tokens[(task_id, threading.get_ident())] = token

    def postrun(task_id: str = "", **_: Any) -> None:
        token = _task_tokens.pop((task_id, threading.get_ident()), None)
        if token is not None:
            pop_log_context(token)

    uid = f"ghapp_celery.tasks.worker_logs.{id(celery)}"
    signals.task_prerun.connect(prerun, weak=False, dispatch_uid=f"{uid}.prerun")
    signals.task_postrun.connect(postrun, weak=False, dispatch_uid=f"{uid}.postrun")
