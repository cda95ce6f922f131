"""The sweeper: publish again what the store says must run but no worker is running.

Three cases (``DeliveryStore.due_for_sweep``): runs recorded but never published (the broker
was down at intake), runs queued long ago but never started (the broker lost the message), and
runs started or retrying whose lease expired (the worker was killed). Republishing is safe
because a worker claims a run before running it, so a duplicate message is skipped.

It also deletes consumed messages from the embedded SQLite broker, which kombu never removes.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..observability import metrics
from ..routing import DEFAULT_QUEUE
from .celery_app import is_sqlite_broker, sqlite_broker_path
from .scheduler import CeleryScheduler

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import RunRecord

__all__ = [
    "SWEEP_TASK_NAME",
    "SweepReport",
    "cleanup_sqlite_broker",
    "register_sweep_task",
    "sweep",
]

LOG = logging.getLogger("ghapp_celery.sweeper")

SWEEP_TASK_NAME = "ghapp_celery.sweep"


@dataclass
class SweepReport:
    republished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    broker_rows_deleted: int = 0
    oauth_rows_deleted: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "republished": len(self.republished),
            "failed": len(self.failed),
            "broker_rows_deleted": self.broker_rows_deleted,
            "oauth_rows_deleted": self.oauth_rows_deleted,
        }


#: ghapp_sweeper_republished_total's reason (and the span's ghapp.republish.reason), by the
#: state the run was due in.
_REASONS = {"received": "unpublished", "queued": "not_started"}  # started/retrying: lease


def _reason(run: RunRecord) -> str:
    return _REASONS.get(run.state.value, "lease_expired")


def cleanup_sqlite_broker(url: str) -> int:
    """Delete messages the embedded broker already handed out (kombu marks them invisible)."""
    path = sqlite_broker_path(url)
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=30) as connection:
        try:
            cursor = connection.execute("DELETE FROM kombu_message WHERE visible = 0")
        except sqlite3.OperationalError:  # no table yet: nothing was ever published
            return 0
        return cursor.rowcount


def sweep(scheduler: CeleryScheduler, settings: Settings, *, limit: int = 500) -> SweepReport:
    """Republish due runs (see the module docstring) and clean the embedded broker."""
    report = SweepReport()
    store = scheduler.store
    due = store.due_for_sweep(
        unpublished_after=settings.sweep_unpublished_after,
        queued_after=settings.sweep_queued_after,
        limit=limit,
    )
    published = set(scheduler.republish_stored(due, _reason))
    report.republished = [run.id for run in due if run.id in published]
    if metrics.enabled():
        reasons: dict[str, int] = {}
        for run in due:
            if run.id in published:
                reason = _reason(run)
                reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in reasons.items():
            metrics.sweeper_republished(reason, count)
    report.failed = [run.id for run in due if run.id not in published]
    broker = scheduler.celery.conf.broker_url
    if is_sqlite_broker(broker):
        report.broker_rows_deleted = cleanup_sqlite_broker(str(broker))
    if report.republished or report.failed:
        LOG.warning("Sweep: %s", report.as_dict())
    return report


def register_sweep_task(
    celery: Any, run_sweep: Callable[[], SweepReport], settings: Settings
) -> None:
    """The sweeper as a Celery task, run every ``sweep_interval`` seconds by celery beat."""

    @celery.task(name=SWEEP_TASK_NAME, ignore_result=True, shared=False)  # type: ignore[untyped-decorator]
    def sweep_task() -> dict[str, object]:
        return run_sweep().as_dict()

    schedule = dict(celery.conf.beat_schedule or {})
    schedule.setdefault(
        "ghapp-celery-sweep",
        {
            "task": SWEEP_TASK_NAME,
            "schedule": settings.sweep_interval,
            "options": {"queue": DEFAULT_QUEUE, "expires": settings.sweep_interval},
        },
    )
    celery.conf.beat_schedule = schedule
