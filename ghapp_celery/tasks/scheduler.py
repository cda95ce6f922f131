"""Record a delivery's background runs in the store, then publish one message per run.

The order is the point: the store commits first, so a run that was recorded but never
published (the broker was down, the process died between the two steps) is still known, and
the sweeper publishes it later. A message is only ever a copy of what the store holds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery import Celery

from ..routing import HandlerSpec
from ..webhooks import Delivery
from .celery_app import queue_of
from .handlers import delivery_message

if TYPE_CHECKING:
    from ..store import DeliveryStore, RunRecord

__all__ = ["COMPRESS_OVER_BYTES", "CeleryScheduler"]

LOG = logging.getLogger("ghapp_celery.tasks")

#: Messages whose payload is larger than this are zlib-compressed by kombu.
COMPRESS_OVER_BYTES = 64 * 1024


def _json_size(delivery: Delivery) -> int:
    if delivery.payload_json is not None:
        return len(delivery.payload_json)
    return len(json.dumps(delivery.payload))


class CeleryScheduler:
    """Turns a delivery's background handlers into recorded runs and Celery messages."""

    def __init__(self, celery: Celery, store: DeliveryStore) -> None:
        self.celery = celery
        self.store = store
        self._queues: dict[str, str] = {}

    def queue(self, task_name: str) -> str:
        if task_name not in self._queues:
            self._queues[task_name] = queue_of(self.celery, task_name)
        return self._queues[task_name]

    def record(self, delivery: Delivery, specs: Sequence[HandlerSpec]) -> list[RunRecord]:
        """Commit the delivery and its runs; returns the runs that must be published.

        Raises the store's StoreUnavailable when the database cannot commit: the intake then
        answers 503 so GitHub marks the delivery failed and it can be redelivered.
        """
        from ..store import RunPlan

        plans = [
            RunPlan(handler=s.task_name, task_name=s.task_name, queue=self.queue(s.task_name))
            for s in specs
        ]
        return self.store.record(delivery, plans, queued=True)

    def publish(self, runs: Sequence[RunRecord], delivery: Delivery) -> list[str]:
        """Send one message per run; returns the ids sent. Never raises for the broker: the
        callers record what could not be sent for the sweeper."""
        if not runs:
            return []
        message = delivery_message(delivery)
        # Celery would build these headers by repr()-walking the whole payload on every publish
        # (a quarter of its cost here), and Flower and worker logs would show payload text.
        options: dict[str, Any] = {
            "kwargsrepr": f"{{'delivery': <{delivery.name} {delivery.id}>}}",
        }
        if delivery.body_size > COMPRESS_OVER_BYTES or (
            delivery.body_size == 0 and _json_size(delivery) > COMPRESS_OVER_BYTES
        ):
            options["compression"] = "zlib"
        published: list[str] = []
        for run in runs:
            try:
                task = self.celery.tasks.get(run.task_name)
                if task is not None:
                    # Through the task, so task_always_eager (a user's tests) runs it here.
                    task.apply_async(
                        args=(run.id,),
                        argsrepr=repr((run.id,)),
                        kwargs={"delivery": message},
                        task_id=run.id,
                        queue=run.queue,
                        **options,
                    )
                else:  # a process that knows the name only (e.g. a sweeper elsewhere)
                    self.celery.send_task(
                        run.task_name,
                        args=(run.id,),
                        argsrepr=repr((run.id,)),
                        kwargs={"delivery": message},
                        task_id=run.id,
                        queue=run.queue,
                        **options,
                    )
            except Exception:
                LOG.warning(
                    "Could not publish run %s of delivery %s; the sweeper will retry",
                    run.id,
                    delivery.id,
                    exc_info=True,
                )
                break
            published.append(run.id)
        return published

    def republish(self, runs: Sequence[RunRecord], delivery: Delivery) -> list[str]:
        """Publish runs the store holds as received or expired (sweeper, replay), then mark
        the ones sent QUEUED."""
        published = self.publish(runs, delivery)
        if published:
            try:
                self.store.mark_queued(published)
            except Exception:
                # The messages are out; a run left as it was is republished by a later sweep
                # and the duplicate message is skipped by the claim in the worker.
                LOG.warning("Could not mark runs %s queued", published, exc_info=True)
        return published

    def republish_stored(self, runs: Sequence[RunRecord]) -> list[str]:
        """Publish runs again from what the store holds (sweeper, replay): each delivery's
        payload is read once for all its runs. Returns the ids published."""
        by_delivery: dict[str, list[RunRecord]] = {}
        for run in runs:
            by_delivery.setdefault(run.delivery_id, []).append(run)
        published: list[str] = []
        for delivery_id, group in by_delivery.items():
            record = self.store.get_delivery(delivery_id, with_payload=True)
            if record is not None and record.payload is not None:
                published += self.republish(group, record.as_delivery())
        return published

    def record_and_publish(
        self, delivery: Delivery, specs: Sequence[HandlerSpec]
    ) -> tuple[list[RunRecord], list[str]]:
        runs = self.record(delivery, specs)  # committed, already QUEUED
        published = self.publish(runs, delivery)
        unsent = [run.id for run in runs if run.id not in set(published)]
        if unsent:
            try:
                self.store.mark_unpublished(unsent)
            except Exception:
                # Left QUEUED: the sweeper's queued-too-long case republishes them.
                LOG.warning("Could not mark runs %s unpublished", unsent, exc_info=True)
        return runs, published
