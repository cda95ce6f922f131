"""Per-delivery state: the current delivery lives in a contextvar, never on a shared object.

fastapi-githubapp stored ``payload`` on the GitHubApp instance, so a handler that awaited
something could wake up to another delivery's payload. A ContextVar is private to the request's
task (and copied into the threads that run sync handlers), so each handler sees its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigurationError
from .webhooks import Delivery

if TYPE_CHECKING:
    from .github import AsyncGitHubClient, GitHubClient
    from .github.auth import GitHubAppAuth

__all__ = ["Event", "current_delivery", "delivery_context", "set_current_delivery"]

_current: ContextVar[Delivery | None] = ContextVar("ghapp_celery_delivery", default=None)


def current_delivery() -> Delivery | None:
    """The delivery being handled in this request or task, or None outside one."""
    return _current.get()


def set_current_delivery(delivery: Delivery | None) -> None:
    """Make ``delivery`` current for the rest of this context (a script or a test)."""
    _current.set(delivery)


@contextmanager
def delivery_context(delivery: Delivery | None) -> Iterator[None]:
    """Make ``delivery`` current for the block (nesting restores the outer one)."""
    token = _current.set(delivery)
    try:
        yield
    finally:
        _current.reset(token)


@dataclass(frozen=True)
class Event:
    """What a handler that takes one argument receives: the delivery, readably.

    ``event.event`` is GitHub's event name (``issues``), ``event.name`` adds the action
    (``issues.opened``).
    """

    delivery: Delivery
    auth: GitHubAppAuth | None = field(default=None, repr=False, compare=False)
    #: The store's id of this handler run (also the Celery task id) in a background handler;
    #: None inline. Stable across retries and re-executions: the key for idempotent effects.
    run_id: str | None = None

    @property
    def github(self) -> AsyncGitHubClient:
        """The GitHub client acting as this delivery's installation (the app itself when the
        delivery has none), on the process's shared session: one connection pool, one ETag
        cache and one rate-limit tracker for every handler. Cheap; never close it."""
        from .github import client_for

        return client_for(self._auth(), self.installation_id)

    @property
    def github_sync(self) -> GitHubClient:
        """The blocking twin of ``github``, for plain ``def`` handlers."""
        from .github import sync_client_for

        return sync_client_for(self._auth(), self.installation_id)

    def _auth(self) -> GitHubAppAuth:
        if self.auth is None:
            raise ConfigurationError("This Event was made without the app's GitHub credentials")
        return self.auth

    @property
    def payload(self) -> dict[str, Any]:
        return self.delivery.payload

    @property
    def delivery_id(self) -> str:
        return self.delivery.id

    @property
    def event(self) -> str:
        return self.delivery.event

    @property
    def action(self) -> str | None:
        return self.delivery.action

    @property
    def name(self) -> str:
        return self.delivery.name

    @property
    def installation_id(self) -> int | None:
        return self.delivery.installation_id

    @property
    def repository(self) -> str | None:
        """``owner/name`` of the payload's repository, when it has one."""
        repo = self.payload.get("repository")
        return repo.get("full_name") if isinstance(repo, dict) else None
