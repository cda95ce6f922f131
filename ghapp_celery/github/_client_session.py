"""GitHubSession: what every client of a process shares, and one request's decisions.

A session owns the HTTP connection pools (one ``httpx.AsyncClient``, one ``httpx.Client``, each
sending through a sharded pool, see ``_client_transport``), the
ETag cache, the rate-limit tracker and the per-identity concurrency caps. Clients are light
views over it (a credential plus the session), so a worker handling a hundred installations
keeps one pool and one cache.

:class:`Exchange` is one logical request's state machine (retries, the 401 refresh, rate-limit
waits); the async and blocking clients drive it with their own I/O.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from ghapp_celery.exceptions import (
    GitHubConnectionError,
    GitHubError,
    GitHubTimeout,
    RateLimited,
    SecondaryRateLimited,
)
from ghapp_celery.github._client_core import (
    API_VERSION,
    MEDIA_TYPE,
    GitHubResponse,
    RateLimitTracker,
    RetrySettings,
    api_urls,
    decode_answer,
    error_from_response,
    exhausted_error,
    resource_for,
)
from ghapp_celery.github._client_transport import ShardedAsyncTransport, ShardedTransport
from ghapp_celery.github.cache import CacheEntry, MemoryCache, ResponseCache, cache_key
from ghapp_celery.observability import metrics, tracing

__all__ = ["REFRESH", "Exchange", "GitHubSession"]

Clock = Callable[[], float]
REFRESH: Final = "refresh"


class GitHubSession:
    """Pools, cache, rate-limit state and concurrency caps shared by many clients.

    ``rate_limit_wait`` is the most a client may *sleep* for one rate limit; the default 0 raises
    ``RateLimited`` / ``SecondaryRateLimited`` at once, which inside a Celery worker becomes a
    retry with a countdown instead of a blocked worker. ``max_concurrency`` caps the requests in
    flight per identity (GitHub's secondary limit allows 100 concurrent ones).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        user_agent: str = "ghapp-celery",
        api_version: str = API_VERSION,
        timeout: float | httpx.Timeout = 10.0,
        limits: httpx.Limits | None = None,
        cache: ResponseCache | bool | None = True,
        retry: RetrySettings | None = None,
        rate_limit_wait: float = 0.0,
        max_concurrency: int = 100,
        clock: Clock = time.time,
        sleep: Callable[[float], object] = time.sleep,
        asleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.rest_url, self.graphql_url = api_urls(base_url)
        self.user_agent = user_agent
        self.api_version = api_version
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=100)
        if cache is True:
            self.cache: ResponseCache | None = MemoryCache()
        elif cache is False or cache is None:
            self.cache = None
        else:
            self.cache = cache
        self.retry = retry or RetrySettings()
        self.rate_limit_wait = rate_limit_wait
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.max_concurrency = max_concurrency
        self.clock = clock
        self.sleep = sleep
        self.asleep = asleep
        self.tracker = RateLimitTracker()
        self._transport = transport
        self._async_transport = async_transport
        self._lock = threading.Lock()
        self._ahttp: httpx.AsyncClient | None = None
        self._ahttp_loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.Client | None = None
        self._asems: dict[str, asyncio.Semaphore] = {}
        self._sems: dict[str, threading.BoundedSemaphore] = {}
        self._allowed = (self.rest_url + "/", self.graphql_url + "?")

    def __repr__(self) -> str:
        return f"GitHubSession(rest_url={self.rest_url!r})"

    # -- URLs ------------------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        """An absolute URL under this session's API; refuses any other host (a ``Link`` or a
        ``*_url`` field pointing elsewhere must never receive our token)."""
        if path_or_url.startswith(("http://", "https://")):
            if path_or_url == self.graphql_url or path_or_url.startswith(self._allowed):
                return path_or_url
            raise GitHubError("refusing to send credentials to a URL outside the GitHub API")
        if not path_or_url.startswith("/"):
            path_or_url = "/" + path_or_url
        return self.rest_url + path_or_url

    # -- pools -----------------------------------------------------------------------------

    def ahttp(self) -> httpx.AsyncClient:
        """The async pool; bound to the event loop that first used it."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._ahttp is not None and self._ahttp_loop is not loop:
                if self._ahttp_loop is not None and self._ahttp_loop.is_closed():
                    self._ahttp = None  # its loop is gone, and its sockets with it
                    self._asems.clear()
                else:
                    raise RuntimeError(
                        "this GitHubSession's connection pool belongs to another event loop; "
                        "make one session per loop (ghapp_celery.github.client_for does)"
                    )
            if self._ahttp is None:
                transport = self._async_transport or ShardedAsyncTransport(self.limits)
                self._ahttp = httpx.AsyncClient(timeout=self.timeout, transport=transport)
                self._ahttp_loop = loop
            return self._ahttp

    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                transport = self._transport or ShardedTransport(self.limits)
                self._http = httpx.Client(timeout=self.timeout, transport=transport)
            return self._http

    def asemaphore(self, identity: str) -> asyncio.Semaphore:
        with self._lock:
            sem = self._asems.get(identity)
            if sem is None:
                sem = self._asems[identity] = asyncio.Semaphore(self.max_concurrency)
            return sem

    def semaphore(self, identity: str) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._sems.get(identity)
            if sem is None:
                sem = self._sems[identity] = threading.BoundedSemaphore(self.max_concurrency)
            return sem

    async def aclose(self) -> None:
        with self._lock:
            client, self._ahttp, self._ahttp_loop = self._ahttp, None, None
        if client is not None:
            await client.aclose()
        self.close()

    def close(self) -> None:
        with self._lock:
            client, self._http = self._http, None
        if client is not None:
            client.close()


