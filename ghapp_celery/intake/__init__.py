"""The web side of a delivery: the webhook route and the status API.

``route`` verifies, parses, records and dispatches a webhook and answers GitHub (DESIGN
section 2); ``batching`` groups the store writes and publishes of concurrent requests;
``status`` is the bearer-token API over the delivery store. Only the names below are public.
"""

from __future__ import annotations

from .route import (
    STATUS_DUPLICATE,
    STATUS_FUNC_CALLED,
    STATUS_NO_FUNC_CALLED,
    STATUS_QUEUED,
    BodyBudget,
    IntakePolicy,
    WebhookIntake,
    webhook_router,
)

__all__ = [
    "STATUS_DUPLICATE",
    "STATUS_FUNC_CALLED",
    "STATUS_NO_FUNC_CALLED",
    "STATUS_QUEUED",
    "BodyBudget",
    "IntakePolicy",
    "WebhookIntake",
    "webhook_router",
]
