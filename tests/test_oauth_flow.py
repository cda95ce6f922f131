"""The login flow end to end over real HTTP: browser -> app -> FakeGitHub -> app."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi import HTTPException, Request
from sqlalchemy import select

from ghapp_celery import GitHubApp
from ghapp_celery.github.auth import GitHubAppAuth
from ghapp_celery.github.client import AsyncGitHubClient
from ghapp_celery.github.registry import aclose_sessions, session_for
from ghapp_celery.oauth import RefreshingUserCredentials
from ghapp_celery.store.models import oauth_tokens
from ghapp_celery.testing import ACCESS_TTL
from tests.test_oauth_harness import (
    PREFIX,
    SESSION_SECRET,
    OAuthEnv,
    make_env,
)


@pytest.fixture
def env(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[OAuthEnv]:
    caplog.set_level(logging.DEBUG)
    with make_env(tmp_path) as served:
        yield served


def test_login_answers_the_auth_url_with_state_and_pkce(env: OAuthEnv) -> None:
    state, auth_url = env.start()
    params = httpx_params(auth_url)
    assert auth_url.startswith(f"{env.fake.root_url}/login/oauth/authorize?")
    assert params["client_id"] == env.fake.client_id
    assert params["redirect_uri"] == env.oauth.callback_urls[0]
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43 and len(state) >= 32
    cookie = next(c for c in env.browser.cookies.jar if c.name == "ghapp_oauth_state")
    assert cookie.path == PREFIX and cookie.has_nonstandard_attr("HttpOnly")
    assert state not in (cookie.value or "")  # sealed, not readable


def httpx_params(url: str) -> dict[str, str]:
    import httpx

    return dict(httpx.URL(url).params)


def test_the_whole_flow_login_user_github_logout(
    env: OAuthEnv, caplog: pytest.LogCaptureFixture
) -> None:
    answer = env.login()
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"user", "session_token"}
    user = body["user"]
    assert user["id"] == env.oauth.user.id and user["login"] == "octocat"
    assert user["emails"][0]["email"] == "octocat@github.com"
    assert set(user) == {"id", "login", "name", "email", "avatar_url", "emails"}

    # The session: a cookie with the right flags, and a JWT holding no GitHub token.
    set_cookie = answer.headers["set-cookie"]
    assert "session_token=" in set_cookie and "HttpOnly" in set_cookie
    assert "samesite=lax" in set_cookie.lower() and "Path=/" in set_cookie
    claims = jwt.decode(body["session_token"], SESSION_SECRET, algorithms=["HS256"])
    assert {"sub", "login", "iat", "exp", "jti"} <= set(claims)
    assert claims["sub"] == str(env.oauth.user.id) and claims["type"] == "session"
    issued = env.oauth.issued_access_tokens()
    assert len(issued) == 1
    assert issued[0] not in answer.text and "ghr_" not in answer.text

    # PKCE went to GitHub, and the exchange asked for JSON.
    exchange = next(r for r in env.fake.requests if r.path == "/login/oauth/access_token")
    assert b"code_verifier=" in exchange.body and b"client_secret=" in exchange.body
    assert exchange.headers["accept"] == "application/json"

    # The tokens are stored encrypted.
    with env.manager.store._tx(write=False) as conn:
        row = conn.execute(select(oauth_tokens)).one()
    assert issued[0].encode() not in row.access_token and row.refresh_token is not None
    assert row.session_id == claims["jti"]

    # The browser is signed in: /user, the dependencies, and GitHub as the user.
    assert env.get(f"{PREFIX}/user").json()["login"] == "octocat"
    assert env.get("/me").json() == {"login": "octocat"}
    assert env.get("/maybe").json() == {"login": "octocat"}
    assert env.get("/gh/user").json() == {"login": "octocat"}
    user_call = [r for r in env.fake.requests if r.path == "/user"][-1]
    assert user_call.headers["authorization"] == "Bearer <redacted>"

    # Logout: the cookie goes, and the JWT itself stops working.
    out = env.post(f"{PREFIX}/logout")
    assert out.json() == {"status": "logged_out"}
    assert env.get(f"{PREFIX}/user").status_code == 401
    assert env.get("/maybe").json() == {"login": None}
    replay = env.get(f"{PREFIX}/user", headers={"Authorization": f"Bearer {body['session_token']}"})
    assert replay.status_code == 401 and replay.json()["detail"] == "Session revoked"
    assert env.token_rows() == 0

    # Nothing we log holds a token (httpcore's DEBUG traces dump raw headers by design).
    logged = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpcore", "hpack"))
    )
    assert "ghapp_celery.oauth" in {r.name for r in caplog.records}
    assert body["session_token"] not in logged and issued[0] not in logged
    assert "ghr_" not in logged and "ghu_" not in logged


def test_bearer_header_works_without_cookies(env: OAuthEnv) -> None:
    token = env.login().json()["session_token"]
    env.browser.cookies.clear()
    assert env.get("/me").status_code == 401
    ok = env.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert ok.json() == {"login": "octocat"}


def test_expired_user_token_is_refreshed_transparently(env: OAuthEnv) -> None:
    env.login()
    first = env.oauth.issued_access_tokens()[0]
    env.clock.advance(ACCESS_TTL + 1)
    assert not env.oauth.access_token_is_valid(first)
    assert env.get("/gh/user").json() == {"login": "octocat"}
    assert env.oauth.refresh_grants == 1
    second = env.oauth.issued_access_tokens()[1]
    assert env.oauth.access_token_is_valid(second)
    assert env.get("/gh/user").status_code == 200
    assert env.oauth.refresh_grants == 1  # the new token is reused, not refreshed again
    with env.manager.store._tx(write=False) as conn:
        assert conn.execute(select(oauth_tokens.c.version)).scalar_one() == 1


def test_rejected_refresh_token_drops_the_session(env: OAuthEnv) -> None:
    env.login()
    for entry in env.oauth.refresh_tokens.values():
        entry.used = True  # revoked on GitHub's side meanwhile
    env.clock.advance(ACCESS_TTL + 1)
    answer = env.get("/gh/user")
    assert answer.status_code == 401
    assert answer.json()["detail"] == "Session expired; sign in again"
    assert env.get(f"{PREFIX}/user").json()["detail"] == "Session revoked"
    assert env.token_rows() == 0


def test_github_down_during_refresh_keeps_the_session(env: OAuthEnv) -> None:
    env.login()
    env.clock.advance(ACCESS_TTL + 1)
    env.fake.fail_next(502, path_prefix="/login/oauth/access_token")
    assert env.get("/gh/user").status_code == 503
    assert env.get(f"{PREFIX}/user").status_code == 200
    assert env.get("/gh/user").json() == {"login": "octocat"}  # next time it works


def test_logout_can_revoke_the_github_grant(env: OAuthEnv) -> None:
    env.login()
    token = env.oauth.issued_access_tokens()[0]
    out = env.post(f"{PREFIX}/logout", params={"revoke_grant": "true"})
    assert out.json() == {"status": "logged_out", "grant_revoked": True}
    assert env.oauth.revoked_grants == 1
    assert not env.oauth.access_token_is_valid(token)
    assert env.get("/me").status_code == 401


def test_redirect_to_an_allowed_path_after_login(env: OAuthEnv) -> None:
    answer = env.browser.get(
        f"{env.url}{PREFIX}/login",
        params={"redirect": "true", "redirect_to": "/me"},
        follow_redirects=True,
    )
    assert answer.status_code == 200 and answer.json() == {"login": "octocat"}
    assert [r.status_code for r in answer.history] == [302, 302, 303]


def test_users_without_email_permission_still_sign_in(env: OAuthEnv) -> None:
    env.oauth.emails_forbidden = True
    answer = env.login()
    assert answer.status_code == 200 and answer.json()["user"]["emails"] == []


def test_login_and_logout_callbacks_sync_and_async(tmp_path: Path) -> None:
    seen: list[tuple[str, Any, str]] = []

    def setup(github_app: GitHubApp) -> None:
        @github_app.on_login
        def sync_login(user: dict[str, Any], request: Request) -> None:
            seen.append(("login-sync", user["login"], request.url.path))

        @github_app.on_login
        async def async_login(user: dict[str, Any], request: Request) -> None:
            seen.append(("login-async", user["id"], request.url.path))

        @github_app.on_logout
        async def bye(user: dict[str, Any], request: Request) -> None:
            seen.append(("logout", user["login"], request.url.path))

    with make_env(tmp_path, setup=setup) as env:
        env.login()
        env.post(f"{PREFIX}/logout")
        uid = env.oauth.user.id
    assert seen == [
        ("login-sync", "octocat", f"{PREFIX}/callback"),
        ("login-async", uid, f"{PREFIX}/callback"),
        ("logout", "octocat", f"{PREFIX}/logout"),
    ]


def test_on_login_can_refuse_a_user_and_leaves_no_session(tmp_path: Path) -> None:
    def setup(github_app: GitHubApp) -> None:
        @github_app.on_login
        def members_only(user: dict[str, Any], request: Request) -> None:
            raise HTTPException(status_code=403, detail="Not a member of the org")

    with make_env(tmp_path, setup=setup) as env:
        answer = env.login()
        assert answer.status_code == 403
        assert answer.json() == {"detail": "Not a member of the org", "error": "login_refused"}
        assert "session_token" not in env.browser.cookies
        assert env.token_rows() == 0


def test_non_expiring_user_tokens_are_used_as_they_are(env: OAuthEnv) -> None:
    env.oauth.expiring = False
    env.login()
    env.clock.advance(365 * 86_400)
    assert env.get("/gh/user").json() == {"login": "octocat"}
    assert env.oauth.refresh_grants == 0


def test_pkce_challenge_is_the_s256_of_the_verifier_sent(env: OAuthEnv) -> None:
    _, auth_url = env.start()
    challenge = httpx_params(auth_url)["code_challenge"]
    callback = env.authorize(auth_url)
    assert env.browser.get(str(callback)).status_code == 200
    exchange = next(r for r in env.fake.requests if r.path == "/login/oauth/access_token")
    verifier = dict(pair.split("=", 1) for pair in exchange.body.decode().split("&"))[
        "code_verifier"
    ]
    digest = hashlib.sha256(verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge


def test_the_example_app_signs_in_lists_and_signs_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from examples.oauth_login import create_app
    from ghapp_celery.config import Settings
    from ghapp_celery.testing import FakeGitHub, FakeOAuth, serve
    from tests.test_oauth_harness import CLIENT_SECRET, free_port

    fake = FakeGitHub()
    oauth = FakeOAuth.install(fake, client_secret=CLIENT_SECRET)
    with fake.serve() as fake_url:
        port = free_port()
        callback = f"http://127.0.0.1:{port}{PREFIX}/callback"
        oauth.callback_urls = [callback]
        monkeypatch.setenv("GITHUBAPP_OAUTH_BASE_URL", fake_url)
        monkeypatch.setenv("GITHUBAPP_OAUTH_COOKIE_SECURE", "false")
        app, _ = create_app(
            github_app_url=fake_url,
            oauth_client_id=fake.client_id,
            oauth_client_secret=CLIENT_SECRET,
            oauth_session_secret=SESSION_SECRET,
            oauth_redirect_uri=callback,
            settings=Settings(database_url=f"sqlite:///{tmp_path}/example.sqlite"),
        )
        with serve(app, port=port) as url, httpx.Client(timeout=10) as browser:
            home = browser.get(f"{url}/")
            assert "Sign in with GitHub" in home.text
            link = home.text.split('href="', 1)[1].split('"', 1)[0]
            signed_in = browser.get(f"{url}{link}", follow_redirects=True)
            assert "Signed in as octocat" in signed_in.text
            assert browser.get(f"{url}/me/repos").json()["login"] == "octocat"
            browser.post(f"{url}{PREFIX}/logout")
            assert "Sign in with GitHub" in browser.get(f"{url}/").text
            assert browser.get(f"{url}/me/repos").status_code == 401


def test_a_refused_token_is_refreshed_once_and_the_call_retried(env: OAuthEnv) -> None:
    env.login()
    first = env.oauth.issued_access_tokens()[0]
    del env.fake.tokens[first]  # revoked on GitHub's side before its stored expiry
    calls = sum(r.path == "/user" for r in env.fake.requests)
    assert env.get("/gh/user").json() == {"login": "octocat"}
    assert env.oauth.refresh_grants == 1
    assert sum(r.path == "/user" for r in env.fake.requests) == calls + 2  # 401, then 200
    assert env.get("/gh/user").status_code == 200
    assert env.oauth.refresh_grants == 1


def test_user_github_is_an_async_client_keyed_by_the_user(env: OAuthEnv) -> None:
    token = env.login().json()["session_token"]
    claims = env.manager.verify(token)

    async def check() -> None:
        gh = env.manager.user_github(claims)
        assert isinstance(gh, AsyncGitHubClient)
        assert isinstance(gh.credentials, RefreshingUserCredentials)
        assert gh.identity == f"user:{env.oauth.user.id}"
        assert "ghu_" not in repr(gh) and "ghu_" not in repr(gh.credentials)
        # No app credentials in this env: the manager's own session on the OAuth API, per loop.
        assert gh.session is env.manager.user_github(claims).session
        base_url = env.fake.base_url
        assert base_url is not None  # served
        assert gh.rest_url == base_url.rstrip("/")
        async with gh:
            assert (await gh.get("/user")).data["login"] == "octocat"
        # With app credentials on the same API, the app's shared per-loop session is used.
        auth = GitHubAppAuth(env.fake.app_id, env.fake.private_key_pem, base_url=base_url)
        env.manager._app_auth = lambda: auth
        try:
            assert env.manager.user_github(claims).session is session_for(auth)
            auth_elsewhere = GitHubAppAuth(
                env.fake.app_id, env.fake.private_key_pem, base_url="https://ghe.example.com"
            )
            env.manager._app_auth = lambda: auth_elsewhere
            assert env.manager.user_github(claims).session is gh.session
        finally:
            env.manager._app_auth = None
            await aclose_sessions(auth)
            await env.manager.aclose()

    asyncio.run(check())


async def _source(refused: str | None) -> str:
    return "fresh" if refused else "current"


def test_refreshing_credentials_pass_the_refused_token_once() -> None:
    creds = RefreshingUserCredentials(_source, identity="user:1")

    async def run() -> list[tuple[str, str]]:
        first = await creds.aauthorization()
        assert creds.refused("current") is True
        return [first, await creds.aauthorization(), await creds.aauthorization()]

    assert asyncio.run(run()) == [
        ("Bearer current", "current"),
        ("Bearer fresh", "fresh"),
        ("Bearer current", "current"),
    ]
    with pytest.raises(RuntimeError):
        creds.authorization()
    with pytest.raises(ValueError):
        RefreshingUserCredentials(_source, identity="")
