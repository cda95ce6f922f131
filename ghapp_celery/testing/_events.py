"""Deliveries and Events built in memory, for calling a handler directly in a unit test."""

from __future__ import annotations

from typing import Any

from ghapp_celery.context import Event
from ghapp_celery.github.auth import GitHubAppAuth
from ghapp_celery.testing._github import FakeGitHub
from ghapp_celery.webhooks import Delivery, parse_delivery

__all__ = ["make_delivery", "make_event"]


def make_delivery(
    event: str,
    payload: dict[str, Any] | None = None,
    *,
    action: str | None = None,
    installation_id: int | None = None,
    delivery_id: str | None = None,
) -> Delivery:
    """A Delivery for unit-testing handlers without HTTP."""
    body: dict[str, Any] = dict(payload or {})
    if action is not None:
        body["action"] = action
    if installation_id is not None:
        body["installation"] = {"id": installation_id}
    headers = {"X-GitHub-Event": event}
    if delivery_id:
        headers["X-GitHub-Delivery"] = delivery_id
    return parse_delivery(headers, body)


def make_event(
    event: str,
    payload: dict[str, Any] | None = None,
    *,
    action: str | None = None,
    installation_id: int | None = None,
    delivery_id: str | None = None,
    github: FakeGitHub | None = None,
    auth: GitHubAppAuth | None = None,
    run_id: str | None = None,
) -> Event:
    """The ``Event`` a handler receives, for calling it directly.

    With ``github=fake`` (a FakeGitHub being served), ``event.github`` and ``event.github_sync``
    call the fake as the delivery's installation: the fake's first installation unless the
    payload or ``installation_id`` names another. ``auth=`` gives the credentials yourself
    instead (a GitHubAppAuth aimed anywhere). With neither, the Event has no credentials and
    ``event.github`` raises ConfigurationError, as for an app without them.
    """
    if github is not None:
        if auth is not None:
            raise ValueError("give make_event github= or auth=, not both")
        if github.base_url is None:
            raise ValueError("serve the FakeGitHub first: with fake.serve(): make_event(...)")
        auth = GitHubAppAuth(
            github.app_id, github.private_key_pem, base_url=github.base_url, clock=github.clock
        )
        named = installation_id is not None or "installation" in (payload or {})
        if not named and github.installation_ids:
            installation_id = github.installation_ids[0]
    delivery = make_delivery(
        event,
        payload,
        action=action,
        installation_id=installation_id,
        delivery_id=delivery_id,
    )
    return Event(delivery, auth=auth, run_id=run_id)
