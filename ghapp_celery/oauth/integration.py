"""OAuthIntegration: a GitHubApp's GitHub login, held by the GitHubApp.

It keeps the options fastapi-githubapp 0.2.7 did not have (``configure``, before
``init_app``), the login and logout hooks, and the OAuthManager, built on first use from the
app's settings and those options. GitHubApp's ``oauth``, ``get_current_user``,
``require_user``, ``optional_user``, ``user_github``, ``on_login`` and ``on_logout`` delegate
here; ``init_app`` calls ``mount``.

``configure_oauth(github_app, ...)`` and ``manager_of(github_app)`` are the documented
functions over any object that holds an integration (``HoldsOAuth``), a GitHubApp above all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from fastapi import FastAPI, HTTPException, Request

from .._lazy import Lazy
from .errors import unauthorized
from .hooks import Callback, Hooks
from .settings import OAuthConfig, OAuthSettings, resolve

if TYPE_CHECKING:
    from ..config import Settings
    from ..github.auth import GitHubAppAuth
    from ..github.client import AsyncGitHubClient
    from .manager import OAuthManager

__all__ = ["HoldsOAuth", "OAuthIntegration", "configure_oauth", "manager_of"]

LOG = logging.getLogger("ghapp_celery.oauth")


class OAuthIntegration:
    """The options, hooks and manager of one app's GitHub login.

    ``settings`` and ``auth`` are the app's (callables: the app resolves both lazily). The
    manager is built under ``lock``, the app's one lock for its lazy parts.
    """

    def __init__(
        self,
        settings: Callable[[], Settings],
        auth: Callable[[], GitHubAppAuth],
        lock: threading.RLock,
    ) -> None:
        self._settings = settings
        self._auth = auth
        self.options: OAuthSettings | None = None
        self.clock: Callable[[], float] = time.time
        self.transport: httpx.AsyncBaseTransport | None = None
        self.hooks = Hooks()
        self._manager: Lazy[OAuthManager | None] = Lazy(self._create_manager, lock)

    def configure(
        self,
        options: OAuthSettings | None = None,
        *,
        clock: Callable[[], float] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **fields: Any,
    ) -> OAuthSettings:
        """Set the options beyond 0.2.7's: an OAuthSettings, or its fields as keywords.

        Keywords win over ``GITHUBAPP_OAUTH_*`` in the environment. ``transport`` (an
        ``httpx.MockTransport`` in a test, a proxy) carries every HTTP call of the login and of
        ``user_github``. Call before ``init_app``.
        """
        base = options if options is not None else OAuthSettings()
        configured = base.model_copy(update=fields) if fields else base
        if fields:
            OAuthSettings.model_validate(configured.model_dump())  # reject bad values early
        self.options = configured
        if clock is not None:
            self.clock = clock
        if transport is not None:
            self.transport = transport
        self._manager.reset()  # the next read builds it with these options
        return configured

    @property
    def manager(self) -> OAuthManager | None:
        """The OAuthManager, built on first use; None when OAuth is off or incomplete."""
        return self._manager.get()

    def _create_manager(self) -> OAuthManager | None:
        settings = self._settings()
        result = resolve(settings, self.options)
        if isinstance(result, OAuthConfig):
            from ..store.oauth_repository import OAuthStore
            from .manager import OAuthManager

            store = OAuthStore(settings.store_url())
            return OAuthManager(
                result, store, clock=self.clock, app_auth=self._app_auth, transport=self.transport
            )
        if len(result) in (1, 2):
            LOG.warning("OAuth login is not mounted; missing: %s", ", ".join(result))
        return None

    def _app_auth(self) -> GitHubAppAuth | None:
        """The app's credentials (whose per-loop session user clients share), or None for an
        app configured for login only (no app id or private key)."""
        settings = self._settings()
        if settings.id is None or (
            settings.private_key is None and settings.private_key_path is None
        ):
            return None
        return self._auth()

    def mount(self, app: FastAPI, current_user: Callable[..., Any]) -> None:
        """Add the login routes under the prefix when OAuth is on and fully configured, and
        redact their secrets from uvicorn's access log.

        ``current_user`` is the dependency the routes use: the app's bound
        ``get_current_user``, so that ``app.dependency_overrides`` keyed on it applies.
        """
        manager = self.manager
        if manager is None:
            return
        from ..logging_filters import redact_access_log
        from .routes import build_router

        router = build_router(manager, self.hooks, current_user)
        app.include_router(router, prefix=manager.config.prefix)
        # The callback's URL carries the authorization code and the state; uvicorn's access log
        # would record both (docs/oauth.md, "Access logs").
        redact_access_log()

    def current_user(self, request: Request) -> dict[str, Any]:
        """The live session's claims (Bearer header or cookie), else 401."""
        manager = self.manager
        if manager is None:
            raise unauthorized("OAuth2 not configured")
        return manager.authenticate(request)

    def optional_user(self, request: Request) -> dict[str, Any] | None:
        """The session's claims, or None for a visitor without a (valid, live) session."""
        manager = self.manager
        if manager is None or manager.token_from(request) is None:
            return None
        try:
            return manager.authenticate(request)
        except HTTPException as exc:
            if exc.status_code == 401:
                return None
            raise

    def user_github(self, user: dict[str, Any] | None) -> AsyncGitHubClient:
        """A GitHub client acting as the signed-in ``user`` (tokens refreshed as needed)."""
        manager = self.manager
        if manager is None:
            raise unauthorized("OAuth2 not configured")
        if not user or not isinstance(user.get("jti"), str):
            raise unauthorized("Missing session")
        return manager.user_github(user)

    def on_login(self, func: Callback) -> None:
        self.hooks.login.append(func)

    def on_logout(self, func: Callback) -> None:
        self.hooks.logout.append(func)

    def purge(self) -> int:
        """Delete ended sessions' tokens and expired denylist entries; returns the rows
        deleted (0 when OAuth is off)."""
        manager = self.manager
        return 0 if manager is None else manager.store.purge()


class HoldsOAuth(Protocol):
    """What holds an OAuth integration: a GitHubApp."""

    @property
    def oauth_integration(self) -> OAuthIntegration: ...


def configure_oauth(
    github_app: HoldsOAuth,
    options: OAuthSettings | None = None,
    *,
    clock: Callable[[], float] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **fields: Any,
) -> OAuthSettings:
    """Set ``github_app``'s OAuth options beyond 0.2.7's (see ``OAuthIntegration.configure``)."""
    return github_app.oauth_integration.configure(
        options, clock=clock, transport=transport, **fields
    )


def manager_of(github_app: HoldsOAuth) -> OAuthManager | None:
    """``github_app``'s OAuthManager, built on first use; None when OAuth is off or
    incomplete."""
    return github_app.oauth_integration.manager
