"""The package's warnings and errors on stderr until the application configures logging.

A library is meant to log nowhere by itself (a ``NullHandler``) and leave handlers to the
application. Where users run a FastAPI app that means nowhere at all: ``uvicorn myapp:app``
configures only its own ``uvicorn.*`` loggers, so a failing inline handler's traceback (the
delivery is answered 500 "see the server log") and the "no webhook secret" warning of
docs/configuration.md were written to no log. A ``celery worker`` puts handlers on the root
logger, but only once it starts, after the app module (and its start-up warnings) was imported.

Python's own answer for "no handler anywhere" is ``logging.lastResort``: WARNING and above to
stderr, and only when the record found no handler on its way up. :class:`FallbackStderrHandler`
is that rule for the ``ghapp_celery`` loggers, in uvicorn's line format
(``WARNING:  ghapp_celery: ...``) and with the logger's name. It is decided per record, so the
order of set-up does not matter: once the application configures logging (``basicConfig``,
``dictConfig``, ``uvicorn --log-config`` with a root logger, Celery's worker), or puts any
handler on a ``ghapp_celery`` logger, this handler stays silent and no line is written twice.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["FallbackStderrHandler", "install_fallback_handler"]


class UvicornStyleFormatter(logging.Formatter):
    """``LEVEL:`` padded as uvicorn's default formatter pads it, then the logger and message;
    a traceback, when the record has one, follows on the next lines (logging.Formatter)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        # uvicorn.logging.DefaultFormatter's levelprefix: the level, a colon, spaces to 9.
        padding = " " * max(0, 8 - len(record.levelname))
        return f"{record.levelname}:{padding} {record.name}: {record.message}"


class FallbackStderrHandler(logging.StreamHandler[TextIO]):
    """WARNING and above to the current ``sys.stderr``, for records no other handler takes."""

    def __init__(self) -> None:
        # Handler's, not StreamHandler's, __init__: the stream is the property below.
        logging.Handler.__init__(self, logging.WARNING)
        self.setFormatter(UvicornStyleFormatter())

    @property
    def stream(self) -> TextIO:  # type: ignore[override]  # logging._StderrHandler does this
        # Looked up per record, as logging.lastResort does: a redirected or captured stderr
        # (pytest's capsys, a supervisor's pipe) gets the line.
        return sys.stderr

    def handled_elsewhere(self, record: logging.LogRecord) -> bool:
        """Whether the record meets any other handler on its way up (logging.Logger.callHandlers
        counts every handler, whatever its level, before it falls back to lastResort)."""
        # The logger table read directly, not logging.getLogger: that takes logging's module
        # lock, which dictConfig holds while it waits for handler locks.
        found = logging.Logger.manager.loggerDict.get(record.name)
        # A record of no known logger (handed to the handler directly) is seen from the root.
        logger: logging.Logger | None = found if isinstance(found, logging.Logger) else logging.root
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return True
            if not logger.propagate:
                return False
            logger = logger.parent
        return False

    def handle(self, record: logging.LogRecord) -> bool:
        # Decided before the handler's lock is taken, and per record: configuring logging
        # after the app was imported (Celery's worker does) silences this handler from then on.
        if self.handled_elsewhere(record):
            return False
        return bool(super().handle(record))


def install_fallback_handler(logger: logging.Logger) -> FallbackStderrHandler:
    """Add a FallbackStderrHandler to ``logger`` once (a reloaded package adds no second one)."""
    for existing in logger.handlers:
        if isinstance(existing, FallbackStderrHandler):
            return existing
    handler = FallbackStderrHandler()
    logger.addHandler(handler)
    return handler
