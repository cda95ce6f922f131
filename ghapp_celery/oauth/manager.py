"""OAuthManager: sessions, stored GitHub tokens and their refresh, for one GitHubApp.

The routes (``routes.py``) and the FastAPI dependencies call into it. Store calls are blocking
and short; async code runs them in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import HTTPException, Request

from ..github._client_core import api_urls
from ..github.auth import GitHubAppAuth
from ..github.client import AsyncGitHubClient, GitHubSession
from ..github.registry import session_for
from ..store.errors import StoreUnavailable
from ..store.oauth_repository import OAuthStore, StoredTokens
from .client import RefreshingUserCredentials
from .crypto import StateSealer, TokenCipher
from .errors import LoginError, unauthorized
from .flow import GitHubOAuthFlow, GitHubTokens, OAuthFlowError
from .sessions import InvalidSession, SessionManager
from .settings import OAuthConfig

__all__ = ["STATE_COOKIE", "OAuthManager"]

LOG = logging.getLogger("ghapp_celery.oauth")
STATE_COOKIE = "ghapp_oauth_state"


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def state_key(state: str) -> str:
    """The denylist key of a login state: a hash, so the table never holds a live state."""
    return "state:" + hashlib.sha256(state.encode()).hexdigest()[:48]


class OAuthManager:
    """Everything the login flow keeps: see docs/oauth.md for the choices made here."""

    def __init__(
        self,
        config: OAuthConfig,
        store: OAuthStore,
        *,
        clock: Callable[[], float] = time.time,
        app_auth: Callable[[], GitHubAppAuth | None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = config.options
        self.config = config
        self.store = store
        self.clock = clock
        self.transport = transport
        self.flow = GitHubOAuthFlow(config, transport=transport)
        self.sessions = SessionManager(config.session_secret, lifetime=options.session_lifetime)
        self.cipher = TokenCipher(config.token_secret)
        self.sealer = StateSealer(config.session_secret, options.state_ttl)
        self.cookie_name = options.cookie_name
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}
        self._app_auth = app_auth
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GitHubSession] = (
            weakref.WeakKeyDictionary()
        )

    # -- redirect targets -------------------------------------------------------------------

    def redirect_allowed(self, target: str) -> bool:
        """A path on this app, or a URL whose origin is on the allow-list; nothing else."""
        if not target or any(ch in target for ch in "\\\r\n\t") or not target.isprintable():
            return False
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            # "/x" but not "//evil.example" (scheme-relative) and not "x" (ambiguous).
            return target.startswith("/") and not target.startswith("//")
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.username:
            return False
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        allowed = {o.rstrip("/").lower() for o in self.config.options.redirect_allowlist}
        return origin in allowed

    # -- sessions ---------------------------------------------------------------------------

    def token_from(self, request: Request) -> str | None:
        """The session JWT: ``Authorization: Bearer`` first (as 0.2.7), then the cookie."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return request.cookies.get(self.cookie_name) or None

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a live session; HTTP 401 for anything else (503: store down)."""
        try:
            claims = self.sessions.verify_session_token(token)
        except InvalidSession as exc:
            raise unauthorized(str(exc)) from None
        try:
            denied = self.store.is_denied(claims["jti"])
        except StoreUnavailable:
            raise HTTPException(status_code=503, detail="Session store unavailable") from None
        if denied:
            raise unauthorized("Session revoked")
        return claims

    def authenticate(self, request: Request) -> dict[str, Any]:
        token = self.token_from(request)
        if not token:
            raise unauthorized("Missing session token")
        return self.verify(token)

    def _end_session(self, claims: dict[str, Any]) -> None:
        """Deny the session's jti until its JWT expires, and forget its tokens."""
        expires = _at(max(float(claims.get("exp", 0)), time.time()) + 60)
        self.store.deny(claims["jti"], "session", expires)
        self.store.delete_tokens(claims["jti"])

    # -- login ------------------------------------------------------------------------------

    def consume_state(self, state: str) -> bool:
        """Mark a login state used; False when it already was (a replay)."""
        expires = _at(time.time() + self.config.options.state_ttl + 60)
        return self.store.deny(state_key(state), "state", expires)

    async def exchange(self, code: str, verifier: str, redirect_uri: str | None) -> GitHubTokens:
        try:
            return await self.flow.exchange(code, code_verifier=verifier, redirect_uri=redirect_uri)
        except OAuthFlowError as exc:
            LOG.warning("GitHub refused the OAuth code exchange (%s)", exc.error)
            if exc.rejected:
                raise LoginError(400, exc.error, "GitHub refused the authorization code") from None
            raise LoginError(502, exc.error, "GitHub could not be reached") from None

    async def fetch_user(self, access_token: str) -> dict[str, Any]:
        """The GitHub profile, with the emails when the app may read them (0.2.7's shape)."""

        async with AsyncGitHubClient(token=access_token, session=self.session()) as gh:
            try:
                user = (await gh.get("/user", cache=False)).data
            except Exception as exc:
                LOG.warning("Fetching the signed-in user failed (%s)", type(exc).__name__)
                raise LoginError(
                    502, "user_fetch_failed", "Could not read the GitHub user"
                ) from None
            if not isinstance(user, dict) or not isinstance(user.get("id"), int):
                raise LoginError(502, "user_fetch_failed", "Could not read the GitHub user")
            try:
                emails = (await gh.get("/user/emails", cache=False)).data
            except Exception:  # no email permission: the profile alone is enough
                emails = []
        return {
            "id": user.get("id"),
            "login": user.get("login"),
            "name": user.get("name"),
            "email": user.get("email"),
            "avatar_url": user.get("avatar_url"),
            "emails": emails if isinstance(emails, list) else [],
        }

    def start_session(
        self, user: dict[str, Any], tokens: GitHubTokens
    ) -> tuple[str, dict[str, Any]]:
        """Issue the session JWT and store the session's GitHub tokens (encrypted)."""
        jwt_token, claims = self.sessions.issue(user)
        now = self.clock()
        self.store.save_tokens(
            session_id=claims["jti"],
            user_id=int(user["id"]),
            login=str(user.get("login") or ""),
            session_expires_at=_at(claims["exp"]),
            **self._token_fields(tokens, now),
        )
        return jwt_token, claims

    def _token_fields(self, tokens: GitHubTokens, now: float) -> dict[str, Any]:
        refresh = tokens.refresh_token
        return {
            "access_token": self.cipher.encrypt(tokens.access_token),
            "refresh_token": None if refresh is None else self.cipher.encrypt(refresh),
            "access_expires_at": None
            if tokens.expires_in is None
            else _at(now + tokens.expires_in),
            "refresh_expires_at": None
            if tokens.refresh_token_expires_in is None
            else _at(now + tokens.refresh_token_expires_in),
        }

    def abandon(self, claims: dict[str, Any]) -> None:
        """Undo start_session (a login hook refused the user); never raises."""
        try:
            self._end_session(claims)
        except StoreUnavailable:
            LOG.error("Could not revoke an abandoned session: the store is unavailable")

    # -- logout -----------------------------------------------------------------------------

    async def logout(self, claims: dict[str, Any], *, revoke_grant: bool) -> bool:
        """End the session; with ``revoke_grant`` also revoke the user's grant on GitHub."""
        revoked = False
        if revoke_grant:
            try:
                token = await self.access_token(claims)
            except HTTPException:
                token = None
            if token is not None:
                revoked = await self.flow.revoke_grant(token)
                if revoked:
                    # The grant held every session's tokens of this user: all are dead now.
                    await asyncio.to_thread(self.store.delete_user_tokens, int(claims["sub"]))
        await asyncio.to_thread(self._end_session, claims)
        return revoked

    # -- the user's GitHub token --------------------------------------------------------------

    def _fresh(self, row: StoredTokens) -> bool:
        if row.access_expires_at is None:
            return True  # the app opted out of expiring user tokens
        margin = self.config.options.refresh_margin
        return _at(self.clock() + margin) < row.access_expires_at

    async def _read(self, session_id: str) -> StoredTokens | None:
        try:
            return await asyncio.to_thread(self.store.get_tokens, session_id)
        except StoreUnavailable:
            raise HTTPException(status_code=503, detail="Session store unavailable") from None

    def _plain(self, blob: bytes, claims: dict[str, Any]) -> str:
        token = self.cipher.decrypt(blob)
        if token is None:  # the encryption key changed: the stored tokens are unreadable
            self.abandon(claims)
            raise unauthorized("Session expired; sign in again")
        return token

    def _usable(self, row: StoredTokens, claims: dict[str, Any], refused: str | None) -> str | None:
        """The stored token when it is fresh and not the one GitHub just refused."""
        if not self._fresh(row):
            return None
        token = self._plain(row.access_token, claims)
        return None if refused is not None and token == refused else token

    async def access_token(self, claims: dict[str, Any], *, refused: str | None = None) -> str:
        """The session's GitHub token, refreshed first when it is (nearly) expired, or when
        it is ``refused`` (GitHub answered 401 to it) and still the stored one.

        When GitHub rejects the refresh token, the session is dropped (HTTP 401); when GitHub
        cannot be reached, the session stays and the answer is HTTP 503.
        """
        session_id = claims["jti"]
        row = await self._read(session_id)
        if row is None:
            raise unauthorized("No GitHub authorization for this session; sign in again")
        token = self._usable(row, claims, refused)
        if token is not None:
            return token
        key = (id(asyncio.get_running_loop()), session_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                return await self._refresh(claims, session_id, refused)
        finally:
            if not lock.locked():
                self._locks.pop(key, None)

    async def _refresh(self, claims: dict[str, Any], session_id: str, refused: str | None) -> str:
        row = await self._read(session_id)  # another request may have refreshed meanwhile
        if row is None:
            raise unauthorized("No GitHub authorization for this session; sign in again")
        token = self._usable(row, claims, refused)
        if token is not None:
            return token
        now = self.clock()
        expired = row.refresh_expires_at is not None and row.refresh_expires_at <= _at(now)
        if row.refresh_token is None or expired:
            await asyncio.to_thread(self.abandon, claims)
            raise unauthorized("Session expired; sign in again")
        refresh_token = self._plain(row.refresh_token, claims)
        try:
            tokens = await self.flow.refresh(refresh_token)
        except OAuthFlowError as exc:
            if not exc.rejected:
                raise HTTPException(status_code=503, detail="GitHub could not be reached") from None
            latest = await self._read(session_id)
            if latest is not None and latest.version != row.version and self._fresh(latest):
                return self._plain(latest.access_token, claims)  # another process won the race
            LOG.info("GitHub rejected a refresh token (%s); session dropped", exc.error)
            await asyncio.to_thread(self.abandon, claims)
            raise unauthorized("Session expired; sign in again") from None
        fields = self._token_fields(tokens, now)
        stored = await asyncio.to_thread(
            lambda: self.store.replace_tokens(session_id, expected_version=row.version, **fields)
        )
        if not stored:
            LOG.warning("A user token was refreshed twice at once; keeping the first")
            latest = await self._read(session_id)
            if latest is None:
                raise unauthorized("Session expired; sign in again")
            return self._plain(latest.access_token, claims)
        return tokens.access_token

    # -- GitHub as the user -------------------------------------------------------------------

    def session(self) -> GitHubSession:
        """The GitHubSession for calls as users, on the running loop.

        The app's own shared session (``registry.session_for``: one pool, ETag cache and
        rate-limit tracker per loop) when its API is the one the OAuth settings name; otherwise
        (another ``GITHUBAPP_OAUTH_API_URL``, or an OAuth-only app without app credentials) one
        session per loop on that API, kept here. A ``transport`` given to the manager (a test's
        ``httpx.MockTransport``) carries these calls too, so they always get their own session.
        """
        auth = self._app_auth() if self._app_auth is not None else None
        rest_url = api_urls(self.config.api_url)[0]
        if auth is not None and self.transport is None:
            shared = session_for(auth)
            if shared.rest_url == rest_url:
                return shared
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None:
            session = self._sessions[loop] = GitHubSession(
                self.config.api_url,
                timeout=self.config.options.http_timeout,
                user_agent="ghapp-celery-oauth",
                async_transport=self.transport,
            )
        return session

    async def aclose(self) -> None:
        """Close the session this manager made for the running loop (never the app's)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.aclose()

    def user_github(self, claims: dict[str, Any]) -> AsyncGitHubClient:
        """An AsyncGitHubClient acting as the session's user (``user:<id>``), on the shared
        session of the running loop. Cheap: call it per request; closing it closes nothing."""

        async def token(refused: str | None) -> str:
            return await self.access_token(claims, refused=refused)

        client = AsyncGitHubClient(token="unused", session=self.session())  # noqa: S106
        client.credentials = RefreshingUserCredentials(token, identity=f"user:{claims['sub']}")
        return client
