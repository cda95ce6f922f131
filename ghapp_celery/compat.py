"""fastapi-githubapp 0.2.7's ``githubapp.core``, name for name, and its rate-limit helpers.

A 0.2.7 test imports from ``githubapp.core`` and patches ``githubapp.core.GhApi``; after the
switch it imports from here and patches ``ghapp_celery.compat.GhApi``, which is the attribute
``client()`` and ``aclient()`` look up each time they build a client (docs/migration.md has the
whole table). ``GitHubApp`` lives in ``app``, a layer above this module: the package's
``__init__`` sets it here, so it is present whenever ``ghapp_celery.compat`` is importable.

0.2.7 swapped ``github_app.client`` on the shared instance for the duration of a handler, so
two concurrent handlers could restore each other's client. Here the decorator sets a
contextvar that ``client()`` reads, which is private to each request or thread.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .exceptions import (
    GitHubAppBadCredentials,
    GitHubAppError,
    GithubAppUnkownObject,
    GitHubAppValidationError,
    GitHubRateLimitError,
    GithubUnauthorized,
)
from .github.auth import InstallationAuthorization
from .github.ratelimit import is_rate_limited, rate_limit_info, retry_delay

if TYPE_CHECKING:
    from ghapi.all import GhApi  # at run time: built by __getattr__, below

    from .app import GitHubApp

__all__ = [
    "STATUS_FUNC_CALLED",
    "STATUS_NO_FUNC_CALLED",
    "GhApi",
    "GitHubApp",
    "GitHubAppBadCredentials",
    "GitHubAppError",
    "GitHubAppValidationError",
    "GitHubRateLimitError",
    "GithubAppUnkownObject",
    "GithubUnauthorized",
    "InstallationAuthorization",
    "RateLimitedGhApi",
    "async_ghapi_client",
    "ghapi_client",
    "rate_limit_handling_active",
    "retry_with_rate_limit",
    "with_rate_limit_handling",
]

#: 0.2.7's ``LOG``: the logger the app writes to.
LOG = logging.getLogger("ghapp_celery")

#: The answers' ``status`` when a handler ran, and when none was registered for the event.
STATUS_FUNC_CALLED = "HIT"
STATUS_NO_FUNC_CALLED = "MISS"

#: ``github_app_url``'s default; a client on it is built as 0.2.7 built it, ``GhApi(token=...)``.
_PUBLIC_API = "https://api.github.com"

F = TypeVar("F", bound=Callable[..., Any])

_handling: ContextVar[bool] = ContextVar("ghapp_celery_rate_limit_handling", default=False)


def rate_limit_handling_active() -> bool:
    """True inside a handler decorated with ``with_rate_limit_handling``."""
    return _handling.get()


class _Retrier(Protocol):
    def retry_with_rate_limit(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


def _response_of(exc: BaseException) -> tuple[int, dict[str, str], str] | None:
    """(status, headers, body) of an HTTP error from httpx, ghapi or urllib, if it has one."""
    response = getattr(exc, "response", None)
    if response is not None and hasattr(response, "status_code"):
        try:
            text = str(response.text)
        except Exception:  # a streamed or already-closed body has no text to read
            text = ""
        return int(response.status_code), dict(response.headers or {}), text
    code = getattr(exc, "code", None) or getattr(exc, "status", None)
    if isinstance(code, int):
        return code, dict(getattr(exc, "headers", None) or {}), ""
    return None


def retry_with_rate_limit(
    func: Callable[..., Any],
    *args: Any,
    retries: int = 2,
    max_sleep: float = 60,
    sleep: Callable[[float], object] | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``func``; when it fails on a GitHub rate limit, wait as GitHub says and retry.

    0.2.7's rule: the wait is ``retry-after``, else the time to ``x-ratelimit-reset``, else one
    minute doubling per attempt and capped at ``max_sleep``. A wait GitHub names that is longer
    than ``max_sleep`` is not shortened (retrying before it only spends the budget): the call
    raises GitHubRateLimitError at once, ``retry_after`` saying how long. So does the call after
    ``retries`` retries. Waits go through ``time.sleep`` looked up when they happen, so a test's
    ``patch("time.sleep")`` replaces them, as it did in 0.2.7.
    """
    for attempt in range(retries + 1):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            details = _response_of(exc)
            if details is None or not is_rate_limited(*details):
                raise
            status, headers, _ = details
            delay = retry_delay(headers, attempt, time.time(), max_backoff=max_sleep)
            if attempt < retries and delay <= max_sleep:
                (sleep or time.sleep)(delay)
                continue
            raise GitHubRateLimitError(
                message=f"Rate limit exceeded in client call: {getattr(func, '__name__', func)}",
                status=status,
                data=None,
                rate_limit_info=rate_limit_info(headers),
                retry_after=delay,
            ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


class RateLimitedGhApi:
    """Wraps a GhApi so every callable attribute goes through ``retry_with_rate_limit``."""

    def __init__(self, ghapi_instance: Any, github_app: _Retrier) -> None:
        self._ghapi = ghapi_instance
        self._github_app = github_app

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._ghapi, name)
        if not callable(attr):
            # ghapi groups (api.issues) are objects whose methods are the calls to wrap.
            if hasattr(attr, "__dict__") and not isinstance(attr, (str, bytes, int, dict)):
                return RateLimitedGhApi(attr, self._github_app)
            return attr
        if not inspect.isroutine(attr):
            # A callable object may have attributes to reach through as well: a test's Mock
            # GhApi makes ``client.issues`` callable, and its ``create_comment`` must retry too.
            return RateLimitedGhApi(attr, self._github_app)

        @functools.wraps(attr)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return self._github_app.retry_with_rate_limit(attr, *args, **kwargs)

        return wrapper

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._github_app.retry_with_rate_limit(self._ghapi, *args, **kwargs)


