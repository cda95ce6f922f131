"""The delivery and run each log line belongs to, as record attributes and in a JSON format.

While the intake handles a delivery (from its parse to its answer) and while a worker runs a
handler, a context variable holds what identifies the work: ``delivery_id``, ``event``
(``issues.opened``), ``installation_id`` and, in the worker, ``run_id``, ``task`` and
``attempt``. Only these six names exist (``log_context`` takes no others), so no token,
secret or payload can get into a log line this way.

How the fields reach a record, and why in two steps:

1. A **record factory** (installed when this module is imported) snapshots the context onto
   every record as one attribute, ``ghapp_log_context``. A factory, not a filter, because it
   runs for every record of every logger, the user's own and third parties' (httpx, Celery)
   included, whatever handlers a ``dictConfig`` later puts in place, and it runs in the thread
   and context that logged (a QueueHandler's listener thread would see no context).
2. :class:`LogContextFilter` (on a handler) and :class:`JsonFormatter` copy the snapshot onto
   the record as plain attributes (``record.delivery_id``, ...), *without* overwriting any the
   record has. The factory cannot set them itself: ``Logger.makeRecord`` raises KeyError for an
   ``extra={...}`` key the factory already set, and ``log.info(..., extra={"event": ...})`` in
   a handler is ordinary code that must not start failing because it runs inside a delivery.

The defaults the package installs (the stderr fallback, Celery's worker handlers) get both;
a ``dictConfig`` names them (docs/observability.md#logs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "FIELDS",
    "JsonFormatter",
    "LogContextFilter",
    "LogFormat",
    "adopt_handler",
    "apply_log_format",
    "current_log_context",
    "install_record_factory",
    "log_context",
    "pop_log_context",
    "push_log_context",
]

#: The context fields, in the order the JSON format writes them.
FIELDS = ("delivery_id", "event", "installation_id", "run_id", "task", "attempt")
#: The record attribute the factory puts the snapshot in.
SNAPSHOT = "ghapp_log_context"

LogFormat = Literal["text", "json"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("ghapp_celery_log_context", default=_EMPTY)


def current_log_context() -> Mapping[str, Any]:
    """The fields set for the code running now (empty outside a delivery or run)."""
    return _CONTEXT.get()


def _set(fields: Mapping[str, Any]) -> Token[Mapping[str, Any]]:
    # A plain dict, never changed once set: a new one per change keeps a snapshot valid.
    merged = {**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}}
    return _CONTEXT.set(merged)


class _LogContext:
    """The ``with`` block of log_context: a class, not @contextmanager, as it is entered for
    every delivery on the intake's hot path (measured: 2.5 µs to enter and exit, against
    5.2 µs as a generator)."""

    __slots__ = ("_fields", "_token")

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields
        self._token: Token[Mapping[str, Any]] | None = None

    def __enter__(self) -> None:
        self._token = _set(self._fields)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _CONTEXT.reset(self._token)
            self._token = None


def log_context(
    *,
    delivery_id: str | None = None,
    event: str | None = None,
    installation_id: int | None = None,
    run_id: str | None = None,
    task: str | None = None,
    attempt: int | None = None,
) -> AbstractContextManager[None]:
    """Within the ``with`` block, log records carry these fields (added to any already set)."""
    return _LogContext(
        {
            "delivery_id": delivery_id,
            "event": event,
            "installation_id": installation_id,
            "run_id": run_id,
            "task": task,
            "attempt": attempt,
        }
    )


# -- the record factory -----------------------------------------------------------------------


def install_record_factory() -> None:
    """Wrap the current LogRecord factory so each record snapshots the context; once."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_ghapp_log_context", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        # One ContextVar read and one attribute per record: nothing is copied.
        setattr(record, SNAPSHOT, _CONTEXT.get())
        return record

    factory._ghapp_log_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _apply(record: logging.LogRecord) -> None:
    """Copy the record's snapshot onto it as attributes, keeping any it already has (an
    ``extra`` of the same name wins); absent fields become None, so a ``%(run_id)s`` format
    works on every record."""
    snapshot: Mapping[str, Any] = getattr(record, SNAPSHOT, None) or _EMPTY
    values = record.__dict__
    for name in FIELDS:
        if name not in values:
            values[name] = snapshot.get(name)


class LogContextFilter(logging.Filter):
    """Adds the context fields to each record as attributes; drops nothing. Put it on a
    handler whose format names them (``%(delivery_id)s``) or that ships attributes."""

    def filter(self, record: logging.LogRecord) -> bool:
        _apply(record)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    the context fields that are set, and ``exc_info`` (the traceback, one string) when there
    is one. No other record attribute is written: Celery puts a task's arguments (the delivery's
    payload) in its records' ``data``, and a generic "every extra" formatter would ship it."""

    def format(self, record: logging.LogRecord) -> str:
        _apply(record)
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                document[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exc_info"] = record.exc_text
        if record.stack_info:
            document["stack_info"] = self.formatStack(record.stack_info)
        # default=str: an ``extra`` of one of the names may hold anything.
        return json.dumps(document, default=str, ensure_ascii=False)


# -- the defaults the package installs -----------------------------------------------------------

_format: LogFormat = "text"


def apply_log_format(log_format: LogFormat, *handlers: logging.Handler) -> None:
    """Use ``log_format`` (GITHUBAPP_LOG_FORMAT) for the handlers the package installs:
    ``handlers`` now (the stderr fallback, passed in: it is a sibling module of this layer),
    and every handler given to ``adopt_handler`` later (Celery's, when a worker sets up its
    logging: tasks/worker_logs.py)."""
    global _format
    _format = log_format
    for handler in handlers:
        adopt_handler(handler)


def adopt_handler(handler: logging.Handler) -> None:
    """Give ``handler`` the context fields, and the JSON format when it is the one asked for."""
    if not any(isinstance(f, LogContextFilter) for f in handler.filters):
        handler.addFilter(LogContextFilter())
    if _format == "json" and not isinstance(handler.formatter, JsonFormatter):
        handler.setFormatter(JsonFormatter())


def push_log_context(fields: Mapping[str, Any]) -> Token[Mapping[str, Any]]:
    """Add ``fields`` to the context until ``pop_log_context`` (for code that cannot use a
    ``with`` block: a task's prerun and postrun signals). Only the six FIELDS are kept."""
    return _set({k: v for k, v in fields.items() if k in FIELDS})


def pop_log_context(token: Token[Mapping[str, Any]]) -> None:
    try:
        _CONTEXT.reset(token)
    except ValueError:  # set in another context (cannot happen with Celery's pools)
        _CONTEXT.set(_EMPTY)


install_record_factory()
