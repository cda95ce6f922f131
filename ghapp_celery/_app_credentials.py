"""GitHubApp's GitHub credentials and clients, with fastapi-githubapp 0.2.7's names."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import compat
from .context import current_delivery
from .exceptions import GitHubAppError
from .github.auth import GitHubAppAuth, InstallationAuthorization
from .github.ratelimit import is_rate_limited, rate_limit_info, retry_delay

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["CredentialsMixin"]


class CredentialsMixin:
    """Mixed into GitHubApp: app JWTs, installation tokens and the compat ghapi clients."""

    _auth: GitHubAppAuth | None
    _lock: threading.Lock

    if TYPE_CHECKING:  # provided by GitHubApp

        @property
        def settings(self) -> Settings: ...

    if TYPE_CHECKING:  # provided by GitHubApp

        @property
        def base_url(self) -> str: ...

    def _installation_id(self, installation_id: int | None) -> int:
        if installation_id is not None:
            return installation_id
        delivery = current_delivery()
        if delivery is None or delivery.installation_id is None:
            raise GitHubAppError(
                "Missing installation id; provide installation_id or call within a webhook "
                "delivery that has one",
                status=400,
            )
        return delivery.installation_id

    # -- GitHub credentials and clients ------------------------------------------------------

    @property
    def auth(self) -> GitHubAppAuth:
        """The app's credentials: JWTs and one installation-token cache for sync and async."""
        if self._auth is None:
            with self._lock:
                if self._auth is None:
                    s = self.settings
                    self._auth = GitHubAppAuth(
                        s.id,
                        s.private_key_pem(),
                        base_url=self.base_url,
                        refresh_margin=s.token_refresh_margin,
                        rate_limit_retries=s.rate_limit_retries,
                        rate_limit_max_sleep=s.rate_limit_max_sleep,
                        timeout=s.http_timeout,
                    )
        return self._auth

    def _create_jwt(self, expiration: int = 60) -> str:
        return self.auth.create_jwt(expiration)

    def get_access_token(
        self, installation_id: int, user_id: int | None = None
    ) -> InstallationAuthorization:
        return self.auth.get_access_token(installation_id, user_id)

    async def aget_access_token(
        self, installation_id: int, user_id: int | None = None
    ) -> InstallationAuthorization:
        return await self.auth.aget_access_token(installation_id, user_id)

    def list_installations(self, per_page: int = 30, page: int = 1) -> list[dict[str, Any]]:
        return self.auth.list_installations(per_page=per_page, page=page)

    async def alist_installations(self, per_page: int = 30, page: int = 1) -> list[dict[str, Any]]:
        return await self.auth.alist_installations(per_page=per_page, page=page)

    @property
    def installation_token(self) -> str | None:
        """The current delivery's installation token (cached; minted on first use)."""
        delivery = current_delivery()
        if delivery is None or delivery.installation_id is None:
            return None
        cached = self.auth.cached_token(delivery.installation_id)
        return (cached or self.get_access_token(delivery.installation_id)).token

    def client(self, installation_id: int | None = None) -> Any:
        """A synchronous ghapi ``GhApi`` acting as the installation, on ``github_app_url``."""
        from ghapi.all import GhApi

        token = self.get_access_token(self._installation_id(installation_id)).token
        api = GhApi(token=token, gh_host=self.base_url, sync=True)  # type: ignore[no-untyped-call]
        if compat.rate_limit_handling_active():
            return compat.RateLimitedGhApi(api, self)
        return api

    def get_client(self, installation_id: int | None = None) -> Any:
        return self.client(installation_id)

    async def aclient(self, installation_id: int | None = None) -> Any:
        """The asynchronous ghapi client (ghapi 2.x's default), for ``async def`` handlers."""
        from ghapi.all import GhApi

        auth = await self.aget_access_token(self._installation_id(installation_id))
        return GhApi(token=auth.token, gh_host=self.base_url)  # type: ignore[no-untyped-call]

    def retry_with_rate_limit(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        s = self.settings
        return compat.retry_with_rate_limit(
            func, *args, retries=s.rate_limit_retries, max_sleep=s.rate_limit_max_sleep, **kwargs
        )

    # 0.2.7's private helpers, kept because tests in the wild call them.
    def _is_rate_limited(self, response: Any) -> bool:
        return is_rate_limited(response.status_code, dict(response.headers))

    def _extract_rate_limit_info(self, response: Any) -> dict[str, Any]:
        return rate_limit_info(dict(response.headers))

    def _calculate_retry_delay(self, response: Any, attempt: int) -> float:
        return retry_delay(dict(response.headers), attempt, time.time())
