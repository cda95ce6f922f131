"""GitHub App authentication: the app JWT and cached installation tokens, sync and async.

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
from ghapp_celery.github._client_transport import shared_ssl_context
from ghapp_celery.github._http import RetryPolicy, github_headers, transport_error
from ghapp_celery.github.tokens import InstallationAuthorization

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = ["MAX_JWT_LIFETIME", "Clock", "GitHubAppAuth", "InstallationAuthorization"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

#: GitHub refuses an app JWT whose ``exp`` lies more than 10 minutes ahead.
MAX_JWT_LIFETIME = 600
#: ``iat`` is set this far in the past against clock drift, as GitHub recommends.
JWT_BACKDATE = 60
_LOCK_POLL = 0.005


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
        sleep: Callable[[float], object] = time.sleep,
        asleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
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
        self._retry = RetryPolicy(rate_limit_retries, rate_limit_max_sleep)
        self._sleep = sleep
        self._asleep = asleep
        self._transport = transport
        self._async_transport = async_transport
        self._lock = threading.Lock()  # guards every dict and client slot below
        self._tokens: dict[int, InstallationAuthorization] = {}
        self._mint_locks: dict[int, threading.RLock] = {}
        self._loop_locks: dict[asyncio.AbstractEventLoop, dict[int, asyncio.Lock]] = {}
        self._client: httpx.Client | None = None
        self._async_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

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
                raise ConfigurationError("GitHub App private key is not configured")
            raw = self._private_key
            data = raw.encode() if isinstance(raw, str) else raw
            try:
                key = load_pem_private_key(data, password=None)
            except (ValueError, TypeError) as exc:
                raise ConfigurationError("GitHub App private key is not a valid PEM key") from exc
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ConfigurationError("GitHub App private key must be an RSA key")
            self._signing_key = key
        return self._signing_key

    def create_jwt(self, expiration: int = 540) -> str:
        """An RS256 app JWT: ``iat`` 60 s back, ``exp`` at most 10 min ahead, ``iss`` a string."""
        if self.app_id is None or str(self.app_id) == "":
            raise ConfigurationError("GitHub App id is not configured")
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

    def _app_headers(self) -> dict[str, str]:
        return github_headers(f"Bearer {self.create_jwt()}", self.user_agent)

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
    def _authorization(response: httpx.Response) -> InstallationAuthorization:
        try:
            data = response.json()
            return InstallationAuthorization(data["token"], data.get("expires_at"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GitHubAppError(
                "GitHub sent an installation token answer that could not be read",
                status=response.status_code,
            ) from exc

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
        response = self._send("POST", self._token_path(installation_id), self._body(user_id))
        return self._authorization(response)

    async def _amint(self, installation_id: int, user_id: int | None) -> InstallationAuthorization:
        path = self._token_path(installation_id)
        return self._authorization(await self._asend("POST", path, self._body(user_id)))

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
            url = _next_link(response)
        return found

    async def aall_installations(self, per_page: int = 100) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        url: str | None = self._installations_query(per_page, 1)
        while url is not None:
            response = await self._asend("GET", url)
            found.extend(_json_list(response))
            url = _next_link(response)
        return found

    def get_app(self) -> dict[str, Any]:
        """``GET /app``: the authenticated app."""
        return _json_object(self._send("GET", "/app"))

    async def aget_app(self) -> dict[str, Any]:
        return _json_object(await self._asend("GET", "/app"))

    # -- HTTP ----------------------------------------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        if not path_or_url.startswith(("http://", "https://")):
            return f"{self.base_url}{path_or_url}"
        if not path_or_url.startswith(f"{self.base_url}/"):
            # A Link pointing elsewhere must not receive the app's JWT.
            raise GitHubAppError("GitHub sent a link outside the configured base URL")
        return path_or_url

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.timeout, transport=self._transport, verify=shared_ssl_context()
                )
            return self._client

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            for other in [lp for lp in self._async_clients if lp.is_closed()]:
                del self._async_clients[other]  # its sockets died with that loop
            client = self._async_clients.get(loop)
            if client is None:
                client = httpx.AsyncClient(
                    timeout=self.timeout,
                    transport=self._async_transport,
                    verify=shared_ssl_context(),
                )
                self._async_clients[loop] = client
            return client

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        client = self._sync_client()
        attempt = 0
        while True:
            try:
                response = client.request(
                    method, self._url(path), headers=self._app_headers(), json=body
                )
            except httpx.HTTPError as exc:
                raise transport_error(exc) from exc
            delay = self._retry.check(response, attempt, self.clock())
            if delay is None:
                return response
            logger.warning("GitHub rate limit on %s %s; retrying in %.1f s", method, path, delay)
            self._sleep(delay)
            attempt += 1

    async def _asend(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        client = self._async_client()
        attempt = 0
        while True:
            try:
                response = await client.request(
                    method, self._url(path), headers=self._app_headers(), json=body
                )
            except httpx.HTTPError as exc:
                raise transport_error(exc) from exc
            delay = self._retry.check(response, attempt, self.clock())
            if delay is None:
                return response
            logger.warning("GitHub rate limit on %s %s; retrying in %.1f s", method, path, delay)
            await self._asleep(delay)
            attempt += 1

    def close(self) -> None:
        """Close the blocking client (a later call opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close this loop's async client and the blocking one."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async_clients.pop(loop, None)
        if client is not None:
            await client.aclose()
        self.close()


def _json_list(response: httpx.Response) -> list[dict[str, Any]]:
    data = _json(response)
    if not isinstance(data, list):
        raise GitHubAppError("GitHub sent a non-list answer", status=response.status_code)
    return data


def _json_object(response: httpx.Response) -> dict[str, Any]:
    data = _json(response)
    if not isinstance(data, dict):
        raise GitHubAppError("GitHub sent a non-object answer", status=response.status_code)
    return data


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        status = response.status_code
        raise GitHubAppError("GitHub sent an answer that is not JSON", status=status) from exc


def _next_link(response: httpx.Response) -> str | None:
    nxt = response.links.get("next")
    return None if nxt is None else nxt.get("url")
