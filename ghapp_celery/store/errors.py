"""Errors raised by the delivery store: defined in ``ghapp_celery.exceptions`` with every other
one, and re-exported here, where they were first imported from."""

from __future__ import annotations

from ..exceptions import DeliveryNotFound, StoreError, StoreUnavailable

__all__ = ["DeliveryNotFound", "StoreError", "StoreUnavailable"]
