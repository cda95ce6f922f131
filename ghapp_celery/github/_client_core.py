"""What the async and the blocking GitHub clients share, free of I/O.

URLs (github.com and Enterprise Server), the response object, the mapping of answers to the
error tree, the per-(identity, resource) rate-limit tracker and the retry arithmetic. Both
clients run the same rules by calling into here; only the sending and the sleeping differ.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from ghapp_celery.exceptions import (
    Forbidden,
    HTTPError,
    NotFound,
    RateLimited,
    SecondaryRateLimited,
    ServerError,
    Unauthorized,
    ValidationFailed,
)
from ghapp_celery.github.pagination import parse_link
from ghapp_celery.github.ratelimit import (
    RateLimit,
    is_rate_limited,
    is_secondary,
    rate_limit_info,
    retry_delay,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "MEDIA_TYPE",
    "GitHubResponse",
    "RateLimitTracker",
    "RetrySettings",
    "api_urls",
    "decode_answer",
    "error_from_response",
    "resource_for",
]

DEFAULT_BASE_URL: Final = "https://api.github.com"
API_VERSION: Final = "2022-11-28"
MEDIA_TYPE: Final = "application/vnd.github+json"
#: Methods that are safe to send twice: retried on 5xx and on any transport failure. POST and
#: PATCH are only retried when the request provably never left (the connection was refused).
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_ERROR_CLASSES: Final[dict[int, type[HTTPError]]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    422: ValidationFailed,
}


def api_urls(base_url: str | None) -> tuple[str, str]:
    """(REST root, GraphQL endpoint) for github.com or a GitHub Enterprise Server.

    ``https://api.github.com`` → ``…/graphql``. An Enterprise host may be given as
    ``https://HOST`` or ``https://HOST/api/v3``: REST is at ``/api/v3``, GraphQL at
    ``/api/graphql``. Any other URL — one with another path, or a loopback server such as
    FakeGitHub (``http://127.0.0.1:PORT``) — is taken as the REST root, GraphQL under it.
    """
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    parts = urlsplit(base)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    root = f"{parts.scheme}://{parts.netloc}"
    path = parts.path
    if parts.netloc == "api.github.com" and path == "":
        return base, f"{base}/graphql"
    if path == "" and parts.hostname not in _LOOPBACK:
        return f"{root}/api/v3", f"{root}/api/graphql"
    if path.endswith("/api/v3"):
        return base, f"{root}{path[: -len('/v3')]}/graphql"
    return base, f"{base}/graphql"


def resource_for(path: str) -> str:
    """The rate-limit bucket GitHub charges a path to, before the answer tells us."""
    if path.endswith("/graphql"):
        return "graphql"
    if "/search/code" in path:
        return "code_search"
    if "/search/" in path:
        return "search"
    return "core"


def decode_answer(content: bytes, content_type: str | None) -> Any:
    """JSON for JSON media types, text for the rest (diffs, raw files), None when empty."""
    if not content:
        return None
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        return json.loads(content)
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return content


@dataclass(frozen=True)
class GitHubResponse:
    """A decoded answer: ``data`` (JSON, text or None), ``status``, ``headers``, ``rate_limit``.

    ``from_cache`` is True when GitHub said ``304 Not Modified`` and ``data`` is the body kept
    from the earlier answer (``status`` is then 304).
    """

    status: int
    headers: httpx.Headers
    data: Any
    url: str
    rate_limit: RateLimit | None = None
    from_cache: bool = False

    @property
    def links(self) -> dict[str, str]:
        """``rel`` → URL from the ``Link`` header (``next``, ``last``, ``prev``, ``first``)."""
        return parse_link(self.headers.get("link"))

    @property
    def next_url(self) -> str | None:
        return self.links.get("next")

    @property
    def etag(self) -> str | None:
        value: str | None = self.headers.get("etag")
        return value

    @property
    def request_id(self) -> str | None:
        value: str | None = self.headers.get("x-github-request-id")
        return value


@dataclass(frozen=True)
class RetrySettings:
    """Backoff for 5xx, timeouts and connection failures: ``attempts`` retries after the first
    try, waiting ``backoff * 2**n`` seconds (at most ``max_backoff``), times a random factor in
    [0.5, 1.0] when ``jitter``. Statuses in ``statuses`` count as transient."""

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: bool = True
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({500, 502, 503, 504}))

    def delay(self, attempt: int) -> float:
        wait = min(self.max_backoff, self.backoff * float(1 << min(attempt, 30)))
        return wait * random.uniform(0.5, 1.0) if self.jitter else wait

    def retries_status(self, method: str, status: int) -> bool:
        return status in self.statuses and method.upper() in IDEMPOTENT

    @staticmethod
    def retries_transport(method: str, exc: httpx.TransportError) -> bool:
        if method.upper() in IDEMPOTENT:
            return True
        # The request never reached GitHub: safe even for a POST.
        return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))


def _error_body(data: Any) -> tuple[str | None, str | None]:
    if isinstance(data, dict):
        message = data.get("message")
        docs = data.get("documentation_url")
        return (
            str(message) if message is not None else None,
            str(docs) if docs is not None else None,
        )
    if isinstance(data, str) and data.strip():
        return data.strip()[:500], None
    return None, None


def _safe_headers(headers: httpx.Headers) -> dict[str, str]:
    """The answer's headers, for an exception (an answer never carries our token)."""
    return {k: v for k, v in headers.items() if k.lower() not in ("set-cookie",)}


def error_from_response(
    method: str,
    url: str,
    status: int,
    headers: httpx.Headers,
    data: Any,
    *,
    now: float,
    secondary_hits: int = 0,
) -> HTTPError:
    """The exception for a non-2xx, non-304 answer (rate limits included)."""
    message, docs = _error_body(data)
    common: dict[str, Any] = {
        "documentation_url": docs,
        "request_id": headers.get("x-github-request-id"),
        "headers": _safe_headers(headers),
        "method": method,
        "url": url,
    }
    text = message or ""
    if is_rate_limited(status, headers, text):
        limit = RateLimit.from_headers(headers)
        info = rate_limit_info(headers)
        resource = limit.resource if limit else None
        if is_secondary(status, headers, text):
            wait = retry_delay(headers, secondary_hits, now)
            return SecondaryRateLimited(
                message or "GitHub secondary rate limit exceeded",
                status,
                data,
                retry_after=wait,
                reset_at=now + wait,
                resource=resource,
                rate_limit_info=info,
                **common,
            )
        reset = float(limit.reset) if limit else now + retry_delay(headers, 0, now)
        return RateLimited(
            message or "GitHub rate limit exceeded",
            status,
            data,
            retry_after=max(0.0, reset - now),
            reset_at=reset,
            resource=resource,
            rate_limit_info=info,
            **common,
        )
    cls = _ERROR_CLASSES.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else HTTPError
    return cls(message or f"GitHub answered HTTP {status}", status, data, **common)


class RateLimitTracker:
    """The last known rate limit per (identity, resource), and secondary-limit streaks.

    Shared by every client of a session (thread-safe), so once one handler learns that an
    installation's ``core`` budget is gone, the next call for that installation is refused
    before it is sent, as GitHub asks, instead of spending a request on a 403.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limits: dict[tuple[str, str], RateLimit] = {}
        self._secondary: dict[str, int] = {}

    def get(self, identity: str, resource: str = "core") -> RateLimit | None:
        with self._lock:
            return self._limits.get((identity, resource))

    def snapshot(self) -> dict[tuple[str, str], RateLimit]:
        with self._lock:
            return dict(self._limits)

    def update(self, identity: str, headers: Mapping[str, str], fallback: str) -> RateLimit | None:
        limit = RateLimit.from_headers(headers)
        if limit is not None:
            with self._lock:
                self._limits[(identity, limit.resource or fallback)] = limit
        return limit

    def exhausted_until(self, identity: str, resource: str, now: float) -> float | None:
        """The reset time when the bucket is known to be empty now, else None."""
        with self._lock:
            limit = self._limits.get((identity, resource))
        if limit is None or not limit.exhausted or limit.reset <= now:
            return None
        return float(limit.reset)

    def secondary_hits(self, identity: str) -> int:
        with self._lock:
            return self._secondary.get(identity, 0)

    def record_secondary(self, identity: str) -> None:
        with self._lock:
            self._secondary[identity] = self._secondary.get(identity, 0) + 1

    def record_success(self, identity: str) -> None:
        if self._secondary:
            with self._lock:
                self._secondary.pop(identity, None)


def exhausted_error(
    identity: str, resource: str, reset: float, now: float, method: str, url: str
) -> RateLimited:
    return RateLimited(
        f"GitHub's {resource} rate limit for {identity} is used up until {reset:.0f}; "
        "not sending (GitHub asks not to retry before the reset)",
        None,
        None,
        retry_after=max(0.0, reset - now),
        reset_at=reset,
        resource=resource,
        rate_limit_info={"remaining": "0", "reset": str(int(reset)), "resource": resource},
        method=method,
        url=url,
    )
