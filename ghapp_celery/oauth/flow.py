"""GitHub's web application flow over httpx: the authorize URL, the code exchange, refresh.

The flow is written here, over httpx and the standard library, instead of with authlib's
``AsyncOAuth2Client``: authlib's httpx integration sends through ``httpx2`` whenever that is
importable, and ghapi 2.x (a base dependency) always installs it (ghapi -> fasttransport ->
httpx2), so authlib's calls went past httpx, and past a user's respx mock or
``httpx.MockTransport`` with it (issue 12, item 8). What authlib did beyond the HTTP call is a
query string and an RFC 7636 S256 hash, which do not justify a dependency (authlib and joserfc:
4.2 MB installed, about 110 ms to import its httpx client beside FastAPI and httpx, measured on
this 2-core machine).

Requests follow GitHub's documentation: client credentials in the form body, ``Accept:
application/json``, PKCE S256. GitHub answers its errors inside HTTP 200 bodies (``error``);
this module maps every outcome to two kinds of failure: GitHub *rejected* the request (a bad
code, a used refresh token: the user must sign in again) or GitHub could not be *reached* (try
again later).

A fresh httpx client per call (the token endpoint is called once per login or refresh), on the
process's one TLS context; ``transport`` (a test's ``httpx.MockTransport``, a proxy) replaces
the network for every call.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from ..exceptions import OAuthFlowError
from ..github._client_transport import shared_ssl_context
from .errors import safe_code
from .settings import OAuthConfig

__all__ = ["GitHubOAuthFlow", "GitHubTokens", "OAuthFlowError", "s256_challenge"]

_USER_AGENT = "ghapp-celery-oauth"
_JSON = {"Accept": "application/json"}


def s256_challenge(code_verifier: str) -> str:
    """RFC 7636 section 4.2: BASE64URL(SHA256(ASCII(code_verifier))), without padding."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class GitHubTokens:
    access_token: str
    refresh_token: str | None
    expires_in: int | None  # seconds; None for tokens that never expire
    refresh_token_expires_in: int | None

    def __repr__(self) -> str:  # never print a token
        return f"GitHubTokens(expires_in={self.expires_in})"


def _seconds(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _tokens(answer: Any) -> GitHubTokens:
    access = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(access, str) or not access:
        raise OAuthFlowError("invalid_token_response", rejected=True)
    refresh = answer.get("refresh_token")
    return GitHubTokens(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_in=_seconds(answer.get("expires_in")),
        refresh_token_expires_in=_seconds(answer.get("refresh_token_expires_in")),
    )


class GitHubOAuthFlow:
    """Authorize URL, code exchange, refresh and grant revocation for one GitHub App."""

    def __init__(
        self, config: OAuthConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.authorize_url = f"{config.web_url}/login/oauth/authorize"
        self.token_url = f"{config.web_url}/login/oauth/access_token"
        self._timeout = config.options.http_timeout
        self._transport = transport

    def _client(self) -> httpx.AsyncClient:
        # The process's one TLS context: building one (loading the CA bundle) per login costs
        # time and ~1 MB. A transport given to the flow is used as it is.
        return httpx.AsyncClient(
            timeout=self._timeout,
            verify=shared_ssl_context(),
            transport=self._transport,
            headers={"User-Agent": _USER_AGENT},
        )

    @staticmethod
    def new_code_verifier() -> str:
        # 64 characters of [A-Za-z0-9_-] (RFC 7636: 43-128 unreserved characters).
        return secrets.token_urlsafe(48)

    async def authorization_url(
        self,
        *,
        state: str,
        code_verifier: str,
        redirect_uri: str | None,
        scopes: list[str] | None = None,
        allow_signup: bool = True,
    ) -> str:
        """GitHub's authorize URL with the state and the PKCE S256 challenge (no I/O)."""
        scope = " ".join(scopes) if scopes else " ".join(self.config.scopes)
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope or None,
            "state": state,
            "code_challenge": s256_challenge(code_verifier),
            "code_challenge_method": "S256",
            "allow_signup": "true" if allow_signup else "false",
        }
        query = urlencode({name: value for name, value in params.items() if value is not None})
        return f"{self.authorize_url}?{query}"

    async def exchange(
        self, code: str, *, code_verifier: str, redirect_uri: str | None
    ) -> GitHubTokens:
        """Trade the callback's code (and the PKCE verifier) for the user's tokens."""
        form = {"grant_type": "authorization_code", "code": code, "code_verifier": code_verifier}
        if redirect_uri:
            form["redirect_uri"] = redirect_uri
        return _tokens(await self._token_request(form))

    async def refresh(self, refresh_token: str) -> GitHubTokens:
        """New tokens for a refresh token; GitHub invalidates the old pair (GitHub Apps take
        no scope on refresh)."""
        answer = await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )
        # GitHub always sends a new refresh token; should one ever be missing, the old one is
        # the one still to use (RFC 6749 section 6).
        answer.setdefault("refresh_token", refresh_token)
        return _tokens(answer)

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        """POST to the token endpoint; the JSON object of a successful answer."""
        body = {"client_id": self.config.client_id, "client_secret": self.config.client_secret}
        try:
            async with self._client() as client:
                response = await client.post(self.token_url, data={**body, **form}, headers=_JSON)
        except httpx.HTTPError:
            raise OAuthFlowError("unreachable", rejected=False) from None
        if response.status_code >= 500:
            raise OAuthFlowError("unreachable", rejected=False)
        try:
            answer: Any = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):  # a proxy's or gateway's page, not GitHub's JSON
            error = "unreachable" if response.is_error else "invalid_token_response"
            raise OAuthFlowError(error, rejected=False)
        if "error" in answer:  # GitHub's errors come inside HTTP 200 answers
            raise OAuthFlowError(safe_code(str(answer["error"])), rejected=True)
        return answer

    async def revoke_grant(self, access_token: str) -> bool:
        """Revoke the user's whole authorization of the app (REST, basic auth as the app)."""
        c = self.config
        url = f"{c.api_url}/applications/{c.client_id}/grant"
        try:
            async with self._client() as client:
                response = await client.request(
                    "DELETE",
                    url,
                    auth=(c.client_id, c.client_secret),
                    json={"access_token": access_token},
                    headers={
                        "Accept": "application/vnd.github+json",
                        "X-GitHub-Api-Version": "2022-11-28",
                    },
                )
        except httpx.HTTPError:
            return False
        return response.status_code in (204, 404, 422)  # 404/422: already gone
