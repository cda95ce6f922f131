"""GitHub App authentication: the app JWT and cached installation tokens, sync and async.

Every call made here (a token mint, ``GET /app``, ``GET /app/installations``) goes through the
same ``GitHubSession`` and ``Exchange`` as the clients' calls: the session of the running event
loop for a coroutine, the blocking session otherwise (``registry``). So a refused connection is a
``GitHubConnectionError``, a 5xx a ``ServerError``, from the one error tree, and a background
run retries either with Celery's backoff. Nothing here is retried in place: a retry that sleeps
would hold a worker thread. A rate limit is waited out only where 0.2.7 did (up to
``rate_limit_retries`` waits of at most ``rate_limit_max_sleep`` seconds), and never inside a
background run (``no_rate_limit_waits``), where Celery counts down to the reset instead.

One ``GitHubAppAuth`` holds one token cache for both paths. A token is reused until
``refresh_margin`` seconds before it expires and minted once per installation however many threads
or coroutines ask at the same moment: a per-installation ``threading.RLock`` serialises minting
across threads (and across event loops), and a per-installation ``asyncio.Lock`` per loop keeps the
coroutines of one loop from all polling that thread lock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx

from ghapp_celery.exceptions import ConfigurationError, GitHubAppError
from ghapp_celery.github import _app_calls, registry
from ghapp_celery.github._app_calls import RateLimitWaits, no_rate_limit_waits
from ghapp_celery.github._client_core import GitHubResponse
from ghapp_celery.github.tokens import InstallationAuthorization
from ghapp_celery.observability import metrics, tracing

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = [
    "MAX_JWT_LIFETIME",
    "Clock",
    "GitHubAppAuth",
    "InstallationAuthorization",
    "no_rate_limit_waits",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

#: GitHub refuses an app JWT whose ``exp`` lies more than 10 minutes ahead.
MAX_JWT_LIFETIME = 600
#: ``iat`` is set this far in the past against clock drift, as GitHub recommends.
JWT_BACKDATE = 60
_LOCK_POLL = 0.005

NO_ID = "GitHub App id is not configured: set GITHUBAPP_ID (or pass github_app_id=)"
NO_KEY = (
    "GitHub App private key is not configured: set GITHUBAPP_PRIVATE_KEY or "
    "GITHUBAPP_PRIVATE_KEY_PATH (or pass github_app_key=)"
)


def _sleep(seconds: float) -> None:
    # time.sleep is looked up at each wait, not bound at import: a test's patch("time.sleep")
    # then replaces the wait, as it did in fastapi-githubapp 0.2.7.
    time.sleep(seconds)


async def _asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)  # looked up at each wait, as _sleep


class GitHubAppAuth:
    """Mints app JWTs and installation tokens; see the module docstring for the caching rules."""

    def __init__(
        self,
        app_id: int | str | None,
        private_key: str | bytes | None,
        *,
        base_url: str = "https://api.github.com",
        clock: Clock = time.time,
        refresh_margin: float = 300,
        rate_limit_retries: int = 2,
        rate_limit_max_sleep: float = 60,
        timeout: float = 10.0,
        user_agent: str = "ghapp-celery",
        sleep: Callable[[float], object] | None = None,
        asleep: Callable[[float], Awaitable[object]] | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.app_id = app_id
        self._private_key = private_key
        self._signing_key: RSAPrivateKey | None = None
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self.user_agent = user_agent
        self._waits = RateLimitWaits(
            rate_limit_retries, rate_limit_max_sleep, sleep or _sleep, asleep or _asleep
        )
        self._transport = transport
        self._async_transport = async_transport
        self._lock = threading.Lock()  # guards every dict below
        self._tokens: dict[int, InstallationAuthorization] = {}
        self._mint_locks: dict[int, threading.RLock] = {}
        self._loop_locks: dict[asyncio.AbstractEventLoop, dict[int, asyncio.Lock]] = {}

    def __repr__(self) -> str:
        return f"GitHubAppAuth(app_id={self.app_id!r}, base_url={self.base_url!r})"

    # -- the app JWT ---------------------------------------------------------------------------

    def _key(self) -> RSAPrivateKey:
        # cryptography (and PyJWT, below) are imported on first use: together ~8 MB in every
        # process, and a worker that never signs a JWT need not carry them.
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        if self._signing_key is None:
            if not self._private_key:
                raise ConfigurationError(NO_KEY)
            raw = self._private_key
            data = raw.encode() if isinstance(raw, str) else raw
            try:
                key = load_pem_private_key(data, password=None)
            except (ValueError, TypeError) as exc:
                # Never the key's text: only what it should have been.
                raise ConfigurationError(
                    "GitHub App private key is not a valid PEM key: use the .pem file GitHub "
                    "generated, whole (-----BEGIN RSA PRIVATE KEY----- ...)"
                ) from exc
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ConfigurationError("GitHub App private key must be an RSA key")
            self._signing_key = key
        return self._signing_key

    def validate(self) -> None:
        """Raise ConfigurationError unless an app JWT can be signed: an id and an RSA key."""
        if self.app_id is None or str(self.app_id) == "":
            raise ConfigurationError(NO_ID)
        self._key()

    def create_jwt(self, expiration: int = 540) -> str:
        """An RS256 app JWT: ``iat`` 60 s back, ``exp`` at most 10 min ahead, ``iss`` a string."""
        if self.app_id is None or str(self.app_id) == "":
            raise ConfigurationError(NO_ID)
        if expiration <= 0:
            raise ValueError("expiration must be a positive number of seconds")
        now = int(self.clock())
        claims = {
            "iat": now - JWT_BACKDATE,
            "exp": now + min(expiration, MAX_JWT_LIFETIME),
            "iss": str(self.app_id),
        }
        import jwt

        return jwt.encode(claims, self._key(), algorithm="RS256")

    # -- the token cache -----------------------------------------------------------------------

    def _fresh(self, auth: InstallationAuthorization) -> bool:
        return not auth.expires_within(self.refresh_margin, self.clock())

    def cached_token(self, installation_id: int) -> InstallationAuthorization | None:
        """The cached token if it is still fresh, else None. No I/O. (A token GitHub gave no
        ``expires_at`` stays until ``invalidate``.)"""
        with self._lock:
            auth = self._tokens.get(installation_id)
        return auth if auth is not None and self._fresh(auth) else None

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Forget the installation's token (after a 401). With ``token``, only if it is that one,
        so a late 401 for an old token does not throw away a newer one."""
        with self._lock:
            current = self._tokens.get(installation_id)
            if current is not None and (token is None or current.token == token):
                del self._tokens[installation_id]

    def _store(self, installation_id: int, auth: InstallationAuthorization) -> None:
        with self._lock:
            self._tokens[installation_id] = auth

    def _mint_lock(self, installation_id: int) -> threading.RLock:
        with self._lock:
            return self._mint_locks.setdefault(installation_id, threading.RLock())

    def _loop_lock(self, installation_id: int) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._lock:
            for other in [lp for lp in self._loop_locks if lp.is_closed()]:
                del self._loop_locks[other]
            return self._loop_locks.setdefault(loop, {}).setdefault(installation_id, asyncio.Lock())

    # -- installation tokens -------------------------------------------------------------------

    @staticmethod
    def _token_path(installation_id: int) -> str:
        return f"/app/installations/{int(installation_id)}/access_tokens"

    @staticmethod
    def _body(user_id: int | None) -> dict[str, Any] | None:
        return None if user_id is None else {"user_id": user_id}

    @staticmethod
    def _authorization(response: GitHubResponse) -> InstallationAuthorization:
        try:
            data = response.data
            minted = InstallationAuthorization(data["token"], data.get("expires_at"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GitHubAppError(
                "GitHub sent an installation token answer that could not be read",
                status=response.status,
            ) from exc
        metrics.token_minted()
        return minted

    def get_access_token(
        self, installation_id: int, user_id: int | None = None
    ) -> InstallationAuthorization:
        """A fresh installation token, from the cache or minted once for all waiting threads.

        With ``user_id`` (fastapi-githubapp's argument, sent in the request body) the token is
        minted for that call alone: it is neither read from nor stored in the installation's
        cache, so no other caller is handed a token asked for on someone's behalf."""
        if user_id is not None:
            return self._mint(installation_id, user_id)
        cached = self.cached_token(installation_id)
        if cached is not None:
            return cached
        with self._mint_lock(installation_id):
            cached = self.cached_token(installation_id)
            if cached is not None:
                return cached
            auth = self._mint(installation_id, None)
            self._store(installation_id, auth)
            logger.debug("minted a token for installation %s", installation_id)
            return auth

    def _mint(self, installation_id: int, user_id: int | None) -> InstallationAuthorization:
        with tracing.span("github.token_mint", {"github.installation.id": installation_id}):
            response = self._send("POST", self._token_path(installation_id), self._body(user_id))
        return self._authorization(response)

    async def _amint(self, installation_id: int, user_id: int | None) -> InstallationAuthorization:
        path = self._token_path(installation_id)
        with tracing.span("github.token_mint", {"github.installation.id": installation_id}):
            response = await self._asend("POST", path, self._body(user_id))
        return self._authorization(response)

    async def aget_access_token(
        self, installation_id: int, user_id: int | None = None
    ) -> InstallationAuthorization:
        """``get_access_token`` for coroutines; shares the cache and the single-flight."""
        if user_id is not None:
            return await self._amint(installation_id, user_id)
        cached = self.cached_token(installation_id)
        if cached is not None:
            return cached
        async with self._loop_lock(installation_id):
            cached = self.cached_token(installation_id)
            if cached is not None:
                return cached
            mint_lock = self._mint_lock(installation_id)
            # Poll instead of blocking: a blocked loop could not run the thread holding the lock
            # if that were a coroutine of this very loop. The lock is released on this thread.
            while not mint_lock.acquire(blocking=False):
                await asyncio.sleep(_LOCK_POLL)
            try:
                cached = self.cached_token(installation_id)
                if cached is not None:
                    return cached
                auth = await self._amint(installation_id, None)
                self._store(installation_id, auth)
                logger.debug("minted a token for installation %s", installation_id)
                return auth
            finally:
                mint_lock.release()

    # -- app endpoints (JWT) -------------------------------------------------------------------

    @staticmethod
    def _installations_query(per_page: int, page: int) -> str:
        return f"/app/installations?per_page={int(per_page)}&page={int(page)}"

    def list_installations(self, per_page: int = 30, page: int = 1) -> list[dict[str, Any]]:
        """One page of ``GET /app/installations``."""
        response = self._send("GET", self._installations_query(per_page, page))
        return _json_list(response)

    async def alist_installations(self, per_page: int = 30, page: int = 1) -> list[dict[str, Any]]:
        response = await self._asend("GET", self._installations_query(per_page, page))
        return _json_list(response)

    def all_installations(self, per_page: int = 100) -> list[dict[str, Any]]:
        """Every installation, following the ``Link: rel="next"`` URLs GitHub gives."""
        found: list[dict[str, Any]] = []
        url: str | None = self._installations_query(per_page, 1)
        while url is not None:
            response = self._send("GET", url)
            found.extend(_json_list(response))
            url = response.next_url
        return found

    async def aall_installations(self, per_page: int = 100) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        url: str | None = self._installations_query(per_page, 1)
        while url is not None:
            response = await self._asend("GET", url)
            found.extend(_json_list(response))
            url = response.next_url
        return found

    def get_app(self) -> dict[str, Any]:
        """``GET /app``: the authenticated app."""
        return _json_object(self._send("GET", "/app"))

    async def aget_app(self) -> dict[str, Any]:
        return _json_object(await self._asend("GET", "/app"))

    # -- HTTP: the shared sessions (see _app_calls) ---------------------------------------------

    def transports(self) -> dict[str, httpx.BaseTransport | httpx.AsyncBaseTransport | None]:
        """The transports given to the constructor, as ``GitHubSession`` options: the sessions
        this auth's calls (and ``client_for``'s clients) go through are built with them."""
        return {"transport": self._transport, "async_transport": self._async_transport}

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> GitHubResponse:
        return _app_calls.send(self, self._waits, method, path, body)

    async def _asend(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> GitHubResponse:
        return await _app_calls.asend(self, self._waits, method, path, body)

    def _async_client(self) -> httpx.AsyncClient:
        """The running loop's connection pool, the one this auth's coroutine calls use."""
        return registry.session_for(self).ahttp()

    def close(self) -> None:
        """Close the blocking session's connections (a later call opens new ones)."""
        registry.blocking_session_for(self).close()

    async def aclose(self) -> None:
        """Close this loop's session (shared with ``client_for``'s clients) and the blocking one."""
        await registry.aclose_sessions(self)
        self.close()


def _json_list(response: GitHubResponse) -> list[dict[str, Any]]:
    data = response.data
    if not isinstance(data, list):
        raise GitHubAppError(_unexpected("a non-list", data), status=response.status)
    return data


def _json_object(response: GitHubResponse) -> dict[str, Any]:
    data = response.data
    if not isinstance(data, dict):
        raise GitHubAppError(_unexpected("a non-object", data), status=response.status)
    return data


def _unexpected(kind: str, data: object) -> str:
    if data is None or isinstance(data, (str, bytes)):  # not decoded: not a JSON answer
        return "GitHub sent an answer that is not JSON"
    return f"GitHub sent {kind} answer"
