"""What the sync and async GitHub calls share: headers, error mapping, the rate-limit decision.

Kept free of I/O so the blocking and the ``async`` paths run the very same rules.
Nothing here ever formats a token or a JWT into a message.
"""

from __future__ import annotations

from typing import Final

import httpx

from ghapp_celery.exceptions import (
    GitHubAppBadCredentials,
    GitHubAppError,
    GithubAppUnkownObject,
    GitHubAppValidationError,
    GitHubRateLimitError,
    GithubUnauthorized,
)
from ghapp_celery.github.ratelimit import is_rate_limited, rate_limit_info, retry_delay

__all__ = [
    "API_VERSION",
    "MEDIA_TYPE",
    "RetryPolicy",
    "error_for",
    "github_headers",
    "transport_error",
]

API_VERSION: Final = "2022-11-28"
MEDIA_TYPE: Final = "application/vnd.github+json"

_ERRORS: Final[dict[int, tuple[type[GitHubAppError], str]]] = {
    401: (GithubUnauthorized, "GitHub refused the credentials (401 Unauthorized)"),
    403: (GitHubAppBadCredentials, "GitHub refused the request (403 Forbidden)"),
    404: (GithubAppUnkownObject, "GitHub does not know this object (404 Not Found)"),
    422: (GitHubAppValidationError, "GitHub rejected the request (422 Unprocessable Entity)"),
}


def github_headers(authorization: str, user_agent: str) -> dict[str, str]:
    """The headers GitHub's docs send with every REST call."""
    return {
        "Authorization": authorization,
        "Accept": MEDIA_TYPE,
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": user_agent,
    }


def error_for(response: httpx.Response) -> GitHubAppError:
    """The compat exception for a non-2xx answer that is not a rate limit."""
    status = response.status_code
    cls, message = _ERRORS.get(status, (GitHubAppError, f"GitHub answered HTTP {status}"))
    return cls(message, status=status, data=response.text)


def transport_error(exc: httpx.HTTPError) -> GitHubAppError:
    """Wrap a connection / timeout failure; the caller raises it ``from exc``."""
    return GitHubAppError(f"Could not reach GitHub ({type(exc).__name__})")


class RetryPolicy:
    """Decides, per answer, between "done", "sleep this long and retry" and "raise"."""

    __slots__ = ("max_sleep", "retries")

    def __init__(self, retries: int, max_sleep: float) -> None:
        self.retries = retries
        self.max_sleep = max_sleep

    def check(self, response: httpx.Response, attempt: int, now: float) -> float | None:
        """None for a 2xx; the seconds to wait before retrying; or raise the mapped error."""
        if response.is_success:
            return None
        status = response.status_code
        text = response.text
        if not is_rate_limited(status, response.headers, text):
            raise error_for(response)
        delay = retry_delay(response.headers, attempt, now)
        if attempt < self.retries and delay <= self.max_sleep:
            return delay
        raise GitHubRateLimitError(
            f"GitHub rate limit exceeded (HTTP {status}); retry in {delay:.0f} s",
            status=status,
            data=text,
            rate_limit_info=rate_limit_info(response.headers),
            retry_after=delay,
        )
