"""AppCredentials: a GitHubApp's credentials and token cache, held by the GitHubApp.

The credentials are one ``GitHubAppAuth`` (app JWTs and one installation-token cache shared
by the sync and async paths), built from the app's Settings when first needed: an app that
only answers webhooks inline with no GitHub calls never builds one. What needs the current
delivery (its installation id, its installation token) is here too, so GitHubApp's
fastapi-githubapp 0.2.7 methods are one-line delegations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ghapp_celery._lazy import Lazy
from ghapp_celery.exceptions import GitHubAppError
from ghapp_celery.github.auth import GitHubAppAuth

if TYPE_CHECKING:
    from ghapp_celery.config import Settings

__all__ = ["AppCredentials"]


class AppCredentials:
    """The app's ``GitHubAppAuth``, created on first use from ``settings()`` under ``lock``.

    ``settings`` is a callable because a GitHubApp re-reads its settings in ``init_app``
    (``app.config`` may carry ``load_env`` values): the auth is built from the settings in
    force when it is first used.
    """

    def __init__(
        self,
        settings: Callable[[], Settings],
        lock: threading.RLock,
        current_installation: Callable[[], int | None],
    ) -> None:
        # The current delivery's installation is passed in, not read from ghapp_celery.context:
        # context builds clients from this package (Event.github), so github/ stays below it.
        self._current_installation = current_installation
        self._settings = settings
        self._auth = Lazy(self._create_auth, lock)

    def _create_auth(self) -> GitHubAppAuth:
        s = self._settings()
        return GitHubAppAuth(
            s.id,
            s.private_key_pem(),
            base_url=self.base_url,
            refresh_margin=s.token_refresh_margin,
            rate_limit_retries=s.rate_limit_retries,
            rate_limit_max_sleep=s.rate_limit_max_sleep,
            timeout=s.http_timeout,
        )

    def check(self) -> bool:
        """Whether any credentials are configured (False: neither an id nor a key, which an
        app calling no GitHub API may run without); ConfigurationError when they are but
        cannot sign an app JWT (no id, no key, an unreadable key file, not an RSA PEM key)."""
        s = self._settings()
        if not s.id and s.private_key_pem() is None:
            return False
        self.auth.validate()
        return True

    @property
    def auth(self) -> GitHubAppAuth:
        """JWTs and one installation-token cache for sync and async callers."""
        return self._auth.get()

    @property
    def base_url(self) -> str:
        """The GitHub API URL (``github_app_url``), without a trailing slash."""
        return self._settings().url.rstrip("/")

    def installation_id(self, installation_id: int | None = None) -> int:
        """``installation_id`` if given, else the current delivery's; 400 if neither."""
        if installation_id is not None:
            return installation_id
        current = self._current_installation()
        if current is None:
            raise GitHubAppError(
                "Missing installation id; provide installation_id or call within a webhook "
                "delivery that has one",
                status=400,
            )
        return current

    def installation_token(self) -> str | None:
        """The current delivery's installation token (cached; minted on first use), or None
        outside a delivery or for a delivery without an installation."""
        installation_id = self._current_installation()
        if installation_id is None:
            return None
        auth = self.auth
        cached = auth.cached_token(installation_id)
        return (cached or auth.get_access_token(installation_id)).token

    async def aclose(self) -> None:
        """Close the HTTP sessions and clients of the auth, if it was ever built."""
        auth = self._auth.peek()
        if auth is None:
            return
        from ghapp_celery.github.registry import aclose_sessions

        await aclose_sessions(auth)
        await auth.aclose()
        auth.close()
