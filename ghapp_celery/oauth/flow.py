"""GitHub's web application flow, done by authlib's httpx-based AsyncOAuth2Client.

authlib builds the authorize URL (state, PKCE S256 challenge), exchanges the code (client
credentials in the form body, ``Accept: application/json``) and refreshes; it raises on an
``error`` field, which GitHub sends inside HTTP 200 answers. This module only maps the outcomes
to two kinds of failure: GitHub *rejected* the request (a bad code, a used refresh token: the
user must sign in again) or GitHub could not be *reached* (try again later).

A fresh client per call: the token endpoint is called once per login or refresh, and an
AsyncOAuth2Client keeps the last token on itself, which concurrent requests must not share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token  # type: ignore[import-untyped,unused-ignore]
from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped,unused-ignore]
from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped,unused-ignore]

from ..exceptions import OAuthFlowError
from ..github._client_transport import shared_ssl_context
from .settings import OAuthConfig

__all__ = ["GitHubOAuthFlow", "GitHubTokens", "OAuthFlowError"]

_USER_AGENT = "ghapp-celery-oauth"
_JSON = {"Accept": "application/json", "User-Agent": _USER_AGENT}


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


def _error_code(exc: OAuthError) -> str:
    code = getattr(exc, "error", None)
    # Only a short identifier goes on: it ends up in a JSON answer and in logs.
    if isinstance(code, str) and code.replace("_", "").isalnum() and len(code) <= 64:
        return code
    return "oauth_error"


class GitHubOAuthFlow:
    """Authorize URL, code exchange, refresh and grant revocation for one GitHub App."""

    def __init__(self, config: OAuthConfig) -> None:
        self.config = config
        self.authorize_url = f"{config.web_url}/login/oauth/authorize"
        self.token_url = f"{config.web_url}/login/oauth/access_token"
        self._timeout = config.options.http_timeout

    def _client(self, redirect_uri: str | None = None) -> Any:
        c = self.config
        return AsyncOAuth2Client(
            client_id=c.client_id,
            client_secret=c.client_secret,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 (a method name)
            code_challenge_method="S256",
            scope=" ".join(c.scopes) or None,
            redirect_uri=redirect_uri,
            timeout=self._timeout,
            headers={"User-Agent": _USER_AGENT},
            verify=shared_ssl_context(),  # passed on to httpx: one TLS context per process
        )

    @staticmethod
    def new_code_verifier() -> str:
        return str(generate_token(64))  # RFC 7636: 43-128 characters

    async def authorization_url(
        self,
        *,
        state: str,
        code_verifier: str,
        redirect_uri: str | None,
        scopes: list[str] | None = None,
        allow_signup: bool = True,
    ) -> str:
        extra: dict[str, Any] = {"allow_signup": "true" if allow_signup else "false"}
        if scopes:
            extra["scope"] = " ".join(scopes)
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                self.authorize_url, state=state, code_verifier=code_verifier, **extra
            )
        return str(url)

    async def exchange(
        self, code: str, *, code_verifier: str, redirect_uri: str | None
    ) -> GitHubTokens:
        """Trade the callback's code (and the PKCE verifier) for the user's tokens."""
        async with self._client(redirect_uri) as client:
            answer = await self._call(
                client.fetch_token(
                    self.token_url,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                    headers=dict(_JSON),
                )
            )
        return _tokens(answer)

    async def refresh(self, refresh_token: str) -> GitHubTokens:
        """New tokens for a refresh token; GitHub invalidates the old pair."""
        async with self._client() as client:
            client.scope = None  # GitHub Apps take no scope on refresh
            answer = await self._call(
                client.refresh_token(
                    self.token_url, refresh_token=refresh_token, headers=dict(_JSON)
                )
            )
        return _tokens(answer)

    @staticmethod
    async def _call(pending: Any) -> Any:
        try:
            return await pending
        except OAuthError as exc:
            raise OAuthFlowError(_error_code(exc), rejected=True) from None
        except ValueError:  # an answer that is not a JSON object (a proxy's error page)
            raise OAuthFlowError("invalid_token_response", rejected=False) from None
        except Exception as exc:  # httpx2 transport and HTTP status errors
            if type(exc).__module__.split(".")[0] in ("httpx2", "httpx", "anyio"):
                raise OAuthFlowError("unreachable", rejected=False) from None
            raise

    async def revoke_grant(self, access_token: str) -> bool:
        """Revoke the user's whole authorization of the app (REST, basic auth as the app)."""
        c = self.config
        url = f"{c.api_url}/applications/{c.client_id}/grant"
        try:
            # The process's one TLS context: building one (loading the CA bundle) per login
            # costs time and ~1 MB.
            async with httpx.AsyncClient(
                timeout=self._timeout, verify=shared_ssl_context()
            ) as client:
                response = await client.request(
                    "DELETE",
                    url,
                    auth=(c.client_id, c.client_secret),
                    json={"access_token": access_token},
                    headers={
                        "Accept": "application/vnd.github+json",
                        "X-GitHub-Api-Version": "2022-11-28",
                        "User-Agent": _USER_AGENT,
                    },
                )
        except httpx.HTTPError:
            return False
        return response.status_code in (204, 404, 422)  # 404/422: already gone
