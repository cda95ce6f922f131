"""pytest fixtures for testing a GitHub App built on ghapp_celery; loaded by the ``pytest11``
entry point whenever ghapp_celery is installed (``-p no:ghapp_celery`` turns it off).

Every fixture is named ``ghapp_*`` and each is small, so a test module or conftest.py
overrides one by defining a fixture of the same name:

- ``ghapp_fake_github``: a fresh FakeGitHub per test, served on loopback (one server for the
  session; each test's fake takes its requests).
- ``ghapp_webhook_secret``: the webhook secret the app and the client share.
- ``ghapp_app_factory``: builds GitHubApps wired to the fake, broker and store in tmp_path
  (``ghapp_app_factory(setup=add_handlers, **GitHubApp options)``).
- ``ghapp_app``: ``ghapp_app_factory()``; override it to register your handlers.
- ``ghapp_webhooks``: serves ``ghapp_app`` and posts signed deliveries with GitHub's headers
  (``ghapp_webhooks.post("issues", payload, action="opened")``).
- ``ghapp_worker``: a Celery worker in a thread on the embedded broker, for ``ghapp_app``'s
  background handlers (register them before it starts: in ``ghapp_app``).
- ``ghapp_deliveries``: what a delivery queued and how each run ended, from the store
  (``ghapp_deliveries.wait(posted.delivery_id)``).

This module imports nothing of the kit at import time: pytest loads it in every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ghapp_celery.app import GitHubApp
    from ghapp_celery.testing import AppFactory, Deliveries, FakeGitHub, WebhookClient

__all__ = [
    "ghapp_app",
    "ghapp_app_factory",
    "ghapp_deliveries",
    "ghapp_fake_github",
    "ghapp_webhook_secret",
    "ghapp_webhooks",
    "ghapp_worker",
]


class _Switch:
    """One uvicorn for the session handing each request to the current test's fake (starting
    a server per test costs about 0.2 s)."""

    def __init__(self) -> None:
        from starlette.applications import Starlette

        self.target: Any = Starlette()
        self._lifespan = Starlette()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        app = self._lifespan if scope["type"] == "lifespan" else self.target
        await app(scope, receive, send)


@pytest.fixture(scope="session")
def _ghapp_github_server() -> Iterator[tuple[_Switch, str]]:
    from ghapp_celery.testing import serve

    switch = _Switch()
    with serve(switch) as url:
        yield switch, url


@pytest.fixture
def ghapp_fake_github(_ghapp_github_server: tuple[_Switch, str]) -> Iterator[FakeGitHub]:
    """A fresh FakeGitHub on real time, served on loopback (``.base_url`` is set)."""
    from ghapp_celery.testing import FakeGitHub

    switch, url = _ghapp_github_server
    fake = FakeGitHub()
    switch.target, fake.base_url, fake.root_url = fake.app, url, url
    try:
        yield fake
    finally:
        from starlette.applications import Starlette

        switch.target = Starlette()
        fake.base_url = fake.root_url = None


@pytest.fixture
def ghapp_webhook_secret() -> str:
    return "ghapp-test-webhook-secret"


@pytest.fixture
def ghapp_app_factory(
    ghapp_fake_github: FakeGitHub,
    ghapp_webhook_secret: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AppFactory:
    """``factory(web=None, *, setup=None, **options) -> GitHubApp`` wired to the fake."""
    from ghapp_celery.testing import AppFactory

    # The embedded broker under tmp_path, whatever the environment says.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    return AppFactory(ghapp_fake_github, ghapp_webhook_secret, tmp_path / "ghapp")


@pytest.fixture
def ghapp_app(ghapp_app_factory: AppFactory) -> GitHubApp:
    """The app under test; override to register handlers: ``factory(setup=add_handlers)``."""
    return ghapp_app_factory()


@pytest.fixture
def ghapp_webhooks(
    ghapp_app: GitHubApp,
    ghapp_app_factory: AppFactory,
    ghapp_webhook_secret: str,
    ghapp_fake_github: FakeGitHub,
) -> Iterator[WebhookClient]:
    """``ghapp_app`` served on loopback, and a client posting signed deliveries to it."""
    from ghapp_celery.testing import serve_webhooks

    web = ghapp_app_factory.web_of(ghapp_app)
    path = ghapp_app.settings.webhook_path
    with serve_webhooks(web, ghapp_webhook_secret, path=path, fake=ghapp_fake_github) as client:
        yield client


@pytest.fixture
def ghapp_worker(ghapp_app: GitHubApp) -> Iterator[Any]:
    """A Celery worker (threads pool) in this process running ``ghapp_app``'s handlers."""
    from ghapp_celery.testing import background_worker

    with background_worker(ghapp_app) as worker:
        yield worker


@pytest.fixture
def ghapp_deliveries(ghapp_app: GitHubApp) -> Deliveries:
    """The store's view of ``ghapp_app``'s deliveries and their runs."""
    from ghapp_celery.testing import Deliveries

    return Deliveries(ghapp_app)
