"""How a background handler is retried: RetryPolicy, mapped onto Celery's own task options.

Pure: no Celery import, so the app, ``routing`` and the intake can build policies without a
worker. ``classify`` decides by ``isinstance`` against the one exception tree
(``ghapp_celery.exceptions``), never by a class's name.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

import httpx

from .exceptions import GitHubAppError, GitHubRateLimitError, HandlerTimeout

__all__ = ["DEFAULT_RETRY", "Outcome", "RetryPolicy", "classify"]


class Outcome(StrEnum):
    """What to do with a handler's exception."""

    RATE_LIMITED = "rate_limited"  # retry when GitHub's limit resets; counted apart
    RETRY = "retry"  # transient: retry with backoff while retries remain
    FAIL = "fail"  # permanent (a 4xx, a bug): no retry; replayable


def _is_transient(exc: BaseException) -> bool:
    """GitHub 5xx, timeouts and connection errors: the kinds of failure worth retrying.

    A ``GitHubConnectionError`` (a ConnectionError) and a ``ServerError`` (status >= 500) are
    among them, whether a client call or a token mint raised them; so is ``HandlerTimeout``."""
    if isinstance(exc, (httpx.TransportError, TimeoutError, ConnectionError, HandlerTimeout)):
        return True
    if isinstance(exc, GitHubAppError) and isinstance(exc.status, int):
        return exc.status >= 500
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """Retry settings for one background handler; the names are Celery's task options.

    - ``max_retries``: retries after the first attempt for transient errors (Celery's
      ``max_retries``); when they are used up the run is ``dead`` in the store.
    - ``retry_backoff`` / ``retry_backoff_max`` / ``retry_jitter``: Celery's exponential
      backoff (``retry_backoff`` is the factor in seconds: 1, 2, 4, 8, ... times it).
    - ``autoretry_for``: extra exception types to treat as transient;
      ``dont_autoretry_for``: types never retried even if they look transient.
    - ``max_rate_limit_retries``: a GitHub rate limit waits until the limit resets; those
      waits are counted apart from ``max_retries`` and bounded here.
    - ``max_rate_limit_wait``: the longest countdown for one rate-limit wait (seconds).
    """

    max_retries: int = 5
    retry_backoff: float = 2.0
    retry_backoff_max: int = 600
    retry_jitter: bool = True
    autoretry_for: tuple[type[BaseException], ...] = field(default=())
    dont_autoretry_for: tuple[type[BaseException], ...] = field(default=())
    max_rate_limit_retries: int = 10
    max_rate_limit_wait: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.max_rate_limit_retries < 0:
            raise ValueError("retry counts must be >= 0")
        if self.retry_backoff < 0 or self.retry_backoff_max < 0:
            raise ValueError("backoff must be >= 0")

    def backoff(self, retries: int) -> float:
        """Seconds before retry number ``retries + 1``: Celery's exponential backoff
        (``retry_backoff * 2**retries``, capped at ``retry_backoff_max``, full jitter),
        computed in floats so a factor such as 0.5 means half a second."""
        countdown = min(float(self.retry_backoff_max), self.retry_backoff * float(2**retries))
        if self.retry_jitter:
            countdown = random.uniform(0, countdown)
        return countdown

    def celery_options(self) -> dict[str, object]:
        """The Celery task options this policy stands for (visible in Flower and inspect)."""
        return {
            "max_retries": self.max_retries,
            "retry_backoff": self.retry_backoff,
            "retry_backoff_max": self.retry_backoff_max,
            "retry_jitter": self.retry_jitter,
        }


DEFAULT_RETRY = RetryPolicy()


def classify(exc: BaseException, policy: RetryPolicy) -> Outcome:
    """Decide between a rate-limit wait, a backoff retry, and failing for good."""
    if policy.dont_autoretry_for and isinstance(exc, policy.dont_autoretry_for):
        return Outcome.FAIL
    if isinstance(exc, GitHubRateLimitError):
        return Outcome.RATE_LIMITED
    if (policy.autoretry_for and isinstance(exc, policy.autoretry_for)) or _is_transient(exc):
        return Outcome.RETRY
    return Outcome.FAIL
