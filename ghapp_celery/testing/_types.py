"""The data FakeGitHub passes around: clocks, credentials, replies, recorded requests, faults.

The bottom layer of the test kit: it imports nothing else from it, and every other module may
import it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from starlette.requests import Request

__all__ = [
    "AuthKind",
    "Bucket",
    "Clock",
    "Credential",
    "Endpoint",
    "FakeClock",
    "Fault",
    "Handler",
    "IssuedToken",
    "RecordedRequest",
    "Reply",
    "iso",
    "real_time",
]

#: What an endpoint requires: the app's JWT, an installation or user token, or nothing.
AuthKind = Literal["jwt", "token", "none"]

#: Seconds since the epoch, now: ``time.time`` or a FakeClock.
Clock = Callable[[], float]


def real_time() -> float:
    """FakeGitHub's default clock: ``time.time()``, looked up on each call so that a test which
    monkeypatches ``time.time`` moves the fake's clock too."""
    return time.time()


def iso(epoch: float) -> str:
    """GitHub's timestamp format: ``2016-07-11T22:14:10Z``."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeClock:
    """A clock a test sets and advances, to share between FakeGitHub and the client under test
    (token expiry, JWT age, rate-limit resets without waiting). FakeGitHub follows real time
    unless it is given one."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def set(self, t: float) -> None:
        with self._lock:
            self._now = t


@dataclass(frozen=True)
class RecordedRequest:
    """One request FakeGitHub received (``fake.requests``)."""

    method: str
    path: str  # below the API root (the prefix stripped)
    query: str
    headers: dict[str, str]  # lower-case names; Authorization as "<scheme> <redacted>"
    body: bytes = b""


@dataclass
class IssuedToken:
    """An installation or user token FakeGitHub minted (``fake.tokens``)."""

    token: str
    installation_id: int
    expires_at: float
    revoked: bool = False


@dataclass(frozen=True)
class Credential:
    """Who sent a request, as an endpoint handler sees it."""

    kind: AuthKind
    key: str  # the rate-limit bucket: "app", a token, or "anonymous"
    installation_id: int | None = None


@dataclass
class Reply:
    """What an endpoint handler answers; the pipeline adds GitHub's headers and the ETag."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


#: An endpoint: ``async def handler(request, credential) -> Reply``.
Handler = Callable[[Request, Credential], Awaitable[Reply]]


class Endpoint(NamedTuple):
    """One route an endpoint group serves through FakeGitHub's pipeline."""

    path: str
    handler: Handler
    methods: tuple[str, ...] = ("GET",)
    auth: AuthKind = "token"


@dataclass
class Fault:
    """A canned answer queued by ``fail_next``."""

    status: int
    times: int
    path_prefix: str | None
    headers: dict[str, str]
    body: Any


@dataclass
class Bucket:
    """One credential's rate-limit budget for one resource."""

    limit: int
    reset: int
    used: int = 0
    resource: str = "core"
