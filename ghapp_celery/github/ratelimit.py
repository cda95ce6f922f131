"""GitHub REST rate limits, read from response headers. Pure: no framework, no HTTP library.

GitHub's rules (GITHUB_FACTS §3-4):

* every answer carries ``x-ratelimit-limit``, ``-remaining``, ``-used``, ``-reset`` (UTC epoch
  seconds) and ``-resource``;
* the **primary** limit is exhausted when a 403 or 429 comes with ``x-ratelimit-remaining: 0``;
  do not retry before ``x-ratelimit-reset``;
* a **secondary** limit is a 403 or 429 whose message says so, often with ``retry-after``.
  Wait ``retry-after`` seconds if given; else, if ``remaining`` is 0, until the reset; otherwise
  at least one minute, then exponentially longer, and give up after a few attempts.

Header mappings may be any ``Mapping[str, str]``; names are matched case-insensitively, so a plain
``dict`` from a test works as well as ``httpx.Headers``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MIN_SECONDARY_WAIT",
    "RateLimit",
    "is_rate_limited",
    "is_secondary",
    "named_wait",
    "rate_limit_info",
    "retry_delay",
]

#: GitHub: "wait for at least one minute before retrying" a secondary limit without retry-after.
MIN_SECONDARY_WAIT = 60.0

_SECONDARY_MARKER = "secondary rate limit"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` matched case-insensitively; None when absent."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _seconds(value: str | None) -> float | None:
    """A non-negative, finite number of seconds, or None when the header is absent or bogus."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@dataclass(frozen=True)
class RateLimit:
    """One answer's view of its rate-limit bucket. ``reset`` is UTC epoch seconds."""

    limit: int
    remaining: int
    used: int | None
    reset: int
    resource: str | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit | None:
        """Parse the ``x-ratelimit-*`` headers; None unless limit, remaining and reset are there."""
        limit = _int(_header(headers, "x-ratelimit-limit"))
        remaining = _int(_header(headers, "x-ratelimit-remaining"))
        reset = _int(_header(headers, "x-ratelimit-reset"))
        if limit is None or remaining is None or reset is None:
            return None
        return cls(
            limit=limit,
            remaining=remaining,
            used=_int(_header(headers, "x-ratelimit-used")),
            reset=reset,
            resource=_header(headers, "x-ratelimit-resource"),
        )

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0

    def seconds_until_reset(self, now: float) -> float:
        return max(0.0, self.reset - now)


def rate_limit_info(headers: Mapping[str, str]) -> dict[str, Any]:
    """The raw header strings (or None), in fastapi-githubapp's ``rate_limit_info`` shape."""
    return {
        "limit": _header(headers, "x-ratelimit-limit"),
        "remaining": _header(headers, "x-ratelimit-remaining"),
        "reset": _header(headers, "x-ratelimit-reset"),
        "used": _header(headers, "x-ratelimit-used"),
        "resource": _header(headers, "x-ratelimit-resource"),
        "retry_after": _header(headers, "retry-after"),
    }


def _remaining_is_zero(headers: Mapping[str, str]) -> bool:
    return _int(_header(headers, "x-ratelimit-remaining")) == 0


def _mentions_secondary(body_text: str) -> bool:
    return _SECONDARY_MARKER in body_text.lower()


def is_rate_limited(status: int, headers: Mapping[str, str], body_text: str = "") -> bool:
    """True when GitHub refused the request for a primary or a secondary rate limit."""
    if status == 429:
        return True
    if status != 403:
        return False
    return (
        _remaining_is_zero(headers)
        or _header(headers, "retry-after") is not None
        or _mentions_secondary(body_text)
    )


def is_secondary(status: int, headers: Mapping[str, str], body_text: str = "") -> bool:
    """True for a secondary-limit refusal: the message says so, or the bucket isn't empty."""
    if not is_rate_limited(status, headers, body_text):
        return False
    if _mentions_secondary(body_text):
        return True
    return not _remaining_is_zero(headers)


def named_wait(headers: Mapping[str, str], now: float) -> float | None:
    """The wait GitHub's headers name, or None when they name none (then only a backoff is left).

    ``retry-after`` first; else the seconds to ``x-ratelimit-reset`` when ``remaining`` is 0 or
    absent. fastapi-githubapp 0.2.7 read a bare reset so (its tests send only that header); a
    bucket that says it has requests left is a secondary limit, whose wait is not its reset.
    """
    retry_after = _seconds(_header(headers, "retry-after"))
    if retry_after is not None:
        return retry_after
    reset = _int(_header(headers, "x-ratelimit-reset"))
    remaining = _int(_header(headers, "x-ratelimit-remaining"))
    if reset is not None and (remaining is None or remaining <= 0):
        return max(0.0, reset - now)
    return None


def retry_delay(
    headers: Mapping[str, str], attempt: int, now: float, *, max_backoff: float = math.inf
) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0).

    GitHub's documented order: ``retry-after``; else the primary reset when ``remaining`` is 0;
    else one minute, doubling with each further attempt. The backoff, a guess where GitHub named
    no wait, is at most ``max_backoff`` (0.2.7's ``min(60 * 2**n, rate_limit_max_sleep)``).
    """
    named = named_wait(headers, now)
    if named is not None:
        return named
    return min(MIN_SECONDARY_WAIT * float(1 << max(0, attempt)), max_backoff)
