"""What GitHub's token endpoint may answer, and what the flow makes of it.

The flow talks to the token endpoint over httpx itself (ghapp_celery/oauth/flow.py says why),
so its reading of the answers is pinned here, each answer served by an ``httpx.MockTransport``:
GitHub's errors come inside HTTP 200 bodies and mean "rejected" (sign in again); a gateway's
page, a 5xx or no answer at all mean "not reached" (try again later). The PKCE challenge is
checked against RFC 7636's own example.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from ghapp_celery.config import Settings
from ghapp_celery.exceptions import OAuthFlowError
from ghapp_celery.oauth import GitHubOAuthFlow
from ghapp_celery.oauth.flow import s256_challenge
from ghapp_celery.oauth.settings import OAuthConfig, OAuthSettings, resolve


def flow_answering(answer: httpx.Response | Exception) -> GitHubOAuthFlow:
    def github(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    return flow_with(github)


def flow_with(github: Callable[[httpx.Request], httpx.Response]) -> GitHubOAuthFlow:
    config = resolve(
        Settings(
            oauth_client_id="Iv23liCLIENT",
            oauth_client_secret=SecretStr("client-secret"),
            oauth_session_secret=SecretStr("session-secret"),
        ),
        OAuthSettings(),
    )
    assert isinstance(config, OAuthConfig)
    return GitHubOAuthFlow(config, transport=httpx.MockTransport(github))


def test_the_s256_challenge_is_rfc_7636s_example() -> None:
    # RFC 7636, Appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.anyio
async def test_the_code_exchange_sends_githubs_form_and_reads_the_tokens() -> None:
    sent: list[httpx.Request] = []

    def github(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        tokens = {"access_token": "ghu_a", "refresh_token": "ghr_a", "expires_in": "28800"}
        return httpx.Response(200, json={**tokens, "token_type": "bearer"})

    tokens = await flow_with(github).exchange("the-code", code_verifier="v" * 43, redirect_uri=None)
    assert (tokens.access_token, tokens.refresh_token, tokens.expires_in) == (
        "ghu_a",
        "ghr_a",
        28800,
    )
    [request] = sent
    assert str(request.url) == "https://github.com/login/oauth/access_token"
    assert request.headers["accept"] == "application/json"
    assert parse_qs(request.content.decode()) == {
        "client_id": ["Iv23liCLIENT"],
        "client_secret": ["client-secret"],
        "grant_type": ["authorization_code"],
        "code": ["the-code"],
        "code_verifier": ["v" * 43],
    }
    assert "ghu_a" not in repr(tokens)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "error", "rejected"),
    [
        (
            httpx.Response(200, json={"error": "bad_verification_code"}),
            "bad_verification_code",
            True,
        ),
        (httpx.Response(200, json={"error": "<script>alert(1)</script>"}), "oauth_error", True),
        (httpx.Response(200, json={"token_type": "bearer"}), "invalid_token_response", True),
        (httpx.Response(200, text="<html>proxy</html>"), "invalid_token_response", False),
        (httpx.Response(429, text="<html>slow down</html>"), "unreachable", False),
        (httpx.Response(503, json={"message": "unavailable"}), "unreachable", False),
        (httpx.ConnectError("refused"), "unreachable", False),
        (httpx.ReadTimeout("slow"), "unreachable", False),
    ],
)
async def test_each_answer_is_rejected_or_not_reached(
    answer: httpx.Response | Exception, error: str, rejected: bool
) -> None:
    with pytest.raises(OAuthFlowError) as raised:
        await flow_answering(answer).exchange("c", code_verifier="v" * 43, redirect_uri=None)
    assert (raised.value.error, raised.value.rejected) == (error, rejected)


@pytest.mark.anyio
async def test_a_refresh_without_a_new_refresh_token_keeps_the_old_one() -> None:
    flow = flow_answering(httpx.Response(200, json={"access_token": "ghu_b", "expires_in": 60}))
    tokens = await flow.refresh("ghr_old")
    assert (tokens.access_token, tokens.refresh_token) == ("ghu_b", "ghr_old")
