"""When OAuth mounts, where its settings come from, and the allow-list's positive side."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI

from ghapp_celery import GitHubApp
from ghapp_celery.config import Settings
from ghapp_celery.oauth import OAuthSettings, configure_oauth, manager_of
from ghapp_celery.oauth.crypto import LoginState, StateSealer, TokenCipher
from tests.test_oauth_harness import PREFIX, SESSION_SECRET, OAuthEnv, make_env

FULL = {
    "oauth_client_id": "Iv1.abc",
    "oauth_client_secret": "shh",
    "oauth_session_secret": SESSION_SECRET,
}


def _paths(app: FastAPI) -> set[str]:
    # Included routers are not flattened into app.routes in this FastAPI; the schema is.
    return set(app.openapi()["paths"])


def _app(tmp_path: Path, **kwargs: object) -> FastAPI:
    app = FastAPI()
    settings = Settings(database_url=f"sqlite:///{tmp_path}/s.sqlite")
    GitHubApp(app, settings=settings, **kwargs)  # type: ignore[arg-type]
    return app


def test_full_configuration_mounts_the_four_routes(tmp_path: Path) -> None:
    paths = _paths(_app(tmp_path, **FULL))
    for name in ("login", "callback", "logout", "user"):
        assert f"{PREFIX}/{name}" in paths


def test_custom_prefix(tmp_path: Path) -> None:
    paths = _paths(_app(tmp_path, oauth_routes_prefix="/sso/", **FULL))
    assert "/sso/login" in paths and f"{PREFIX}/login" not in paths


@pytest.mark.parametrize("missing", sorted(FULL))
def test_partial_configuration_logs_and_mounts_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, missing: str
) -> None:
    given = {k: v for k, v in FULL.items() if k != missing}
    with caplog.at_level(logging.WARNING, logger="ghapp_celery.oauth"):
        paths = _paths(_app(tmp_path, **given))
    assert not [p for p in paths if p.startswith(PREFIX)]
    assert f"GITHUBAPP_{missing.upper()}" in caplog.text
    assert "shh" not in caplog.text and SESSION_SECRET not in caplog.text


def test_enable_oauth_false_turns_it_off(tmp_path: Path) -> None:
    app = _app(tmp_path, enable_oauth=False, **FULL)
    assert not [p for p in _paths(app) if p.startswith(PREFIX)]


def test_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUBAPP_OAUTH_CLIENT_ID", "Iv1.env")
    monkeypatch.setenv("GITHUBAPP_OAUTH_CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("GITHUBAPP_OAUTH_SESSION_SECRET", SESSION_SECRET)
    monkeypatch.setenv("GITHUBAPP_OAUTH_SESSION_LIFETIME", "120")
    monkeypatch.setenv("GITHUBAPP_OAUTH_REDIRECT_ALLOWLIST", "https://a.example, https://b.example")
    app = FastAPI()
    github_app = GitHubApp(app, settings=Settings(database_url=f"sqlite:///{tmp_path}/s.sqlite"))
    manager = manager_of(github_app)
    assert manager is not None and f"{PREFIX}/login" in _paths(app)
    assert manager.config.client_id == "Iv1.env"
    assert manager.sessions.lifetime == 120
    assert manager.redirect_allowed("https://b.example/next")
    monkeypatch.setenv("GITHUBAPP_ENABLE_OAUTH", "false")
    app2 = FastAPI()
    GitHubApp(app2, settings=Settings(database_url=f"sqlite:///{tmp_path}/s.sqlite"))
    assert f"{PREFIX}/login" not in _paths(app2)


def test_importing_the_package_adds_no_route() -> None:
    code = (
        "import ghapp_celery, ghapp_celery.oauth; from fastapi import FastAPI; "
        "app = FastAPI(); import sys; "
        "print(len(app.routes), 'authlib' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["4", "False"]  # FastAPI's docs routes only; authlib not loaded


def test_get_current_user_without_oauth_is_401(tmp_path: Path) -> None:
    from fastapi import HTTPException
    from starlette.requests import Request

    github_app = GitHubApp(settings=Settings(database_url=f"sqlite:///{tmp_path}/s.sqlite"))
    request = Request({"type": "http", "headers": [], "method": "GET", "path": "/"})
    with pytest.raises(HTTPException) as caught:
        github_app.get_current_user(request)
    assert caught.value.status_code == 401 and caught.value.detail == "OAuth2 not configured"
    assert github_app.optional_user(request) is None


def test_redirect_allow_list_accepts_listed_origins(tmp_path: Path) -> None:
    with make_env(tmp_path, redirect_allowlist=["https://app.example.com"]) as env:
        allowed = env.manager.redirect_allowed
        assert allowed("/dashboard?tab=1")
        assert allowed("https://app.example.com/welcome")
        assert not allowed("https://app.example.com.evil.example/")
        assert not allowed("http://app.example.com/")  # the scheme is part of the origin
        answer = env.browser.get(
            f"{env.url}{PREFIX}/login",
            params={"redirect": "true", "redirect_to": "https://app.example.com/hi"},
        )
        assert answer.status_code == 302


def test_session_lifetime_option(tmp_path: Path) -> None:
    with make_env(tmp_path, session_lifetime=300) as env:
        _check_lifetime(env, 300)


def _check_lifetime(env: OAuthEnv, seconds: int) -> None:
    import jwt

    token = env.login().json()["session_token"]
    claims = jwt.decode(token, SESSION_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == seconds


def test_configure_oauth_keywords_win(tmp_path: Path) -> None:
    github_app = GitHubApp(settings=Settings(database_url=f"sqlite:///{tmp_path}/s.sqlite"))
    options = configure_oauth(github_app, cookie_secure=False, state_ttl=30)
    assert isinstance(options, OAuthSettings)
    assert options.cookie_secure is False and options.state_ttl == 30


def test_token_cipher_and_state_sealer_keys_differ_by_purpose() -> None:
    cipher = TokenCipher("one-secret")
    blob = cipher.encrypt("ghu_example")
    assert cipher.decrypt(blob) == "ghu_example"
    assert TokenCipher("another-secret").decrypt(blob) is None
    sealer = StateSealer("one-secret", ttl=60)
    sealed = sealer.seal(LoginState("s", "v", None, None))
    assert sealer.open(sealed) == LoginState("s", "v", None, None)
    assert sealer.open(blob.decode()) is None  # a token blob is no state cookie
