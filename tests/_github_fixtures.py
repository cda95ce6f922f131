"""Fixtures for the GitHub-facing tests: a FakeGitHub on loopback, its clock, and clients.

Test modules import what they use::

    from tests._github_fixtures import clock, fake_github, make_auth  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from ghapp_celery.github import GitHubAppAuth
from ghapp_celery.testing import FakeClock, FakeGitHub, serve

#: A whole second, so "reset in 1 s" means exactly one second of waiting.
START = 1_700_000_000.0


class Sleeps:
    """An injected ``sleep``/``asleep``: records each delay and moves the fake clock by it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        self(seconds)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def sleeps(clock: FakeClock) -> Sleeps:
    return Sleeps(clock)


class _Switch:
    """One uvicorn for the whole session, handing each request to the current test's fake
    (starting and stopping a server per test would cost ~0.2 s each)."""

    def __init__(self) -> None:
        self.target: ASGIApp = Starlette()
        self._lifespan = Starlette()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._lifespan if scope["type"] == "lifespan" else self.target
        await app(scope, receive, send)


@pytest.fixture(scope="session")
def _github_server() -> Iterator[tuple[_Switch, str]]:
    switch = _Switch()
    with serve(switch) as url:
        yield switch, url


@pytest.fixture
def fake_github(clock: FakeClock, _github_server: tuple[_Switch, str]) -> Iterator[FakeGitHub]:
    """A fresh FakeGitHub on the shared clock, served on loopback; ``.base_url`` is set."""
    switch, url = _github_server
    fake = FakeGitHub(clock=clock)
    switch.target, fake.base_url, fake.root_url = fake.app, url, url
    yield fake
    switch.target = Starlette()


@pytest.fixture
def make_auth(
    fake_github: FakeGitHub, clock: FakeClock, sleeps: Sleeps
) -> Iterator[Callable[..., GitHubAppAuth]]:
    """Build a GitHubAppAuth aimed at the fake, on its clock, with recorded sleeps."""
    made: list[GitHubAppAuth] = []

    def factory(**overrides: Any) -> GitHubAppAuth:
        options: dict[str, Any] = {
            "base_url": fake_github.base_url,
            "clock": clock,
            "sleep": sleeps,
            "asleep": sleeps.asleep,
        }
        options.update(overrides)
        auth = GitHubAppAuth(fake_github.app_id, fake_github.private_key_pem, **options)
        made.append(auth)
        return auth

    yield factory
    for auth in made:
        auth.close()


@pytest.fixture
def enterprise_github(
    clock: FakeClock, _github_server: tuple[_Switch, str]
) -> Iterator[FakeGitHub]:
    """A FakeGitHub laid out like GitHub Enterprise Server: REST under ``/api/v3``, GraphQL at
    ``/api/graphql``; ``.base_url`` is the REST root, ``.root_url`` the host."""
    switch, url = _github_server
    fake = FakeGitHub(clock=clock)
    switch.target = fake.asgi("/api/v3")
    fake.root_url, fake.base_url = url, url + "/api/v3"
    yield fake
    switch.target = Starlette()


@pytest.fixture
def client_options(clock: FakeClock, sleeps: Sleeps) -> dict[str, Any]:
    """GitHubSession options for tests: the fake clock, recorded sleeps, no jitter."""
    from ghapp_celery.github import RetrySettings

    return {
        "clock": clock,
        "sleep": sleeps,
        "asleep": sleeps.asleep,
        "retry": RetrySettings(jitter=False),
    }
