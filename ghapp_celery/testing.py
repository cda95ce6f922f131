"""Helpers for testing GitHub Apps built on ghapp_celery (and ghapp_celery itself).

- ``FakeGitHub``: a real ASGI app that answers like GitHub's API; serve it on loopback with
  ``with fake.serve() as url:`` and point the app at it (``github_app_url=url``).
- ``serve(asgi_app)``: run any ASGI app (your FastAPI app) under uvicorn on 127.0.0.1.
- ``sign()``, ``webhook_headers()``, ``make_delivery()``: deliveries exactly as GitHub sends them.
"""

from __future__ import annotations

from typing import Any

from ._fake_github import FakeClock, FakeGitHub, make_private_key
from ._server import serve
from .webhooks import Delivery, parse_delivery, sign, signed_request, webhook_headers

__all__ = [
    "FakeClock",
    "FakeGitHub",
    "make_delivery",
    "make_private_key",
    "serve",
    "sign",
    "signed_request",
    "webhook_headers",
]


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
