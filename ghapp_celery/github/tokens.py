"""Installation access tokens as GitHub returns them, and when they stop being usable."""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["InstallationAuthorization", "parse_github_timestamp"]


def parse_github_timestamp(value: str | datetime | float) -> float:
    """GitHub's ISO-8601 time (``2016-07-11T22:14:10Z``) as UTC epoch seconds.

    A time without an offset is taken as UTC, which is what GitHub means. A number is already
    epoch seconds (fastapi-githubapp 0.2.7 code stores ``time.time() + 3600``). Raises
    ValueError for anything that is not a timestamp.
    """
    if isinstance(value, bool):  # a bool is an int to Python, never a time
        raise ValueError("expires_at must be a time, not a bool")
    if isinstance(value, (int, float)):
        return float(value)
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class InstallationAuthorization:
    """An installation token and its expiry, under fastapi-githubapp's name and constructor.

    ``expires_at`` keeps what was given: the string GitHub sent, a datetime, or epoch seconds
    as 0.2.7 code passes them; ``expires_at_epoch`` is that moment in epoch seconds (None when
    none was given, and then the token never counts as expired). The token never appears in
    ``repr()`` or ``str()``.
    """

    __slots__ = ("_expires_at_epoch", "expires_at", "token")

    def __init__(self, token: str, expires_at: str | datetime | float | None) -> None:
        self.token = token
        self.expires_at = expires_at
        self._expires_at_epoch = None if expires_at is None else parse_github_timestamp(expires_at)

    @property
    def expires_at_epoch(self) -> float | None:
        return self._expires_at_epoch

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        """True when the token is expired or will be ``seconds`` from ``now`` (default: time)."""
        if self._expires_at_epoch is None:
            return False
        current = time.time() if now is None else now
        return current + seconds >= self._expires_at_epoch

    def expired(self, now: float | None = None) -> bool:
        """True once ``expires_at`` has passed (fastapi-githubapp's method, now really checked)."""
        return self.expires_within(0.0, now)

    def __repr__(self) -> str:
        return f"InstallationAuthorization(token=<redacted>, expires_at={self.expires_at!r})"

    __str__ = __repr__
