"""The store's public value types: plain frozen dataclasses, free of SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..webhooks import Delivery

__all__ = [
    "DeliveryRecord",
    "DeliveryState",
    "Page",
    "RunPlan",
    "RunRecord",
    "RunState",
    "delivery_state",
]


class RunState(StrEnum):
    """Where one handler run of one delivery stands."""

    RECEIVED = "received"  # recorded, not yet handed to the broker
    QUEUED = "queued"  # published to the broker
    STARTED = "started"  # claimed by a worker holding a lease
    RETRYING = "retrying"  # failed, a retry is scheduled
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # not retryable (a 4xx, a bug); replayable
    DEAD = "dead"  # retries exhausted; replayable

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.DEAD})


class DeliveryState(StrEnum):
    """A delivery's state, derived from its runs (see ``delivery_state``)."""

    RECEIVED = "received"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"


def delivery_state(run_states: Iterable[RunState]) -> DeliveryState:
    """The delivery state for a set of run states; the SQL in ``_sql.py`` mirrors this.

    Precedence: running > dead > failed > queued > received > succeeded. A delivery with no
    background run at all has nothing left to do, so it counts as succeeded (and can be purged).
    """
    states = set(run_states)
    if states & {RunState.STARTED, RunState.RETRYING}:
        return DeliveryState.RUNNING
    if RunState.DEAD in states:
        return DeliveryState.DEAD
    if RunState.FAILED in states:
        return DeliveryState.FAILED
    if RunState.QUEUED in states:
        return DeliveryState.QUEUED
    if RunState.RECEIVED in states:
        return DeliveryState.RECEIVED
    return DeliveryState.SUCCEEDED


@dataclass(frozen=True)
class RunPlan:
    """One background handler the intake wants run for a delivery."""

    handler: str
    task_name: str
    queue: str


@dataclass(frozen=True)
class RunRecord:
    """One handler run. ``id`` is also the Celery task id, so a message maps to its row."""

    id: str
    delivery_id: str
    handler: str
    task_name: str
    queue: str
    state: RunState
    attempts: int
    last_error: str | None
    created_at: datetime | None
    published_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    lease_expires_at: datetime | None
    duration_ms: float | None


@dataclass(frozen=True)
class DeliveryRecord:
    """One stored delivery with its runs; ``payload`` is None unless it was asked for."""

    id: str
    event: str
    action: str | None
    installation_id: int | None
    hook_id: int | None
    target_type: str | None
    target_id: int | None
    received_at: datetime
    state: str
    redeliveries: int
    payload: dict[str, Any] | None
    runs: tuple[RunRecord, ...]

    def as_delivery(self) -> Delivery:
        """The delivery as it was received, for publishing its runs again."""
        if self.payload is None:
            raise ValueError("fetch the record with its payload (with_payload=True)")
        return Delivery(
            id=self.id,
            event=self.event,
            payload=self.payload,
            action=self.action,
            installation_id=self.installation_id,
            hook_id=self.hook_id,
            target_type=self.target_type,
            target_id=self.target_id,
            received_at=self.received_at,
        )


@dataclass(frozen=True)
class Page:
    """A page of deliveries, newest first; pass ``next_cursor`` back for the next page."""

    items: list[DeliveryRecord]
    next_cursor: str | None
