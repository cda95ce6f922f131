"""What GitHubApp's OAuth methods delegate to; the state lives on the GitHubApp instance.

``configure_oauth(github_app, ...)`` sets the options fastapi-githubapp 0.2.7 did not have
(before ``init_app``); ``mount(github_app, app)`` adds the routes when OAuth is fully
configured; the other functions back ``get_current_user``, ``require_user``,
``optional_user``, ``user_github``, ``on_login`` and ``on_logout``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request

from .errors import unauthorized
from .hooks import Callback, Hooks
from .settings import OAuthConfig, OAuthSettings, resolve

if TYPE_CHECKING:
    from ..github.auth import GitHubAppAuth
    from ..github.client import AsyncGitHubClient
    from .manager import OAuthManager

__all__ = [
    "configure_oauth",
    "current_user",
    "manager_of",
    "mount",
    "optional_user",
    "register_login",
    "register_logout",
    "user_github",
]

LOG = logging.getLogger("ghapp_celery.oauth")
_ATTR = "_ghapp_oauth_state"


class _State:
    def __init__(self) -> None:
        self.options: OAuthSettings | None = None
        self.clock: Callable[[], float] = time.time
        self.hooks = Hooks()
        self.manager: OAuthManager | None = None
        self.resolved = False


def _state(github_app: Any) -> _State:
    state = github_app.__dict__.get(_ATTR)
    if state is None:
        state = github_app.__dict__[_ATTR] = _State()
    return state  # type: ignore[no-any-return]


def configure_oauth(
    github_app: Any,
    options: OAuthSettings | None = None,
    *,
    clock: Callable[[], float] | None = None,
    **fields: Any,
) -> OAuthSettings:
    """Set the OAuth options beyond 0.2.7's: an OAuthSettings, or its fields as keywords.

    Keywords win over ``GITHUBAPP_OAUTH_*`` in the environment. Call before ``init_app``.
    """
    state = _state(github_app)
    base = options if options is not None else OAuthSettings()
    state.options = base.model_copy(update=fields) if fields else base
    if fields:
        OAuthSettings.model_validate(state.options.model_dump())  # reject bad values early
    if clock is not None:
        state.clock = clock
    state.manager, state.resolved = None, False
    return state.options


def manager_of(github_app: Any) -> OAuthManager | None:
    """The app's OAuthManager, built on first use; None when OAuth is off or incomplete."""
    state = _state(github_app)
    if state.resolved:
        return state.manager
    result = resolve(github_app.settings, state.options)
    if isinstance(result, OAuthConfig):
        from ..store.oauth_repository import OAuthStore
        from .manager import OAuthManager

        store = OAuthStore(github_app.settings.store_url())
        state.manager = OAuthManager(
            result, store, clock=state.clock, app_auth=lambda: _app_auth(github_app)
        )
    elif len(result) in (1, 2):
        LOG.warning("OAuth login is not mounted; missing: %s", ", ".join(result))
    state.resolved = True
    return state.manager


def _app_auth(github_app: Any) -> GitHubAppAuth | None:
    """The app's credentials (whose per-loop session user clients share), or None for an
    app configured for login only (no app id or private key)."""
    settings = github_app.settings
    if settings.id is None or (settings.private_key is None and settings.private_key_path is None):
        return None
    auth: GitHubAppAuth = github_app.auth
    return auth


def mount(github_app: Any, app: FastAPI) -> None:
    """Add the login routes under the prefix when OAuth is on and fully configured, and
    redact their secrets from uvicorn's access log."""
    manager = manager_of(github_app)
    if manager is None:
        return
    from ..logging_filters import redact_access_log
    from .routes import build_router

    router = build_router(manager, _state(github_app).hooks, github_app.get_current_user)
    app.include_router(router, prefix=manager.config.prefix)
    # The callback's URL carries the authorization code and the state; uvicorn's access log
    # would record both (docs/oauth.md, "Access logs").
    redact_access_log()


def current_user(github_app: Any, request: Request) -> dict[str, Any]:
    manager = manager_of(github_app)
    if manager is None:
        raise unauthorized("OAuth2 not configured")
    return manager.authenticate(request)


def optional_user(github_app: Any, request: Request) -> dict[str, Any] | None:
    """The session's claims, or None for a visitor without a (valid, live) session."""
    manager = manager_of(github_app)
    if manager is None or manager.token_from(request) is None:
        return None
    try:
        return manager.authenticate(request)
    except HTTPException as exc:
        if exc.status_code == 401:
            return None
        raise


def user_github(github_app: Any, user: dict[str, Any] | None) -> AsyncGitHubClient:
    manager = manager_of(github_app)
    if manager is None:
        raise unauthorized("OAuth2 not configured")
    if not user or not isinstance(user.get("jti"), str):
        raise unauthorized("Missing session")
    return manager.user_github(user)


def register_login(github_app: Any, func: Callback) -> None:
    _state(github_app).hooks.login.append(func)


def register_logout(github_app: Any, func: Callback) -> None:
    _state(github_app).hooks.logout.append(func)
