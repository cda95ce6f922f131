"""Keep secrets that travel in URLs out of access logs.

GitHub sends the browser back to the OAuth callback with the authorization ``code`` and the
login's ``state`` in the query string, and uvicorn's access log records every request's path
*with* its query: ``"GET /auth/github/callback?code=...&state=... HTTP/1.1" 303``. A code is
single-use and short-lived, but a log is kept, shipped and read by more people than the app's
secrets are. ``RedactOAuthQuery`` replaces the values of such parameters (``code``, ``state``,
and any ``token``, ``access_token``, ``refresh_token``, ...) with ``REDACTED``; the path, the
other parameters and the status stay.

Where it is on by default:

- ``init_app`` adds it to the ``uvicorn.access`` logger when it mounts the OAuth routes, so
  ``uvicorn myapp:app`` (and gunicorn's uvicorn workers, which log through that logger) write
  redacted lines with no set-up;
- ``ghapp_celery.testing.serve`` adds it too.

For any other logger or server, add it yourself: ``redact_access_log("hypercorn.access")``, or
in a ``logging.config.dictConfig`` / ``uvicorn --log-config`` file::

    "filters": {"redact": {"()": "ghapp_celery.logging_filters.RedactOAuthQuery"}},
    "loggers": {"uvicorn.access": {"handlers": ["access"], "filters": ["redact"], ...}},
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "REDACTED",
    "SENSITIVE_QUERY_NAMES",
    "RedactOAuthQuery",
    "redact_access_log",
    "redact_query",
]

REDACTED = "REDACTED"

#: Query parameters whose values never reach a log (compared case-insensitively, decoded).
SENSITIVE_QUERY_NAMES = frozenset(
    {
        "code",
        "state",
        "token",
        "access_token",
        "refresh_token",
        "session_token",
        "id_token",
        "client_secret",
        "code_verifier",
    }
)

# A query string: from a "?" to the end of the URL (whitespace, a quote or the fragment).
_QUERY = re.compile(r"\?([^\s\"'#]*)")


def _redact_pairs(query: str, names: frozenset[str]) -> str:
    parts = query.split("&")
    for index, part in enumerate(parts):
        key, sep, _ = part.partition("=")
        # Decoded the way the app reads it, so ``cod%65=`` is the code too.
        if sep and unquote_plus(key).strip().lower() in names:
            parts[index] = f"{key}={REDACTED}"
    return "&".join(parts)


def redact_query(text: str, names: Iterable[str] = SENSITIVE_QUERY_NAMES) -> str:
    """``text`` with the values of the ``names`` query parameters of any URL in it redacted."""
    if "?" not in text:
        return text
    wanted = frozenset(name.lower() for name in names)
    return _QUERY.sub(lambda match: "?" + _redact_pairs(match.group(1), wanted), text)


class RedactOAuthQuery(logging.Filter):
    """A logging filter redacting sensitive query values in a record; it drops no record.

    It rewrites the record's string arguments (uvicorn's access log passes the path as one, and
    its formatter reads them back), or the message itself when it has no arguments.
    """

    def __init__(self, name: str = "", names: Iterable[str] = SENSITIVE_QUERY_NAMES) -> None:
        super().__init__(name)
        self.names = frozenset(n.lower() for n in names)

    def _clean(self, value: Any) -> Any:
        return redact_query(value, self.names) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(self._clean(arg) for arg in args)
        elif isinstance(args, Mapping) and args:
            record.args = {key: self._clean(value) for key, value in args.items()}
        elif isinstance(record.msg, str):
            record.msg = redact_query(record.msg, self.names)
        return True


def redact_access_log(logger: str | logging.Logger = "uvicorn.access") -> RedactOAuthQuery:
    """Add a RedactOAuthQuery to ``logger`` (uvicorn's access log by default), once.

    A filter on the logger itself sees every record before any handler does, and survives
    uvicorn's (or your) ``dictConfig``, which replaces the logger's handlers but not its
    filters. Returns the filter in place.
    """
    target = logging.getLogger(logger) if isinstance(logger, str) else logger
    for existing in target.filters:
        if isinstance(existing, RedactOAuthQuery):
            return existing
    installed = RedactOAuthQuery()
    target.addFilter(installed)
    return installed
