"""DeliveryStore: every delivery and every handler run, in SQLite or PostgreSQL.

The store is the source of truth for what must run; the broker only carries it. Each method
is one short transaction, committed before it returns, and every database failure surfaces as
StoreUnavailable. The statements live in ``_runs`` (writes) and ``_reads`` (reads).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete

from ..webhooks import Delivery
from . import _reads, _runs, _sql
from ._database import Database
from .engine import is_outage
from .models import deliveries
from .records import DeliveryRecord, DeliveryState, Page, RunPlan, RunRecord, RunState

__all__ = ["DEFAULT_URL", "DeliveryStore"]

DEFAULT_URL = "sqlite:///.ghapp/store.sqlite"
# The lease a retry extends by when the claim recorded none.
DEFAULT_LEASE_SECONDS = 600.0
# Tracebacks can be huge; the row keeps the end, where the exception is.
MAX_ERROR_CHARS = 8_000


def _utc(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("the store only accepts timezone-aware datetimes")
    return when.astimezone(UTC)


def _given(when: datetime | None) -> datetime | None:
    """A time the caller chose (tests), in UTC; None lets the write read the clock once it
    holds its locks (``_runs.write_time``), so a write that waited is not stamped early."""
    return None if when is None else _utc(when)


def _error_text(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else "…" + error[-MAX_ERROR_CHARS:]


def _delivery_row(
    delivery: Delivery, state: DeliveryState, trace_parents: Mapping[str, str] | None = None
) -> dict[str, Any]:
    row = {
        **delivery.header_fields(),
        "received_at": delivery.received_at,
        "state": state.value,
        "redeliveries": 0,
        # Compressed once per delivery: the task message carries the same bytes.
        "payload": delivery.payload_zlib,
    }
    if trace_parents is not None:  # tracing on; else the column is left out (NULL)
        row["trace_parent"] = trace_parents.get(delivery.id)
    return row


class DeliveryStore(Database):
    """Records deliveries and handler runs; see docs/store.md for states and the sweeper.

    Thread-safe and fork-aware: one instance may be shared by a process's threads, and a
    forked child (a Celery prefork worker) opens its own connections on first use.
    """

    def __init__(self, url: str = DEFAULT_URL, **options: Any) -> None:
        super().__init__(url, **options)  # the default URL: the embedded SQLite store

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> DeliveryStore:
        return cls(url, **kwargs)

    # -- the intake ---------------------------------------------------------------------------

    def record(
        self,
        delivery: Delivery,
        plans: Sequence[RunPlan],
        *,
        now: datetime | None = None,
        queued: bool = False,
    ) -> list[RunRecord]:
        """Record a delivery and its planned runs; return the runs the caller must publish.

        A redelivery (same X-GitHub-Delivery) counts up ``redeliveries``; of its runs, new
        ones and FAILED/DEAD ones (re-armed; attempts and last_error kept) are returned,
        SUCCEEDED ones are not run again and in-flight ones are left to their worker.

        ``queued=True`` records the returned runs as QUEUED straight away, for a caller that
        publishes them right after this commit (one write per delivery instead of two); it
        must call ``mark_unpublished`` for those it fails to publish. Should the process die
        between the two, the sweeper's queued-too-long case republishes them.
        """
        return self._write(self._recorder(delivery, plans, _utc(now), queued))

    def record_many(
        self,
        items: Sequence[tuple[Delivery, Sequence[RunPlan]]],
        *,
        now: datetime | None = None,
        queued: bool = False,
        trace_parents: Mapping[str, str] | None = None,
        originals: dict[str, str] | None = None,
    ) -> list[list[RunRecord] | Exception]:
        """``record`` for several deliveries in one transaction (one commit for all).

        Each item gets its own answer, in order: its runs, or the exception that recording
        it alone raised (a batch that cannot commit is retried one delivery at a time, so
        one bad delivery does not fail the others). When the database itself failed
        (unreachable, locked), StoreUnavailable is raised for the whole batch instead.

        Tracing (both None when it is off): ``trace_parents`` gives each delivery's
        traceparent, stored with a new delivery; into ``originals`` go, for each redelivery,
        the traceparent its first delivery stored (for its span's link).
        """
        at = _utc(now)
        recorders = [
            self._recorder(d, plans, at, queued, trace_parents, originals) for d, plans in items
        ]
        if not recorders:
            return []
        # In delivery-id order: on PostgreSQL two processes' batches then take the rows'
        # locks in the same order, and cannot deadlock on a redelivery both are recording.
        order = sorted(range(len(items)), key=lambda i: items[i][0].id)

        def record_all(conn: Connection) -> list[list[RunRecord] | Exception]:
            answers: list[list[RunRecord] | Exception] = [[] for _ in recorders]
            for i in order:
                answers[i] = recorders[i](conn)
            return answers

        try:
            return self._write(record_all)
        except Exception as exc:
            if len(recorders) == 1 or is_outage(exc):
                raise  # the database is down: every delivery of the batch fails the same way
        answers: list[list[RunRecord] | Exception] = []
        for record in recorders:
            try:
                answers.append(self._write(record))
            except Exception as exc:
                answers.append(exc)
        return answers

    def record_handled(
        self,
        items: Sequence[tuple[Delivery, bool]],
        trace_parents: Mapping[str, str] | None = None,
    ) -> None:
        """Record deliveries the intake handled without background runs, in one transaction:
        ``(delivery, ok)``, ``ok`` False when an inline handler failed (the delivery is then
        FAILED, and a redelivery that goes well makes it SUCCEEDED). A redelivery counts up
        ``redeliveries``, as in ``record``. ``trace_parents``: as in ``record_many``."""
        if not items:
            return
        upsert = _sql.upsert_handled_delivery(self._dialect)
        first: dict[str, dict[str, Any]] = {}
        again: list[dict[str, Any]] = []  # a redelivery in the same batch: after the first
        for d, ok in sorted(items, key=lambda item: item[0].id):  # lock order, as above
            state = DeliveryState.SUCCEEDED if ok else DeliveryState.FAILED
            row = _delivery_row(d, state, trace_parents)
            (again.append(row) if d.id in first else first.setdefault(d.id, row))

        def write(conn: Connection) -> None:
            # One executemany: executing row by row cost 0.25 ms of CPU per delivery in
            # batches of 100, most of it SQLAlchemy's per-statement work.
            conn.execute(upsert, list(first.values()))
            for row in again:
                conn.execute(upsert, row)

        self._write(write)

    def _recorder(
        self,
        delivery: Delivery,
        plans: Sequence[RunPlan],
        at: datetime,
        queued: bool,
        trace_parents: Mapping[str, str] | None = None,
        originals: dict[str, str] | None = None,
    ) -> Callable[[Connection], list[RunRecord]]:
        """The statements that record one delivery, with its values prepared (compression
        included) before any transaction starts."""
        by_handler: dict[str, RunPlan] = {}
        for plan in plans:  # one run per (delivery, handler): the first plan wins
            by_handler.setdefault(plan.handler, plan)
        unique = list(by_handler.values())
        values = _delivery_row(
            delivery,
            (DeliveryState.QUEUED if queued else DeliveryState.RECEIVED)
            if unique
            else DeliveryState.SUCCEEDED,
            trace_parents,
        )
        traced = originals is not None
        upsert = _sql.upsert_delivery(self._dialect, traced)

        def record(conn: Connection) -> list[RunRecord]:
            if traced:
                redeliveries, original = conn.execute(upsert, values).one()
                if redeliveries > 0 and original and originals is not None:
                    originals[delivery.id] = original
            else:
                redeliveries = conn.execute(upsert, values).scalar_one()
            return _runs.record_runs(
                conn, delivery.id, unique, at, redelivery=redeliveries > 0, queued=queued
            )

        return record

    def mark_queued(self, run_ids: Sequence[str], *, now: datetime | None = None) -> None:
        """The runs were published to the broker: RECEIVED -> QUEUED, published_at = now.

        The sweeper re-publishes too, so a QUEUED run gets a fresh published_at and a
        STARTED/RETRYING run whose lease expired goes back to QUEUED. A run a live worker
        holds, or a finished one, is left alone (a worker may claim before this call lands).
        """
        at = _given(now)
        ids = sorted(set(run_ids))
        if ids:
            self._write(lambda conn: _runs.mark_queued(conn, ids, at))

    def mark_unpublished(self, run_ids: Sequence[str], *, now: datetime | None = None) -> None:
        """Runs recorded QUEUED whose message could not be sent: back to RECEIVED, so the
        sweeper publishes them after ``unpublished_after``."""
        ids = sorted(set(run_ids))
        if ids:
            at = _given(now)
            self._write(lambda conn: _runs.mark_unpublished(conn, ids, at))

    # -- the workers --------------------------------------------------------------------------

    def claim(
        self, run_id: str, *, lease_seconds: float, now: datetime | None = None
    ) -> RunRecord | None:
        """Start the run for a worker: STARTED, attempts + 1, a lease until now + lease_seconds.

        None when the run must not run now: unknown, finished, or started by a worker whose
        lease is still live (a duplicate message). Exactly one of concurrent claims wins.
        """
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        at = _given(now)
        return self._write(lambda conn: _runs.claim(conn, run_id, lease_seconds, at))

    def start(self, run_id: str, *, lease_seconds: float, now: datetime | None = None) -> bool:
        """``claim`` for a worker, which only needs to know whether it won: the same update,
        without reading the run back. True when this caller won."""
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        at = _given(now)
        return self._write(lambda conn: _runs.start(conn, run_id, lease_seconds, at))

    def renew_leases(
        self, run_ids: Sequence[str], *, lease_seconds: float, now: datetime | None = None
    ) -> int:
        """Push the leases of these STARTED runs to now + lease_seconds (worker heartbeat).

        A worker renews the runs it is executing, so a long handler is never taken for a dead
        one, while a killed worker's runs expire within one lease.
        """
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        ids = sorted(set(run_ids))
        if not ids:
            return 0
        at = _given(now)
        return self._write(lambda conn: _runs.renew_leases(conn, ids, lease_seconds, at))

    def mark_retrying(
        self,
        run_id: str,
        error: str,
        *,
        retry_at: datetime | None = None,
        now: datetime | None = None,
    ) -> bool:
        """A retry is scheduled at ``retry_at``: the lease is pushed past it, so the sweeper
        leaves alone a run that is only waiting for its countdown. Only from STARTED."""
        at = _given(now)
        retry = None if retry_at is None else _utc(retry_at)

        def changes(run: Mapping[Any, Any], written: datetime) -> dict[str, Any]:
            due = written if retry is None else max(retry, written)
            lease = run["lease_seconds"] or DEFAULT_LEASE_SECONDS
            return {
                "last_error": _error_text(error),
                "lease_expires_at": due + timedelta(seconds=lease),
            }

        return self._write(
            lambda conn: _runs.transition(
                conn, run_id, RunState.RETRYING, (RunState.STARTED,), at, changes
            )
        )

    def mark_succeeded(self, run_id: str, *, now: datetime | None = None) -> bool:
        """finished_at = now, duration_ms = now - started_at."""
        return self._finish(run_id, RunState.SUCCEEDED, None, now)

    def mark_failed(self, run_id: str, error: str, *, now: datetime | None = None) -> bool:
        """Not retryable (a 4xx, a bug); kept with its payload and replayable."""
        return self._finish(run_id, RunState.FAILED, error, now)

    def mark_dead(self, run_id: str, error: str, *, now: datetime | None = None) -> bool:
        """Retries exhausted; kept with its payload and replayable."""
        return self._finish(run_id, RunState.DEAD, error, now)

    def _finish(
        self, run_id: str, state: RunState, error: str | None, now: datetime | None
    ) -> bool:
        at = _given(now)
        text = None if error is None else _error_text(error)
        # From any unfinished state: a worker that ran the handler must be able to say so even
        # if the sweeper re-queued the run meanwhile. A finished run is never overwritten.
        return self._write(lambda conn: _runs.finish(conn, run_id, state, at, text))

    def due_for_sweep(
        self,
        *,
        now: datetime | None = None,
        unpublished_after: float = 30.0,
        queued_after: float = 600.0,
        limit: int = 500,
    ) -> list[RunRecord]:
        """Runs to publish again, oldest first: RECEIVED for longer than ``unpublished_after``
        (recorded, never published), QUEUED for longer than ``queued_after`` (the broker lost
        it), STARTED/RETRYING with an expired lease (the worker died)."""
        at = _utc(now)
        with self._tx(write=False) as conn:
            return _runs.due_for_sweep(conn, at, unpublished_after, queued_after, limit)

    def replay(self, delivery_id: str, *, now: datetime | None = None) -> list[RunRecord]:
        """Re-arm the delivery's FAILED and DEAD runs (to RECEIVED) and return them to publish.

        DeliveryNotFound when the delivery is unknown; [] when nothing is replayable.
        """
        at = _utc(now)
        with self._tx(write=True) as conn:
            return _runs.replay(conn, delivery_id, at)

    # -- reading ------------------------------------------------------------------------------

    def get_delivery(self, delivery_id: str, *, with_payload: bool = True) -> DeliveryRecord | None:
        with self._tx(write=False) as conn:
            return _reads.delivery(conn, delivery_id, with_payload=with_payload)

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._tx(write=False) as conn:
            return _reads.run(conn, run_id)

    def payload(self, delivery_id: str) -> dict[str, Any]:
        """The delivery's payload as GitHub sent it; DeliveryNotFound when unknown."""
        with self._tx(write=False) as conn:
            return _reads.payload(conn, delivery_id)

    def list_deliveries(
        self,
        *,
        event: str | None = None,
        state: str | None = None,
        installation_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """A page of deliveries with their runs (no payload), newest first; ``since``
        inclusive, ``until`` exclusive. ValueError for a cursor this store did not make."""
        with self._tx(write=False) as conn:
            return _reads.list_deliveries(
                conn,
                event=event,
                state=state,
                installation_id=installation_id,
                since=None if since is None else _utc(since),
                until=None if until is None else _utc(until),
                limit=limit,
                cursor=cursor,
            )

    def counts(self) -> dict[str, int]:
        """Runs per state, every state present, zeros included."""
        with self._tx(write=False) as conn:
            return _reads.count_runs(conn)

    def waiting_runs(self) -> dict[str, tuple[int, datetime]]:
        """Per queue, the runs waiting to start (received or queued) and the oldest one's
        creation time: the queue gauges of the metrics, the same on every broker."""
        with self._tx(write=False) as conn:
            return _reads.waiting(conn)

    def runs_in_flight(self) -> dict[str, int]:
        """Per queue, the runs started and not finished (executing or retrying)."""
        with self._tx(write=False) as conn:
            return _reads.in_flight(conn)

    def dead_runs(self) -> int:
        """How many runs are dead now."""
        with self._tx(write=False) as conn:
            return _reads.count_dead(conn)

    def purge(self, *, older_than: datetime) -> int:
        """Delete deliveries received before ``older_than`` whose runs all succeeded.

        Failed and dead deliveries are kept whatever their age: they are still replayable.
        Runs go with their delivery (ON DELETE CASCADE).
        """
        cutoff = _utc(older_than)
        with self._tx(write=True) as conn:
            result = conn.execute(
                delete(deliveries).where(
                    deliveries.c.state == DeliveryState.SUCCEEDED.value,
                    deliveries.c.received_at < cutoff,
                )
            )
            return int(result.rowcount)
