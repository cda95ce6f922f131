"""Record a delivery's background runs in the store, then publish one message per run.

The order is the point: the store commits first, so a run that was recorded but never
published (the broker was down, the process died between the two steps) is still known, and
the sweeper publishes it later. A message is only ever a copy of what the store holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from celery import Celery

from ..observability import metrics, trace_links, tracing
from ..routing import HandlerSpec
from ..webhooks import Delivery
from .celery_app import queue_of
from .handlers import RECORDED_AT_HEADER, delivery_message

if TYPE_CHECKING:
    from ..store import DeliveryStore, RunPlan, RunRecord

__all__ = ["CeleryScheduler"]

LOG = logging.getLogger("ghapp_celery.tasks")

#: Why a run is published again (the span attribute ghapp.republish.reason): one for all, or
#: one per run (the sweeper's, by the state the run was due in).
Reason = str | Callable[["RunRecord"], str]


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

    def plans(self, specs: Sequence[HandlerSpec]) -> list[RunPlan]:
        from ..store import RunPlan

        return [
            RunPlan(handler=s.task_name, task_name=s.task_name, queue=self.queue(s.task_name))
            for s in specs
        ]

    def publish(
        self,
        runs: Sequence[RunRecord],
        delivery: Delivery,
        producer: Any = None,
        reason: Reason | None = None,
        original: str | None = None,
    ) -> list[str]:
        """Send one message per run; returns the ids sent. Never raises for the broker: the
        callers record what could not be sent for the sweeper. ``producer``: a kombu
        Producer to publish through (its batch, see ``record_and_publish_many``).
        ``reason``: a republish, traced apart and linked to ``original``, the traceparent
        the delivery was first traced with."""
        if not runs:
            return []
        message = delivery_message(delivery)
        # Celery would build these headers by repr()-walking the whole payload on every publish
        # (a quarter of its cost here), and Flower and worker logs would show payload text.
        options: dict[str, Any] = {
            "kwargsrepr": f"{{'delivery': <{delivery.name} {delivery.id}>}}",
        }
        published: list[str] = []
        for run in runs:
            # For the worker's queue-wait metric: a header, not an argument, so the handler's
            # signature and Flower's view of it stay as they are.
            if run.created_at is not None:
                options["headers"] = {RECORDED_AT_HEADER: run.created_at.timestamp()}
            else:
                options.pop("headers", None)
            try:
                if tracing.enabled:
                    origin = None
                    if reason is not None:
                        why = reason if isinstance(reason, str) else reason(run)
                        origin = trace_links.republished(why, original)
                    # The trace context travels in the message headers, and only it.
                    with tracing.publish_span(
                        delivery.id, run.id, run.task_name, run.queue, origin
                    ) as headers:
                        traced = {**options, "headers": {**options.get("headers", {}), **headers}}
                        self._send(run, message, producer, traced)
                else:
                    self._send(run, message, producer, options)
            except Exception:
                LOG.warning(
                    "Could not publish run %s of delivery %s; the sweeper will retry",
                    run.id,
                    delivery.id,
                    exc_info=True,
                )
                break
            published.append(run.id)
            metrics.run_state(run.task_name, run.queue, "queued")
        return published

    def _send(
        self, run: RunRecord, message: dict[str, Any], producer: Any, options: dict[str, Any]
    ) -> None:
        task = self.celery.tasks.get(run.task_name)
        if task is not None:
            # Through the task, so task_always_eager (a user's tests) runs it here.
            task.apply_async(
                args=(run.id,),
                argsrepr=repr((run.id,)),
                kwargs={"delivery": message},
                task_id=run.id,
                queue=run.queue,
                producer=producer,
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
                producer=producer,
                **options,
            )

    def republish(
        self,
        runs: Sequence[RunRecord],
        delivery: Delivery,
        reason: Reason = "replay",
        original: str | None = None,
    ) -> list[str]:
        """Publish runs the store holds as received or expired (sweeper, replay), then mark
        the ones sent QUEUED. ``reason``, ``original``: as in ``publish``."""
        published = self.publish(runs, delivery, reason=reason, original=original)
        if published:
            try:
                self.store.mark_queued(published)
            except Exception:
                # The messages are out; a run left as it was is republished by a later sweep
                # and the duplicate message is skipped by the claim in the worker.
                LOG.warning("Could not mark runs %s queued", published, exc_info=True)
        return published

    def republish_stored(self, runs: Sequence[RunRecord], reason: Reason = "replay") -> list[str]:
        """Publish runs again from what the store holds (sweeper, replay): each delivery's
        payload is read once for all its runs. Returns the ids published."""
        by_delivery: dict[str, list[RunRecord]] = {}
        for run in runs:
            by_delivery.setdefault(run.delivery_id, []).append(run)
        published: list[str] = []
        for delivery_id, group in by_delivery.items():
            record = self.store.get_delivery(delivery_id, with_payload=True)
            if record is not None and record.payload is not None:
                delivery = record.as_delivery()
                published += self.republish(group, delivery, reason, record.trace_parent)
        return published

    def record_and_publish_many(
        self, batch: Sequence[tuple[Delivery, Sequence[HandlerSpec]]]
    ) -> list[tuple[list[RunRecord], list[str]] | Exception]:
        """Record deliveries and their runs in one store transaction (committed first, runs
        already QUEUED), then publish the messages through one producer in one batch (one
        pipelined round trip on Redis); runs that could not be sent go back to RECEIVED for
        the sweeper.

        Each delivery gets its own answer, in order: its runs and the ids published, or the
        exception recording it raised (StoreUnavailable: the intake answers 503). Raises
        StoreUnavailable when the database itself failed.
        """
        plans = [(delivery, self.plans(specs)) for delivery, specs in batch]
        if tracing.enabled:
            # Each new delivery keeps its webhook span's traceparent; a redelivery's span
            # links to the one its first delivery kept.
            originals: dict[str, str] = {}
            with tracing.store_span(len(batch)):
                recorded = self.store.record_many(
                    plans,
                    queued=True,
                    trace_parents=trace_links.batch_traceparents(),
                    originals=originals,
                )
            trace_links.link_redeliveries(originals)
        else:
            recorded = self.store.record_many(plans, queued=True)
        published: dict[int, list[str]] = {}
        try:
            with self.celery.producer_or_acquire() as producer, producer.batch():
                for n, ((delivery, _), runs) in enumerate(zip(batch, recorded, strict=True)):
                    if not isinstance(runs, Exception):
                        published[n] = self.publish(runs, delivery, producer)
        except Exception:
            # The batch could not be flushed: which messages left is unknown, so all count
            # as unsent. The sweeper republishes them; a copy that did arrive is skipped by
            # the worker's claim.
            LOG.warning("Could not publish a batch of %d deliveries", len(batch), exc_info=True)
            published = {}
        answers: list[tuple[list[RunRecord], list[str]] | Exception] = []
        unsent: list[str] = []
        for n, runs in enumerate(recorded):
            if isinstance(runs, Exception):
                answers.append(runs)
                continue
            sent = published.get(n, [])
            sent_ids = set(sent)
            unsent += [run.id for run in runs if run.id not in sent_ids]
            answers.append((runs, sent))
        self._mark_unsent(unsent)
        return answers

    def _mark_unsent(self, unsent: Sequence[str]) -> None:
        if unsent:
            try:
                self.store.mark_unpublished(unsent)
            except Exception:
                # Left QUEUED: the sweeper's queued-too-long case republishes them.
                LOG.warning("Could not mark runs %s unpublished", unsent, exc_info=True)