def __getattr__(name: str) -> Any:
    # GhApi is built on first use, not by ``import ghapp_celery``: ghapi costs ~250 ms to import
    # (python -X importtime). Once built it is a plain module attribute, which
    # patch("ghapp_celery.compat.GhApi") replaces and restores.
    if name == "GhApi":
        globals()["GhApi"] = ghapi_class = _sync_by_default_ghapi()
        return ghapi_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _sync_by_default_ghapi() -> type:
    from ghapi.all import GhApi as GeneratedGhApi

    class GhApi(GeneratedGhApi):
        """ghapi's ``GhApi``, synchronous unless ``sync=False``: what 0.2.7's ``client()``
        returned with the ghapi 1.x of its day (ghapi 2.x clients are async by default).
        ``gh_host`` defaults to the public API, never to ``$GH_HOST``: an app's GitHub URL is
        its ``github_app_url``, and the gh CLI's ``GH_HOST`` holds a bare host name."""

        def __init__(
            self, *args: Any, gh_host: str | None = None, sync: bool = True, **kwargs: Any
        ) -> None:
            options = {**kwargs, "gh_host": gh_host or _PUBLIC_API, "sync": sync}
            super().__init__(*args, **options)  # type: ignore[no-untyped-call]

    GhApi.__module__ = __name__
    return GhApi


def _construct_ghapi(token: str, base_url: str, **options: Any) -> Any:
    # Looked up now, through the module attribute: a test's patch("ghapp_celery.compat.GhApi")
    # is what gets called. On the public API the call is 0.2.7's own, GhApi(token=token), so a
    # migrated test's mock.assert_called_once_with(token=...) still holds.
    ghapi_class = globals().get("GhApi") or __getattr__("GhApi")
    if base_url.rstrip("/") != _PUBLIC_API:
        options["gh_host"] = base_url
    return ghapi_class(token=token, **options)


def ghapi_client(token: str, base_url: str, retrier: _Retrier) -> Any:
    """0.2.7's ``github_app.client()``: a synchronous ``GhApi`` on ``base_url``; inside
    ``with_rate_limit_handling`` its calls go through ``retrier.retry_with_rate_limit``."""
    api = _construct_ghapi(token, base_url)
    if rate_limit_handling_active():
        return RateLimitedGhApi(api, retrier)
    return api


def async_ghapi_client(token: str, base_url: str) -> Any:
    """The asynchronous ghapi client (ghapi 2.x's default), for ``async def`` handlers."""
    return _construct_ghapi(token, base_url, sync=False)


def with_rate_limit_handling(github_app: GitHubApp) -> Callable[[F], F]:
    """Decorator: inside the handler, ``github_app.client()`` retries calls on rate limits.

    ``github_app`` is 0.2.7's argument, kept for its signature: the decorator only marks the
    handler's context, and each ``client()`` retries through the app that made it.
    """
    del github_app

    def decorator(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                token = _handling.set(True)
                try:
                    return await func(*args, **kwargs)
                finally:
                    _handling.reset(token)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _handling.set(True)
            try:
                return func(*args, **kwargs)
            finally:
                _handling.reset(token)

        return wrapper  # type: ignore[return-value]

    return decorator
