"""The delivery store: every webhook delivery and every handler run, in SQLite or PostgreSQL.

Only this package imports SQLAlchemy and Alembic; the rest of ghapp_celery uses the names
below. See docs/store.md.
"""

from __future__ import annotations

from ._sql import decode_cursor
from .errors import DeliveryNotFound, StoreUnavailable
from .records import (
    DeliveryRecord,
    DeliveryState,
    Page,
    RunPlan,
    RunRecord,
    RunState,
    delivery_state,
)
from .repository import DEFAULT_URL, DeliveryStore

__all__ = [
    "DEFAULT_URL",
    "DeliveryNotFound",
    "DeliveryRecord",
    "DeliveryState",
    "DeliveryStore",
    "Page",
    "RunPlan",
    "RunRecord",
    "RunState",
    "StoreUnavailable",
    "decode_cursor",
    "delivery_state",
]
