"""Bad input and attacks: each gets a clear 4xx JSON answer and leaves no session behind."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

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


def assert_refused(env: OAuthEnv, answer: httpx.Response, status: int, error: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["error"] == error and isinstance(body["detail"], str)
    assert "session_token" not in answer.text
    assert "session_token=" not in answer.headers.get("set-cookie", "")
    assert "session_token" not in env.browser.cookies
    assert env.token_rows() == 0
    assert env.get(f"{PREFIX}/user").status_code == 401


def test_missing_state(env: OAuthEnv) -> None:
    _, auth_url = env.start()
    callback = env.authorize(auth_url)
    answer = env.callback(code=callback.params["code"])
    assert_refused(env, answer, 400, "missing_state")


def test_wrong_state(env: OAuthEnv) -> None:
    _, auth_url = env.start()
    callback = env.authorize(auth_url)
    answer = env.callback(code=callback.params["code"], state="forged-state-value")
    assert_refused(env, answer, 400, "state_mismatch")
    assert env.oauth.token_grants == 0  # the code never reached GitHub


def test_state_from_another_browser_is_refused(env: OAuthEnv) -> None:
    # Login CSRF: the attacker's own code and state, planted in the victim's browser.
    _, auth_url = env.start()
    callback = env.authorize(auth_url)
    env.browser.cookies.clear()  # the victim never started this login
    answer = env.callback(code=callback.params["code"], state=callback.params["state"])
    assert_refused(env, answer, 400, "invalid_state")


def test_tampered_state_cookie_is_refused(env: OAuthEnv) -> None:
    _, auth_url = env.start()
    callback = env.authorize(auth_url)
    sealed = env.browser.cookies.get("ghapp_oauth_state")
    assert sealed
    env.browser.cookies.clear()
    env.browser.cookies.set("ghapp_oauth_state", sealed[:-4] + "AAAA", path=PREFIX)
    answer = env.callback(code=callback.params["code"], state=callback.params["state"])
    assert_refused(env, answer, 400, "invalid_state")


def test_expired_state_cookie_is_refused(env: OAuthEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    _, auth_url = env.start()
    callback = env.authorize(auth_url)
    monkeypatch.setattr(env.manager.sealer, "ttl", 0)
    time.sleep(1.1)  # Fernet timestamps are in whole seconds
    answer = env.callback(code=callback.params["code"], state=callback.params["state"])
    assert_refused(env, answer, 400, "invalid_state")


def test_replayed_state(env: OAuthEnv) -> None:
    _, auth_url = env.start()
    sealed = env.browser.cookies.get("ghapp_oauth_state")
    callback = env.authorize(auth_url)
    first = env.browser.get(str(callback))
    assert first.status_code == 200
    session = first.json()["session_token"]
    # Log out, then replay the same callback with the same (captured) state cookie.
    env.post(f"{PREFIX}/logout")
    env.browser.cookies.clear()
    env.browser.cookies.set("ghapp_oauth_state", sealed or "", path=PREFIX)
    answer = env.browser.get(str(callback))
    assert_refused(env, answer, 400, "state_replayed")
    assert env.oauth.token_grants == 1
    assert env.get("/me", headers={"Authorization": f"Bearer {session}"}).status_code == 401


def test_missing_code(env: OAuthEnv) -> None:
    state, _ = env.start()
    answer = env.callback(state=state)
    assert_refused(env, answer, 400, "missing_code")
    assert answer.json()["detail"] == "Missing authorization code"  # 0.2.7's words


def test_user_denied_on_github(env: OAuthEnv) -> None:
    env.oauth.deny_next = True
    answer = env.login()
    assert_refused(env, answer, 400, "access_denied")
    assert answer.json()["detail"] == "OAuth error: access_denied"


def test_error_parameter_is_not_echoed_raw(env: OAuthEnv) -> None:
    state, _ = env.start()
    answer = env.callback(state=state, error="<script>alert(1)</script>")
    assert_refused(env, answer, 400, "oauth_error")
    assert "script" not in answer.text


def test_github_error_in_a_200_body(env: OAuthEnv) -> None:
    # A code GitHub does not know: the token endpoint answers 200 {"error": ...}.
    state, _ = env.start()
    answer = env.callback(code="0000000000deadbeef00", state=state)
    assert_refused(env, answer, 400, "bad_verification_code")
    exchange = [r for r in env.fake.requests if r.path == "/login/oauth/access_token"]
    assert len(exchange) == 1


def test_wrong_client_secret_is_a_github_error_too(env: OAuthEnv) -> None:
    env.oauth.client_secret = "rotated-on-github"
    answer = env.login()
    assert_refused(env, answer, 400, "incorrect_client_credentials")


def test_code_from_another_login_fails_pkce(env: OAuthEnv) -> None:
    # An intercepted code replayed with a different login's verifier.
    _, stolen_url = env.start()
    stolen = env.authorize(stolen_url)
    state, _ = env.start()  # the victim's own login: a new verifier in the cookie
    answer = env.callback(code=stolen.params["code"], state=state)
    assert_refused(env, answer, 400, "bad_verification_code")


def test_github_token_endpoint_down(env: OAuthEnv) -> None:
    env.fake.fail_next(503, path_prefix="/login/oauth/access_token")
    answer = env.login()
    assert answer.status_code == 502 and answer.json()["error"] == "unreachable"
    assert env.token_rows() == 0


def _session_claims(env: OAuthEnv) -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": str(env.oauth.user.id),
        "login": "octocat",
        "iat": now,
        "exp": now + 3600,
        "jti": "forged-session-id",
        "type": "session",
    }


def test_expired_session_jwt(env: OAuthEnv) -> None:
    claims = _session_claims(env) | {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 60}
    token = jwt.encode(claims, SESSION_SECRET, algorithm="HS256")
    answer = env.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401 and answer.json()["detail"] == "Session expired"


def test_tampered_session_jwt(env: OAuthEnv) -> None:
    token = env.login().json()["session_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["login"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    env.browser.cookies.clear()
    answer = env.get("/me", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"})
    assert answer.status_code == 401 and answer.json()["detail"] == "Invalid session token"


def test_session_signed_with_another_secret(env: OAuthEnv) -> None:
    token = jwt.encode(_session_claims(env), "not-the-secret-but-long-enough-0000", "HS256")
    assert env.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_alg_none_session_jwt(env: OAuthEnv) -> None:
    token = jwt.encode(_session_claims(env), key=None, algorithm="none")  # type: ignore[arg-type]
    answer = env.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401 and answer.json()["detail"] == "Invalid session token"
    env.browser.cookies.set("session_token", token)
    assert env.get(f"{PREFIX}/user").status_code == 401


def test_session_jwt_without_jti_is_refused(env: OAuthEnv) -> None:
    # A 0.2.7-style session (no jti) cannot be revoked, so it is not accepted.
    claims = _session_claims(env)
    del claims["jti"]
    token = jwt.encode(claims, SESSION_SECRET, algorithm="HS256")
    assert env.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


@pytest.mark.parametrize(
    "claim, value",
    [
        ("exp", "far-future-as-string"),
        ("exp", None),  # filled in below: a numeric string an hour ahead
        ("exp", True),
        ("exp", [1]),
        ("iat", None),  # a numeric string
        ("iat", True),
        ("sub", 583231),
        ("login", ["octocat"]),
    ],
    ids=["exp-text", "exp-numeric-text", "exp-bool", "exp-list", "iat-text", "iat-bool",
         "sub-int", "login-list"],
)  # fmt: skip
def test_session_jwt_with_a_mistyped_claim_is_refused(
    env: OAuthEnv, claim: str, value: object
) -> None:
    # Signed with the real secret, so only the claim's type is wrong. pyjwt reads exp with
    # int(), which took "1700000000" as a number: such a token used to be accepted.
    claims = _session_claims(env)
    claims[claim] = str(claims[claim]) if value is None else value
    token = jwt.encode(claims, SESSION_SECRET, algorithm="HS256")
    for path in ("/me", f"{PREFIX}/user"):
        answer = env.get(path, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, (path, answer.text)
        # (exp=true is int 1 to pyjwt: long expired, which it says first)
        assert answer.json()["detail"] in ("Invalid session token", "Session expired")
    env.browser.cookies.set("session_token", token)
    assert env.get("/maybe").json() == {"login": None}


def test_session_jwt_with_numeric_claims_is_accepted(env: OAuthEnv) -> None:
    # The control for the test above: the same forged claims, well typed, pass.
    token = jwt.encode(_session_claims(env), SESSION_SECRET, algorithm="HS256")
    answer = env.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json() == {"login": "octocat"}


def test_revoked_session(env: OAuthEnv) -> None:
    token = env.login().json()["session_token"]
    assert env.post(f"{PREFIX}/logout").status_code == 200
    env.browser.cookies.set("session_token", token)  # a copy kept by an attacker
    for path in ("/me", f"{PREFIX}/user", "/gh/user"):
        answer = env.get(path)
        assert answer.status_code == 401 and answer.json()["detail"] == "Session revoked"
    assert env.get("/maybe").json() == {"login": None}


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/steal",
        "//evil.example/steal",
        "/\\evil.example",
        "https://app.example.com@evil.example/",
        "javascript:alert(1)",
        "relative/path",
    ],
)
def test_redirect_target_outside_the_allow_list(env: OAuthEnv, target: str) -> None:
    answer = env.browser.get(
        f"{env.url}{PREFIX}/login", params={"redirect": "true", "redirect_to": target}
    )
    assert_refused(env, answer, 400, "redirect_not_allowed")
    assert "ghapp_oauth_state" not in env.browser.cookies
    assert not [r for r in env.fake.requests if r.path.startswith("/login/oauth")]
