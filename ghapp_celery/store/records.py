"""The store's public value types: plain frozen dataclasses, free of SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
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
# The states in which last_error is the reason for the state itself.
_ERRED = frozenset({RunState.FAILED, RunState.DEAD, RunState.RETRYING})


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

    def lease_expired(self, now: datetime) -> bool:
        """True for a started or retrying run whose worker stopped renewing its lease (it
        died, or lost the store): nothing runs it now, and the sweeper queues it again."""
        return (
            self.state in (RunState.STARTED, RunState.RETRYING)
            and self.lease_expires_at is not None
            and self.lease_expires_at <= now
        )

    def view(self, now: datetime) -> dict[str, Any]:
        """The run as the status API and the CLI show it: the fields, with ``last_error``
        only when it is why the run stands where it does (failed, dead, retrying) and an
        earlier attempt's error as ``earlier_error``, plus ``lease_expired``."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["state"] = self.state.value
        current = self.state in _ERRED
        data["last_error"] = self.last_error if current else None
        data["earlier_error"] = None if current else self.last_error
        data["lease_expired"] = self.lease_expired(now)
        return data


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
    #: The W3C traceparent of the delivery's first webhook span; None unless traced.
    trace_parent: str | None = None

    def view(self, now: datetime) -> dict[str, Any]:
        """The delivery as the status API and the CLI show it: its fields, each run's
        ``RunRecord.view``, and no ``payload`` key unless it was fetched."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["runs"] = [run.view(now) for run in self.runs]
        if self.payload is None:
            del data["payload"]
        return data

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
