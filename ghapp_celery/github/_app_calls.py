"""The app's own calls (token mints, ``/app``, ``/app/installations``) on the shared sessions.

``GitHubAppAuth`` sends each of them through the ``GitHubSession`` the clients use (the running
loop's, or the blocking one: ``registry``) and drives the same ``Exchange``, so the answer is
mapped by the one status-to-exception table and counted by the one rate-limit tracker. Two
things differ from a client's call, both on purpose:

* nothing is retried here: a refused connection, a reset or a 5xx raises at once, and a
  background run retries it with Celery's backoff instead of sleeping on a worker thread;
* a rate limit is waited out the way fastapi-githubapp 0.2.7 did (``RateLimitWaits``), except
  inside ``no_rate_limit_waits()`` (a background run), where it raises with ``retry_after``.

Errors keep 0.2.7's ``data``: the answer's text, not the decoded body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from ghapp_celery.exceptions import GitHubAppError, GitHubRateLimitError, HTTPError
from ghapp_celery.github._client_core import GitHubResponse
from ghapp_celery.github._client_session import Exchange, GitHubSession
from ghapp_celery.github.ratelimit import named_wait
from ghapp_celery.github.registry import blocking_session_for, session_for

if TYPE_CHECKING:
    from ghapp_celery.github.auth import GitHubAppAuth

__all__ = ["RateLimitWaits", "asend", "no_rate_limit_waits", "send"]

logger = logging.getLogger("ghapp_celery.github.auth")

_waits_allowed: ContextVar[bool] = ContextVar("ghapp_celery_rate_limit_waits", default=True)


@contextmanager
def no_rate_limit_waits() -> Iterator[None]:
    """Within this block (and the coroutines it starts) a rate-limited app call raises
    ``GitHubRateLimitError`` with ``retry_after`` instead of sleeping. A background run enters
    it: its thread stays free and Celery retries the run when the limit resets."""
    reset = _waits_allowed.set(False)
    try:
        yield
    finally:
        _waits_allowed.reset(reset)


@dataclass(frozen=True)
class RateLimitWaits:
    """0.2.7's rule: up to ``retries`` waits per call, each of at most ``max_sleep`` seconds."""

    retries: int
    max_sleep: float
    sleep: Callable[[float], object]
    asleep: Callable[[float], Awaitable[object]]

    def delay(self, error: GitHubRateLimitError, waited: int) -> float | None:
        """Seconds to wait before sending again, or None to raise ``error``."""
        wait = error.retry_after
        if not _waits_allowed.get() or wait is None:
            return None
        headers = error.headers if isinstance(error, HTTPError) else {}
        if named_wait(headers, time.time()) is None:
            # GitHub named no wait, so ``wait`` is the one-minute backoff: 0.2.7 capped it at
            # max_sleep and retried, where waiting the full minute would mean giving up.
            wait = min(wait, self.max_sleep)
        if waited < self.retries and wait <= self.max_sleep:
            return wait
        return None


def _exchange(auth: GitHubAppAuth, session: GitHubSession, method: str, path: str) -> Exchange:
    return Exchange(
        session,
        f"app:{auth.app_id}",
        method,
        session.url(path),  # refuses a Link to another host: it must not receive the JWT
        headers=None,
        use_cache=False,
        retry=False,
        rate_limit_wait=0.0,  # RateLimitWaits decides, below
    )


def _result(exchange: Exchange, raw: httpx.Response, jwt: str) -> GitHubResponse:
    try:
        outcome = exchange.after_response(raw, jwt, None)
    except HTTPError as error:
        error.data = raw.text  # 0.2.7's ``data`` on these calls
        raise
    if not isinstance(outcome, GitHubResponse):
        # A JWT is never refreshed after a 401, nothing is retried and no wait is allowed, so
        # the exchange can only answer or raise.
        raise GitHubAppError(f"unexpected outcome of an app call: {outcome!r}")
    return outcome


def _log_wait(exchange: Exchange, delay: float) -> None:
    logger.warning(
        "GitHub rate limit on %s %s; retrying in %.1f s", exchange.method, exchange.url, delay
    )


def send(
    auth: GitHubAppAuth, waits: RateLimitWaits, method: str, path: str, body: Any = None
) -> GitHubResponse:
    """One app call from blocking code, on the blocking session."""
    session = blocking_session_for(auth)
    exchange = _exchange(auth, session, method, path)
    http = session.http()
    waited = 0
    while True:
        try:
            exchange.before_send()  # raises when the app's bucket is known to be empty
            jwt = auth.create_jwt()
            headers = exchange.prepare(f"Bearer {jwt}", None).headers
            try:
                with session.semaphore(exchange.identity):
                    raw = http.request(exchange.method, exchange.url, headers=headers, json=body)
            except httpx.TransportError as exc:
                exchange.after_transport_error(exc)  # retry=False: this raises
                raise
            return _result(exchange, raw, jwt)
        except GitHubRateLimitError as error:
            delay = waits.delay(error, waited)
            if delay is None:
                raise
        _log_wait(exchange, delay)
        waits.sleep(delay)
        waited += 1


async def asend(
    auth: GitHubAppAuth, waits: RateLimitWaits, method: str, path: str, body: Any = None
) -> GitHubResponse:
    """One app call from a coroutine, on the running loop's session (its connection pool)."""
    session = session_for(auth)
    exchange = _exchange(auth, session, method, path)
    http = session.ahttp()
    waited = 0
    while True:
        try:
            exchange.before_send()
            jwt = auth.create_jwt()
            headers = exchange.prepare(f"Bearer {jwt}", None).headers
            try:
                async with session.asemaphore(exchange.identity):
                    raw = await http.request(
                        exchange.method, exchange.url, headers=headers, json=body
                    )
            except httpx.TransportError as exc:
                exchange.after_transport_error(exc)
                raise
            return _result(exchange, raw, jwt)
        except GitHubRateLimitError as error:
            delay = waits.delay(error, waited)
            if delay is None:
                raise
        _log_wait(exchange, delay)
        await waits.asleep(delay)
        waited += 1
