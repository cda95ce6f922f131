"""GitHub login for an app's users: the web flow over httpx, session JWTs, stored and
refreshed tokens.

Mounted by ``GitHubApp.init_app`` when OAuth is fully configured; see docs/oauth.md. The names
below load on first use, so an app without OAuth never loads the flow, the store or the routes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import RefreshingUserCredentials
    from .crypto import StateSealer, TokenCipher
    from .flow import GitHubOAuthFlow, GitHubTokens, OAuthFlowError
    from .integration import HoldsOAuth, OAuthIntegration, configure_oauth, manager_of
    from .manager import OAuthManager
    from .sessions import InvalidSession, SessionManager
    from .settings import OAuthConfig, OAuthSettings

__all__ = [
    "GitHubOAuthFlow",
    "GitHubTokens",
    "HoldsOAuth",
    "InvalidSession",
    "OAuthConfig",
    "OAuthFlowError",
    "OAuthIntegration",
    "OAuthManager",
    "OAuthSettings",
    "RefreshingUserCredentials",
    "SessionManager",
    "StateSealer",
    "TokenCipher",
    "configure_oauth",
    "manager_of",
]

_HOMES = {
    "GitHubOAuthFlow": "flow",
    "GitHubTokens": "flow",
    "OAuthFlowError": "flow",
    "InvalidSession": "sessions",
    "SessionManager": "sessions",
    "OAuthConfig": "settings",
    "OAuthSettings": "settings",
    "OAuthManager": "manager",
    "StateSealer": "crypto",
    "TokenCipher": "crypto",
    "RefreshingUserCredentials": "client",
    "HoldsOAuth": "integration",
    "OAuthIntegration": "integration",
    "configure_oauth": "integration",
    "manager_of": "integration",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
