"""fastapi-githubapp 0.2.7's OAuth login, tested as a 0.2.7 app tests it (issue 12, section 1,
items 6 and 8): FastAPI's TestClient on http://testserver, respx for GitHub, unittest.mock.

- 6: the state and session cookies are Secure by default only where the login is https, so a
  plain-http TestClient (or laptop) login completes; production (an https callback, or a real
  host name) keeps Secure cookies; ``GITHUBAPP_OAUTH_COOKIE_SECURE`` overrides.
- 8: every HTTP call of the login goes through httpx: respx sees each one, and an
  ``httpx.MockTransport`` given to ``configure_oauth`` answers each one, with no socket opened.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, Protocol
from unittest.mock import patch
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import respx
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from ghapp_celery import GitHubApp
from ghapp_celery.oauth import configure_oauth, manager_of


class Answer(Protocol):
    """A TestClient answer (Starlette's TestClient speaks httpx2, whose Response this is)."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def headers(self) -> Any: ...
    def json(self) -> Any: ...


CLIENT_ID = "Iv23liTESTCLIENT"
TOKEN_URL = "https://github.com/login/oauth/access_token"
USER = {"id": 583231, "login": "octocat", "name": "The Octocat", "email": None}


@pytest.fixture(autouse=True)
def in_a_project_directory(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A 0.2.7 app configures no store: the session store is the default SQLite file under the
    # working directory, as in a user's project.
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUBAPP_OAUTH_COOKIE_SECURE", "GITHUBAPP_OAUTH_REDIRECT_URI"):
        monkeypatch.delenv(name, raising=False)
    yield


def make_app(**oauth: Any) -> tuple[FastAPI, GitHubApp]:
    app = FastAPI()
    github_app = GitHubApp(
        app,
        oauth_client_id=CLIENT_ID,
        oauth_client_secret="test-client-secret",
        oauth_session_secret="test-session-secret-0123456789abcdef",
        **oauth,
    )
    return app, github_app


def dispose(github_app: GitHubApp) -> None:
    manager = manager_of(github_app)
    if manager is not None:
        manager.store.dispose()


def state_of(login_answer: Answer) -> str:
    assert login_answer.status_code == 200, login_answer.text
    auth_url = str(login_answer.json()["auth_url"])
    return parse_qs(urlparse(auth_url).query)["state"][0]


def mock_github(mock: respx.MockRouter) -> dict[str, respx.Route]:
    return {
        "token": mock.post(TOKEN_URL).respond(
            json={"access_token": "gho_usertoken", "token_type": "bearer", "scope": ""}
        ),
        "user": mock.get("https://api.github.com/user").respond(json=USER),
        "emails": mock.get("https://api.github.com/user/emails").respond(json=[]),
    }


def set_cookie_headers(answer: Answer, name: str) -> list[str]:
    return [h for h in answer.headers.get_list("set-cookie") if h.startswith(f"{name}=")]


# -- 0.2.7's login test ------------------------------------------------------------------------


def test_a_027_login_test_completes_over_plain_http_with_respx() -> None:
    app, github_app = make_app()
    client = TestClient(app)  # http://testserver
    try:
        state = state_of(client.get("/auth/github/login"))
        with respx.mock(assert_all_called=True) as mock:
            routes = mock_github(mock)
            answer = client.get("/auth/github/callback", params={"code": "abc", "state": state})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["user"]["login"] == "octocat" and body["user"]["id"] == USER["id"]
        # respx answered the exchange: our request carried the code, the app's credentials and
        # asked for JSON.
        sent = routes["token"].calls.last.request
        form = parse_qs(sent.content.decode())
        assert form["code"] == ["abc"] and form["client_id"] == [CLIENT_ID]
        assert form["client_secret"] == ["test-client-secret"]
        assert sent.headers["accept"] == "application/json"
        assert routes["user"].calls.last.request.headers["authorization"] == "Bearer gho_usertoken"
        # The session works over the same plain-http client, by cookie and by bearer header.
        assert client.get("/auth/github/user").json()["login"] == "octocat"
        bearer = {"Authorization": f"Bearer {body['session_token']}"}
        assert TestClient(app).get("/auth/github/user", headers=bearer).status_code == 200
    finally:
        dispose(github_app)


# -- 6. Secure where the login is https, and the setting overrides ------------------------------


def test_with_an_https_redirect_uri_both_cookies_are_secure() -> None:
    app, github_app = make_app(oauth_redirect_uri="https://app.example.com/auth/github/callback")
    client = TestClient(app, base_url="https://testserver")
    try:
        login = client.get("/auth/github/login")
        [state_cookie] = set_cookie_headers(login, "ghapp_oauth_state")
        assert "; secure" in state_cookie.lower()
        with respx.mock() as mock:
            mock_github(mock)
            answer = client.get(
                "/auth/github/callback", params={"code": "abc", "state": state_of(login)}
            )
        assert answer.status_code == 200, answer.text
        [session_cookie] = set_cookie_headers(answer, "session_token")
        assert "; secure" in session_cookie.lower() and "; httponly" in session_cookie.lower()
    finally:
        dispose(github_app)


@pytest.mark.parametrize(
    ("setting", "base_url", "redirect_uri", "secure"),
    [
        # A 0.2.7 login test: TestClient's plain http, whatever callback URL the app names.
        (None, "http://testserver", None, False),
        (None, "http://testserver", "https://app.example.com/auth/github/callback", False),
        # Local work with an http callback URL.
        (None, "http://localhost:8000", "http://localhost:8000/auth/github/callback", False),
        # Production behind a TLS-terminating proxy that passes neither scheme nor host on:
        # the request reads plain http on loopback, the https callback URL decides.
        (None, "http://127.0.0.1:8000", "https://app.example.com/auth/github/callback", True),
        # No callback URL and no test client: Secure.
        (None, "http://app.example.com", None, True),
        (None, "https://app.example.com", "http://localhost:8000/auth/github/callback", True),
        # The setting wins both ways.
        ("true", "http://testserver", "http://localhost:8000/auth/github/callback", True),
        ("false", "https://app.example.com", "https://app.example.com/auth/github/callback", False),
    ],
)
def test_cookies_are_secure_unless_the_login_runs_over_plain_http(
    monkeypatch: pytest.MonkeyPatch,
    setting: str | None,
    base_url: str,
    redirect_uri: str | None,
    secure: bool,
) -> None:
    if setting is not None:
        monkeypatch.setenv("GITHUBAPP_OAUTH_COOKIE_SECURE", setting)
    app, github_app = make_app(oauth_redirect_uri=redirect_uri)
    try:
        login = TestClient(app, base_url=base_url).get("/auth/github/login")
        [state_cookie] = set_cookie_headers(login, "ghapp_oauth_state")
        assert ("; secure" in state_cookie.lower()) is secure
    finally:
        dispose(github_app)


def test_a_secure_state_cookie_on_plain_http_says_what_to_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, github_app = make_app(oauth_redirect_uri="https://app.example.com/auth/github/callback")
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    try:
        state = state_of(client.get("/auth/github/login"))
        answer = client.get("/auth/github/callback", params={"code": "abc", "state": state})
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_state"
        assert "GITHUBAPP_OAUTH_COOKIE_SECURE=false" in caplog.text
    finally:
        dispose(github_app)


def test_configure_oauth_sets_cookie_secure_in_code() -> None:
    app = FastAPI()
    github_app = GitHubApp(
        oauth_client_id=CLIENT_ID,
        oauth_client_secret="s",
        oauth_session_secret="test-session-secret-0123456789abcdef",
    )
    configure_oauth(github_app, cookie_secure=True)
    github_app.init_app(app)
    try:
        login = TestClient(app).get("/auth/github/login")
        [state_cookie] = set_cookie_headers(login, "ghapp_oauth_state")
        assert "; secure" in state_cookie.lower()
    finally:
        dispose(github_app)


# -- 8. every OAuth call goes through httpx ------------------------------------------------------


@pytest.fixture
def no_network() -> Iterator[list[tuple[Any, ...]]]:
    """Any library that opens a connection (requests, urllib3, httpx2, a real httpx transport)
    fails here, and is recorded: only respx or a MockTransport can answer."""
    attempts: list[tuple[Any, ...]] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network refused by the test")

    with patch.object(socket.socket, "connect", refuse):
        yield attempts


def answer_as_github(request: httpx.Request) -> httpx.Response:
    """GitHub with expiring user tokens: the code and refresh grants, the user's profile and
    repositories, and the grant revocation."""
    route = (request.method, request.url.path)
    if route == ("POST", "/login/oauth/access_token"):
        form = parse_qs(request.content.decode())
        if form.get("grant_type") == ["refresh_token"]:
            assert form["refresh_token"] == ["ghr_first"]
            tokens = {"access_token": "ghu_second", "refresh_token": "ghr_second"}
            return httpx.Response(200, json={**tokens, "expires_in": 28800})
        # Expires in 1 s: the first call as the user refreshes it.
        tokens = {"access_token": "ghu_first", "refresh_token": "ghr_first"}
        return httpx.Response(200, json={**tokens, "expires_in": 1})
    answers: dict[tuple[str, str], httpx.Response] = {
        ("GET", "/user"): httpx.Response(200, json=USER),
        ("GET", "/user/emails"): httpx.Response(200, json=[]),
        ("GET", "/user/repos"): httpx.Response(200, json=[{"id": 1}]),
        ("DELETE", f"/applications/{CLIENT_ID}/grant"): httpx.Response(204),
    }
    return answers.get(route, httpx.Response(404, json={"message": "Not Found"}))


GITHUB_CALLS = [
    f"POST {TOKEN_URL}",
    "GET https://api.github.com/user",
    "GET https://api.github.com/user/emails",
    f"POST {TOKEN_URL}",  # the refresh
    "GET https://api.github.com/user/repos",
    f"DELETE https://api.github.com/applications/{CLIENT_ID}/grant",
]


def app_calling_github_as_the_user(**options: Any) -> tuple[FastAPI, GitHubApp]:
    app = FastAPI()
    github_app = GitHubApp(
        oauth_client_id=CLIENT_ID,
        oauth_client_secret="test-client-secret",
        oauth_session_secret="test-session-secret-0123456789abcdef",
    )
    configure_oauth(github_app, **options)

    @app.get("/repos")
    async def repos(user: dict[str, Any] = Depends(github_app.require_user)) -> Any:
        async with github_app.user_github(user) as gh:
            return (await gh.get("/user/repos")).data

    github_app.init_app(app)
    return app, github_app


def login_call_as_user_and_revoke(app: FastAPI) -> None:
    client = TestClient(app)
    state = state_of(client.get("/auth/github/login"))
    login = client.get("/auth/github/callback", params={"code": "c", "state": state})
    assert login.status_code == 200, login.text
    assert client.get("/repos").json() == [{"id": 1}]  # refreshed first, then called
    out = client.post("/auth/github/logout", params={"revoke_grant": "true"})
    assert out.json() == {"status": "logged_out", "grant_revoked": True}


def test_respx_sees_every_oauth_call_exchange_user_refresh_and_revoke(
    no_network: list[tuple[Any, ...]],
) -> None:
    app, github_app = app_calling_github_as_the_user()
    try:
        with respx.mock(assert_all_called=True) as mock:
            for method, url in (call.split(" ") for call in GITHUB_CALLS):
                mock.route(method=method, url=url).mock(side_effect=answer_as_github)
            login_call_as_user_and_revoke(app)
            assert [f"{c.request.method} {c.request.url}" for c in mock.calls] == GITHUB_CALLS
            assert mock.calls[-2].request.headers["authorization"] == "Bearer ghu_second"
        assert no_network == []
    finally:
        dispose(github_app)


def test_a_mock_transport_given_to_configure_oauth_answers_every_oauth_call(
    no_network: list[tuple[Any, ...]],
) -> None:
    seen: list[httpx.Request] = []

    def github(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer_as_github(request)

    app, github_app = app_calling_github_as_the_user(transport=httpx.MockTransport(github))
    try:
        login_call_as_user_and_revoke(app)
        assert [f"{r.method} {r.url}" for r in seen] == GITHUB_CALLS
        assert seen[-2].headers["authorization"] == "Bearer ghu_second"
        assert no_network == []
    finally:
        dispose(github_app)
