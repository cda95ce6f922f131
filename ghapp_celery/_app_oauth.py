"""GitHubApp's OAuth side: user sessions and login hooks (docs/oauth.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, Request

if TYPE_CHECKING:
    from .github import AsyncGitHubClient

__all__ = ["OAuthMixin"]

F = TypeVar("F", bound=Callable[..., Any])


class OAuthMixin:
    """Mixed into GitHubApp; everything delegates to ghapp_celery.oauth, imported lazily."""

    @property
    def oauth(self) -> Any:
        """The OAuth manager (0.2.7's ``github_app.oauth``); None when OAuth is off."""
        from .oauth.integration import manager_of

        return manager_of(self)

    def get_current_user(self, request: Request) -> dict[str, Any]:
        """FastAPI dependency: the live session's claims (Bearer header or cookie), else 401."""
        from .oauth.integration import current_user

        return current_user(self, request)

    def require_user(self, request: Request) -> dict[str, Any]:
        """``Depends(github_app.require_user)``: the same as get_current_user."""
        return self.get_current_user(request)

    def optional_user(self, request: Request) -> dict[str, Any] | None:
        """``Depends(github_app.optional_user)``: the session's claims, or None for a visitor."""
        from .oauth.integration import optional_user

        return optional_user(self, request)

    def user_github(self, user: dict[str, Any] | None) -> AsyncGitHubClient:
        """A GitHub client acting as the signed-in ``user`` (tokens refreshed as needed)."""
        from .oauth.integration import user_github

        return user_github(self, user)

    def on_login(self, func: F) -> F:
        """Call ``func(user, request)`` (sync or async) after each login; may raise to refuse."""
        from .oauth.integration import register_login

        register_login(self, func)
        return func

    def on_logout(self, func: F) -> F:
        """Call ``func(claims, request)`` (sync or async) after each logout."""
        from .oauth.integration import register_logout

        register_logout(self, func)
        return func

    def _mount_oauth(self, app: FastAPI) -> None:
        from .oauth.integration import mount

        mount(self, app)