@dataclass
class Prepared:
    """What to send for one try."""

    headers: dict[str, str]
    cache_key: str | None


class Exchange:
    """One logical request's decisions across its tries; see the module docstring."""

    def __init__(
        self,
        session: GitHubSession,
        identity: str,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None,
        use_cache: bool,
        refused: Callable[[str], bool] | None = None,
        retry: bool | None = None,
        rate_limit_wait: float | None = None,
    ) -> None:
        self.session = session
        self.refused = refused
        self.identity = identity
        self.method = method.upper()
        self.url = url
        self.extra = headers or {}
        self.accept = self.extra.get("Accept") or self.extra.get("accept") or MEDIA_TYPE
        self.resource = resource_for(urlsplit(url).path)
        self.use_cache = use_cache and self.method == "GET" and session.cache is not None
        self.key = cache_key(self.method, url, self.accept, identity) if self.use_cache else None
        self.attempt = 0
        self.refreshed = False
        self.span: Any = None  # the open span of the try in flight (tracing on)
        self.waited = 0.0
        # True: retry 5xx and transport failures whatever the method (a GraphQL query is a POST
        # but safe to repeat); False: never retry; None: decide by the method.
        self.retry_override = retry
        # The most this request may sleep for rate limits in all; None: the session's budget.
        self.rate_limit_wait = (
            session.rate_limit_wait if rate_limit_wait is None else rate_limit_wait
        )

    # -- before sending ----------------------------------------------------------------------

    def before_send(self) -> float:
        """Seconds to sleep before sending (0 = go); raises when the bucket is known empty and
        the session may not wait that long."""
        now = self.session.clock()
        reset = self.session.tracker.exhausted_until(self.identity, self.resource, now)
        if reset is None:
            return 0.0
        wait = max(0.0, reset - now) + 1.0
        if self.waited + wait <= self.rate_limit_wait:
            self.waited += wait
            return wait
        raise exhausted_error(self.identity, self.resource, reset, now, self.method, self.url)

    def prepare(self, authorization: str, entry: CacheEntry | None) -> Prepared:
        s = self.session
        if tracing.enabled:  # a span per try, ended by after_response/after_transport_error
            self._end_span(None, error="abandoned")
            self.span = tracing.start_github_call(self.method, self.url, self.attempt)
        headers = {
            "Accept": MEDIA_TYPE,
            "User-Agent": s.user_agent,
            "X-GitHub-Api-Version": s.api_version,
        }
        headers.update(self.extra)
        headers["Authorization"] = authorization
        if entry is not None:
            if entry.etag:
                headers["If-None-Match"] = entry.etag
            elif entry.last_modified:
                headers["If-Modified-Since"] = entry.last_modified
        return Prepared(headers, self.key)

    # -- after a try -------------------------------------------------------------------------

    def after_transport_error(self, exc: httpx.TransportError) -> float:
        """Seconds to back off before the next try, or raise the wrapped error (``from exc``,
        so the httpx failure stays at hand as ``__cause__``)."""
        self._end_span(None, error=type(exc).__name__)
        metrics.github_request(None)
        retry = self.session.retry
        allowed = (
            self.retry_override
            if self.retry_override is not None
            else retry.retries_transport(self.method, exc)
        )
        if allowed and self.attempt < retry.attempts:
            delay = retry.delay(self.attempt)
            self.attempt += 1
            return delay
        kind = GitHubTimeout if isinstance(exc, httpx.TimeoutException) else GitHubConnectionError
        message = f"{kind.default_message} ({type(exc).__name__}) for {self.method} {self.url}"
        raise kind(message) from exc

    def after_response(
        self, response: httpx.Response, secret: str, entry: CacheEntry | None
    ) -> GitHubResponse | float | str:
        """The result, a delay before retrying, ``REFRESH`` (retry with a new token), or raise."""
        s = self.session
        status = response.status_code
        limit = s.tracker.update(self.identity, response.headers, self.resource)
        self._end_span(status, limit, from_cache=status == 304 and entry is not None)
        if metrics.enabled():
            metrics.github_request(status)
            if limit is not None:
                resource = limit.resource or self.resource
                metrics.github_rate_limit(resource, limit.remaining, limit.limit, self.identity)
        if status == 304 and entry is not None:
            s.tracker.record_success(self.identity)
            data = decode_answer(entry.body, entry.content_type)
            headers = response.headers
            if entry.link and "link" not in headers:
                headers = headers.copy()
                headers["link"] = entry.link
            return GitHubResponse(status, headers, data, self.url, limit, True)
        content = response.content
        ctype = response.headers.get("content-type")
        try:
            data = decode_answer(content, ctype)
        except ValueError:
            data = response.text
        if 200 <= status < 300:
            s.tracker.record_success(self.identity)
            return GitHubResponse(status, response.headers, data, self.url, limit)
        if status == 401 and not self.refreshed and self._refresh_ok(secret):
            self.refreshed = True
            return REFRESH
        now = s.clock()
        error = error_from_response(
            self.method,
            self.url,
            status,
            response.headers,
            data,
            now=now,
            secondary_hits=s.tracker.secondary_hits(self.identity),
        )
        if isinstance(error, RateLimited):
            if isinstance(error, SecondaryRateLimited):
                s.tracker.record_secondary(self.identity)
            wait = error.retry_after or 0.0
            if self.waited + wait <= self.rate_limit_wait:
                self.waited += wait
                return wait
            raise error
        transient = (
            s.retry.retries_status(self.method, status)
            if self.retry_override is None
            else self.retry_override and status in s.retry.statuses
        )
        if transient and self.attempt < s.retry.attempts:
            delay = s.retry.delay(self.attempt)
            self.attempt += 1
            return delay
        raise error

    def _end_span(self, status: int | None, limit: Any = None, **kw: Any) -> None:
        if self.span is not None:
            span, self.span = self.span, None
            tracing.end_github_call(span, status, limit, **kw)

    def _refresh_ok(self, secret: str) -> bool:
        return self.refused is not None and self.refused(secret)

    def entry_to_store(self, response: GitHubResponse, raw: httpx.Response) -> CacheEntry | None:
        if self.key is None or response.from_cache or response.status != 200:
            return None
        etag = raw.headers.get("etag")
        modified = raw.headers.get("last-modified")
        if not etag and not modified:
            return None
        ctype = raw.headers.get("content-type")
        return CacheEntry(etag, modified, ctype, raw.content, raw.headers.get("link"))
