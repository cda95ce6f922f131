"""The OAuth test harness: FakeGitHub with its OAuth endpoints and a real app, both on loopback.

``OAuthEnv`` holds the served app, the fake, and an httpx client with a cookie jar acting as
the browser. Tests in tests/test_oauth_*.py build one per test with ``make_env``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI

from ghapp_celery import GitHubApp
from ghapp_celery.config import Settings
from ghapp_celery.oauth import configure_oauth, manager_of
from ghapp_celery.oauth.manager import OAuthManager
from ghapp_celery.testing import FakeClock, FakeGitHub, FakeOAuth, serve

SESSION_SECRET = "test-session-secret-0123456789abcdef"
CLIENT_SECRET = "fake-client-secret"
PREFIX = "/auth/github"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OAuthEnv:
    url: str  # the app
    fake: FakeGitHub
    oauth: FakeOAuth
    github_app: GitHubApp
    browser: httpx.Client
    clock: FakeClock

    @property
    def manager(self) -> OAuthManager:
        manager = manager_of(self.github_app)
        assert manager is not None
        return manager

    def login(self, **params: Any) -> httpx.Response:
        """The whole browser round trip: /login -> GitHub -> /callback (redirects followed)."""
        return self.browser.get(
            f"{self.url}{PREFIX}/login",
            params={"redirect": "true", **params},
            follow_redirects=True,
        )

    def start(self) -> tuple[str, str]:
        """/login only; returns (state, the authorize URL) with the state cookie in the jar."""
        answer = self.browser.get(f"{self.url}{PREFIX}/login")
        assert answer.status_code == 200, answer.text
        auth_url = answer.json()["auth_url"]
        state = httpx.URL(auth_url).params["state"]
        return state, auth_url

    def authorize(self, auth_url: str) -> httpx.URL:
        """Ask the fake to authorize; returns the callback URL it redirects to (not followed)."""
        answer = self.browser.get(auth_url)
        assert answer.status_code == 302, answer.text
        return httpx.URL(answer.headers["location"])

    def callback(self, **params: str) -> httpx.Response:
        return self.browser.get(f"{self.url}{PREFIX}/callback", params=params)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.browser.get(f"{self.url}{path}", **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.browser.post(f"{self.url}{path}", **kwargs)

    def token_rows(self) -> int:
        from sqlalchemy import func, select

        from ghapp_celery.store.models import oauth_tokens

        with self.manager.store._tx(write=False) as conn:
            return int(conn.execute(select(func.count()).select_from(oauth_tokens)).scalar_one())


def build_app(github_app: GitHubApp) -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    def me(user: dict[str, Any] = Depends(github_app.require_user)) -> dict[str, Any]:  # noqa: B008
        return {"login": user["login"]}

    @app.get("/maybe")
    def maybe(
        user: dict[str, Any] | None = Depends(github_app.optional_user),  # noqa: B008
    ) -> dict[str, Any]:
        return {"login": None if user is None else user["login"]}

    @app.get("/gh/user")
    async def gh_user(
        user: dict[str, Any] = Depends(github_app.get_current_user),  # noqa: B008
    ) -> dict[str, Any]:
        async with github_app.user_github(user) as gh:
            profile = (await gh.get("/user")).data
        return {"login": profile["login"]}

    github_app.init_app(app)
    return app


@contextmanager
def make_env(
    tmp_path: Path,
    *,
    setup: Callable[[GitHubApp], None] | None = None,
    access_log: bool = False,
    **options: Any,
) -> Iterator[OAuthEnv]:
    clock = FakeClock()
    fake = FakeGitHub(clock=clock)
    oauth = FakeOAuth.install(fake, client_secret=CLIENT_SECRET)
    with ExitStack() as stack:
        fake_url = stack.enter_context(fake.serve())
        port = free_port()
        callback = f"http://127.0.0.1:{port}{PREFIX}/callback"
        oauth.callback_urls = [callback]
        github_app = GitHubApp(
            github_app_url=fake_url,
            oauth_client_id=fake.client_id,
            oauth_client_secret=CLIENT_SECRET,
            oauth_session_secret=SESSION_SECRET,
            oauth_redirect_uri=callback,
            settings=Settings(database_url=f"sqlite:///{tmp_path}/store.sqlite"),
        )
        configure_oauth(
            github_app,
            clock=clock,
            **{"base_url": fake_url, "cookie_secure": False, **options},
        )
        if setup is not None:
            setup(github_app)
        app = build_app(github_app)
        url = stack.enter_context(serve(app, port=port, access_log=access_log))
        browser = stack.enter_context(httpx.Client(timeout=10))
        yield OAuthEnv(url, fake, oauth, github_app, browser, clock)
        manager = manager_of(github_app)
        if manager is not None:
            manager.store.dispose()
