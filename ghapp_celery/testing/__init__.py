"""The test kit for GitHub Apps built on ghapp_celery (and for ghapp_celery itself).

- ``FakeGitHub``: a real ASGI app that answers like GitHub's API; serve it on loopback with
  ``with fake.serve() as url:`` and point the app at it (``github_app_url=url``). Its clock is
  real time; pass ``clock=FakeClock(...)`` to move time by hand.
- ``FakeOAuth.install(fake)``: GitHub's OAuth web flow and user endpoints on a FakeGitHub.
- ``serve(asgi_app)``: run any ASGI app (your FastAPI app) under uvicorn on 127.0.0.1.
- ``sign()``, ``webhook_headers()``, ``signed_request()``, ``make_delivery()``: deliveries
  exactly as GitHub sends them; ``make_event()`` an ``Event`` for calling a handler directly.
- The pytest plugin (``ghapp_celery.testing.pytest_plugin``, loaded by the ``pytest11`` entry
  point) builds these into fixtures named ``ghapp_*``.

Everything public is exported here; the submodules whose names start with ``_`` are private.
"""

from __future__ import annotations

from ghapp_celery.testing._events import make_delivery, make_event
from ghapp_celery.testing._github import FakeGitHub
from ghapp_celery.testing._graphql import default_resolver
from ghapp_celery.testing._harness import (
    AppFactory,
    Deliveries,
    PostedDelivery,
    WebhookClient,
    background_worker,
    serve_webhooks,
)
from ghapp_celery.testing._keys import make_private_key, public_key_pem
from ghapp_celery.testing._oauth import ACCESS_TTL, REFRESH_TTL, FakeOAuth, FakeUser
from ghapp_celery.testing._serve import serve
from ghapp_celery.testing._state import FakeRepo, GraphQLResolver
from ghapp_celery.testing._types import (
    AuthKind,
    Clock,
    Credential,
    Endpoint,
    FakeClock,
    Handler,
    IssuedToken,
    RecordedRequest,
    Reply,
)
from ghapp_celery.webhooks import sign, signed_request, webhook_headers

__all__ = [
    "ACCESS_TTL",
    "REFRESH_TTL",
    "AppFactory",
    "AuthKind",
    "Clock",
    "Credential",
    "Deliveries",
    "Endpoint",
    "FakeClock",
    "FakeGitHub",
    "FakeOAuth",
    "FakeRepo",
    "FakeUser",
    "GraphQLResolver",
    "Handler",
    "IssuedToken",
    "PostedDelivery",
    "RecordedRequest",
    "Reply",
    "WebhookClient",
    "background_worker",
    "default_resolver",
    "make_delivery",
    "make_event",
    "make_private_key",
    "public_key_pem",
    "serve",
    "serve_webhooks",
    "sign",
    "signed_request",
    "webhook_headers",
]
