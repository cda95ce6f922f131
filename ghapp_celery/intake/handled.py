"""Record the deliveries answered without background runs, after their answer.

A delivery with background runs is committed before its 2xx (batching.py): the answer is the
promise that its runs will happen. A delivery handled inline, or by no handler at all (a
``ping``, an event nobody listens to), promises nothing the store must keep, and 0.2.7 apps
answer them without any store. They are still recorded, so ``deliveries show`` and the status
API know every delivery GitHub sent: queued here when answered, and written by one thread in
batches, off the request path. The cost, measured by ``benchmarks/intake.py`` (inline no-op
handler, see docs/performance.md), is the CPU of the batched insert only: the answer never
waits for the store, and a store outage loses these records (logged), not the deliveries.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ..observability import trace_links, tracing
from ..webhooks import Delivery

__all__ = ["HandledRecorder", "HandledStore"]

LOG = logging.getLogger("ghapp_celery.intake")

#: Deliveries written in one transaction at most.
MAX_BATCH = 256
#: Deliveries waiting for the writer at most; past it, new ones are not recorded (logged).
#: A stalled store must not let a busy intake grow without bound: 10,000 queued deliveries of
#: GitHub's typical 10-20 KB hold 100-200 MB.
MAX_PENDING = 10_000

#: How long the writer gathers deliveries after the first one before it writes them. Nobody
#: waits for these records, and the cost is per transaction: a batch of 1 took 0.36 ms of CPU
#: per delivery, of 10 0.13 ms, of 100 0.09 ms (SQLite, the issues/opened payload).
GATHER_SECONDS = 0.05

_STOP: Any = object()
_PAUSE = threading.Event()  # never set: its wait() is a sleep nobody patches


class HandledStore(Protocol):
    """The store's side (DeliveryStore.record_handled)."""

    def record_handled(
        self,
        items: Sequence[tuple[Delivery, bool]],
        trace_parents: Mapping[str, str] | None = None,
    ) -> None: ...


class HandledRecorder:
    """One writer thread per process (started on first use) fed by a bounded queue."""

    def __init__(self, store: Callable[[], HandledStore]) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        # The last element: the request's traceparent (tracing on), kept with the delivery.
        self._queue: queue.Queue[tuple[Delivery, bool, str | None]] = queue.Queue(MAX_PENDING)
        self._thread: threading.Thread | None = None

    def submit(self, delivery: Delivery, ok: bool) -> None:
        """Queue ``delivery`` (``ok``: no inline handler failed) for recording; never blocks."""
        if self._pid != os.getpid():
            self._reset()  # a forked child: the parent's thread is not here
        if self._thread is None:
            self._start()
        try:
            trace = trace_links.traceparent() if tracing.enabled else None
            self._queue.put_nowait((delivery, ok, trace))
        except queue.Full:
            LOG.warning(
                "Delivery %s (%s) was handled but not recorded: %d deliveries already wait "
                "for the store",
                delivery.id,
                delivery.name,
                MAX_PENDING,
            )

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="ghapp-record-handled", daemon=True
                )
                self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread (app shutdown; waits up to ``timeout``
        seconds). A later delivery starts a new one."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None or self._pid != os.getpid():
                return
            self._queue.put(_STOP)  # after everything queued: the thread writes those first
        thread.join(timeout)

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            # Sleep, then take what came meanwhile: waiting on the queue instead woke this
            # thread (and handed it the GIL) once per delivery. An Event's wait, not
            # time.sleep: a user's test that patches time.sleep must not see this thread.
            _PAUSE.wait(GATHER_SECONDS)
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[tuple[Delivery, bool, str | None]]) -> None:
        items = [(d, ok) for d, ok, _ in batch]
        traces = {d.id: t for d, _, t in batch if t} if tracing.enabled else None
        try:
            self._store().record_handled(items, traces)
        except Exception as exc:
            # The deliveries were answered and handled already; only their record is lost.
            # No traceback: the store's errors say what failed (StoreUnavailable), and one
            # line per batch keeps an outage from flooding the log.
            LOG.warning(
                "Could not record %d handled deliveries (first %s): %s: %s",
                len(batch),
                batch[0][0].id,
                type(exc).__name__,
                exc,
            )
