"""The run state machine as statements on an open write transaction.

Every change to a run locks its delivery first (see ``_sql.lock_delivery_of_run``) and ends
by recomputing the delivery's state, in the same transaction.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Update,
    and_,
    bindparam,
    extract,
    func,
    insert,
    or_,
    select,
    update,
)

from . import _sql
from ._sqlite_fast import first_row
from .errors import DeliveryNotFound
from .models import deliveries, runs
from .records import DeliveryState, RunPlan, RunRecord, RunState

__all__ = [
    "claim",
    "due_for_sweep",
    "finish",
    "mark_queued",
    "mark_unpublished",
    "record_runs",
    "renew_leases",
    "replay",
    "start",
    "transition",
]

UNFINISHED = (RunState.RECEIVED, RunState.QUEUED, RunState.STARTED, RunState.RETRYING)
REPLAYABLE = (RunState.FAILED, RunState.DEAD)
_LIVE = (RunState.STARTED, RunState.RETRYING)
# What re-arming a failed or dead run clears; attempts and last_error are history and stay.
_REARM: dict[str, Any] = {
    "state": RunState.RECEIVED.value,
    "published_at": None,
    "started_at": None,
    "finished_at": None,
    "lease_expires_at": None,
    "duration_ms": None,
}
# Many runs re-armed in one executemany; "b_" names because SQLAlchemy reserves the column
# names themselves for bind parameters of an UPDATE.
_REARM_MANY = (
    update(runs)
    .where(runs.c.id == bindparam("b_id"))
    .values(
        **_REARM,
        updated_at=bindparam("b_now"),
        task_name=bindparam("b_task_name"),
        queue=bindparam("b_queue"),
    )
)


def write_time(now: datetime | None) -> datetime:
    """The time a write is stamped with: the caller's (tests pass one), else the clock read
    once the transaction holds its locks.

    Never earlier: a claim that read the clock and then waited 80 s for a stalled store wrote
    a lease that had expired before it committed, so the next late claim beat it and a run
    executed three times at once (issue 10). Leases are thus as long as asked from their
    commit, on the clock of the process writing them (hosts keep clocks in sync with NTP).
    """
    return datetime.now(UTC) if now is None else now


def _new_run(
    delivery_id: str, plan: RunPlan, now: datetime, queued: bool = False
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "delivery_id": delivery_id,
        "handler": plan.handler,
        "task_name": plan.task_name,
        "queue": plan.queue,
        "state": (RunState.QUEUED if queued else RunState.RECEIVED).value,
        "attempts": 0,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
        "published_at": now if queued else None,
        "started_at": None,
        "finished_at": None,
        "lease_expires_at": None,
        "lease_seconds": None,
        "duration_ms": None,
    }


def record_runs(
    conn: Connection,
    delivery_id: str,
    plans: Sequence[RunPlan],
    now: datetime,
    *,
    redelivery: bool,
    queued: bool = False,
) -> list[RunRecord]:
    """Insert new runs, re-arm failed/dead ones; return both (what must be published).

    ``queued``: the caller publishes right after the commit, so the runs are recorded as
    QUEUED at once (saving a write per delivery); it calls ``mark_unpublished`` for any it
    then fails to publish.
    """
    existing: dict[str, Mapping[Any, Any]] = {}
    if redelivery:
        rows = conn.execute(select(runs).where(runs.c.delivery_id == delivery_id))
        existing = {row.handler: row._mapping for row in rows}
    new_rows: list[dict[str, Any]] = []
    rearmed: list[dict[str, Any]] = []
    for plan in plans:
        old = existing.get(plan.handler)
        if old is None:
            new_rows.append(_new_run(delivery_id, plan, now, queued))
        elif old["state"] in REPLAYABLE:
            # The routing may have changed since the first delivery: follow the new plan.
            changes = {"updated_at": now, "task_name": plan.task_name, "queue": plan.queue}
            rearmed.append({**old, **_REARM, **changes})
        # SUCCEEDED: done, never run twice. RECEIVED..RETRYING: in flight, its worker has it.
    if new_rows:
        conn.execute(insert(runs), new_rows)  # executemany: one round trip for all plans
    if rearmed:
        params = [
            {"b_id": r["id"], "b_now": now, "b_task_name": r["task_name"], "b_queue": r["queue"]}
            for r in rearmed
        ]
        conn.execute(_REARM_MANY, params)
        if queued:
            ids = [r["id"] for r in rearmed]
            conn.execute(
                update(runs)
                .where(runs.c.id.in_(ids))
                .values(state=RunState.QUEUED.value, published_at=now)
            )
            rearmed = [{**r, "state": RunState.QUEUED.value, "published_at": now} for r in rearmed]
    if redelivery:
        _sql.refresh_delivery_state(conn, delivery_id)
    return [_sql.run_from_row(run) for run in (*rearmed, *new_rows)]


def mark_queued(conn: Connection, run_ids: Sequence[str], now: datetime | None) -> None:
    owners = select(runs.c.delivery_id).where(runs.c.id.in_(run_ids)).distinct()
    _sql.lock_deliveries(conn, list(conn.execute(owners).scalars()))
    now = write_time(now)
    updated = conn.execute(
        update(runs)
        .where(
            runs.c.id.in_(run_ids),
            or_(
                runs.c.state.in_((RunState.RECEIVED, RunState.QUEUED)),
                and_(runs.c.state.in_(_LIVE), runs.c.lease_expires_at < now),
            ),
        )
        .values(
            state=RunState.QUEUED.value, published_at=now, updated_at=now, lease_expires_at=None
        )
        .returning(runs.c.delivery_id)
    )
    _sql.refresh_delivery_states(conn, list(updated.scalars()))


def mark_unpublished(conn: Connection, run_ids: Sequence[str], now: datetime | None) -> None:
    """QUEUED runs whose message could not be sent go back to RECEIVED (for the sweeper)."""
    owners = select(runs.c.delivery_id).where(runs.c.id.in_(run_ids)).distinct()
    _sql.lock_deliveries(conn, list(conn.execute(owners).scalars()))
    now = write_time(now)
    updated = conn.execute(
        update(runs)
        .where(runs.c.id.in_(run_ids), runs.c.state == RunState.QUEUED)
        .values(state=RunState.RECEIVED.value, published_at=None, updated_at=now)
        .returning(runs.c.delivery_id)
    )
    _sql.refresh_delivery_states(conn, list(updated.scalars()))


# The claim's WHERE clause is the whole decision, evaluated by the database on the current
# row: under concurrency exactly one claimant's UPDATE matches. Built once: constructing it
# per call cost more than executing it. RETURNING only what the delivery update needs.
_START = (
    update(runs)
    .where(
        runs.c.id == bindparam("b_id"),
        or_(
            _sql.state_in(RunState.RECEIVED, RunState.QUEUED, RunState.RETRYING),
            and_(runs.c.state == RunState.STARTED, runs.c.lease_expires_at < bindparam("b_now")),
        ),
    )
    .values(
        state=RunState.STARTED.value,
        attempts=runs.c.attempts + 1,
        started_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
        finished_at=None,
        duration_ms=None,
        lease_expires_at=bindparam("b_until"),
        lease_seconds=bindparam("b_lease"),
    )
    .returning(runs.c.delivery_id)
)
# A started run makes its delivery "running" whatever its other runs are (running comes first
# in the state precedence), so no need to recompute from every run.
_DELIVERY_RUNNING = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_delivery"))
    .values(state=DeliveryState.RUNNING.value)
)


def start(conn: Connection, run_id: str, lease_seconds: float, now: datetime | None) -> bool:
    """Claim the run; True when this caller won. On SQLite through its cursor (_sqlite_fast).

    The WHERE clause never lets a claim win over a live lease: it compares with the time read
    after the locks are held (SQLite: BEGIN IMMEDIATE; PostgreSQL: the delivery's row lock),
    and the lease it writes runs from then.
    """
    # PostgreSQL: lock the delivery first (one lock order everywhere); a run that does not
    # exist then simply matches nothing below.
    _sql.lock_delivery_for(conn, run_id)
    now = write_time(now)
    params = {
        "b_id": run_id,
        "b_now": now,
        "b_until": now + timedelta(seconds=lease_seconds),
        "b_lease": lease_seconds,
    }
    row = first_row(conn, _START, params)
    if row is None:
        return False
    first_row(conn, _DELIVERY_RUNNING, {"b_delivery": row[0]})
    return True


def claim(
    conn: Connection, run_id: str, lease_seconds: float, now: datetime | None
) -> RunRecord | None:
    """``start``, then the run as it now is (same transaction)."""
    if not start(conn, run_id, lease_seconds, now):
        return None
    row = conn.execute(_sql.RUN, {"b_run": run_id}).first()
    return None if row is None else _sql.run_from_row(row._mapping)


def renew_leases(
    conn: Connection, run_ids: Sequence[str], lease_seconds: float, now: datetime | None
) -> int:
    """Extend the leases of runs still STARTED (a live worker's heartbeat); returns how many.

    No state changes, so no delivery lock: a run that finished or was reclaimed meanwhile is
    simply not matched. The lease runs from the clock read once the rows are held: SQLite's
    transaction holds the write lock already; on PostgreSQL the rows are locked first (in id
    order), since an UPDATE's bound time was read before it waited for them.
    """
    ids = list(run_ids)
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(runs.c.id).where(runs.c.id.in_(ids)).order_by(runs.c.id).with_for_update()
        )
    now = write_time(now)
    result = conn.execute(
        update(runs)
        .where(runs.c.id.in_(ids), runs.c.state == RunState.STARTED)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
    )
    return int(result.rowcount or 0)


Changes = Callable[[Mapping[Any, Any], datetime], dict[str, Any]]


@functools.cache
def _finish_statement(dialect: str, with_error: bool) -> Update:
    """Finish a run that is not finished yet, its duration computed by the database from the
    stored started_at: one statement instead of reading the row first."""
    now = bindparam("b_now", type_=runs.c.finished_at.type)
    if dialect == "sqlite":
        # started_at is stored as text in UTC. julianday() reads the seconds to the
        # millisecond (the microseconds are dropped) into a double good to ~0.05 ms at
        # today's dates: rounding to a tenth keeps the double's noise out.
        days = func.julianday(now) - func.julianday(runs.c.started_at)
        elapsed: Any = func.round(days * 86_400_000.0, 1)
    else:
        elapsed = extract("epoch", now - runs.c.started_at) * 1000.0
    values: dict[Any, Any] = {
        runs.c.state: bindparam("b_to"),
        runs.c.updated_at: now,
        runs.c.finished_at: now,
        runs.c.lease_expires_at: None,
        runs.c.duration_ms: elapsed,
    }
    if with_error:
        values[runs.c.last_error] = bindparam("b_error")
    return (
        update(runs)
        .where(runs.c.id == bindparam("b_id"), _sql.state_in(*UNFINISHED))
        .values(values)
        .returning(runs.c.delivery_id)
    )


def finish(
    conn: Connection, run_id: str, state: RunState, now: datetime | None, error: str | None
) -> bool:
    """SUCCEEDED, FAILED or DEAD from any unfinished state; False when already finished."""
    _sql.lock_delivery_for(conn, run_id)
    now = write_time(now)
    params: dict[str, Any] = {"b_id": run_id, "b_to": state.value, "b_now": now}
    if error is not None:
        params["b_error"] = error
    statement = _finish_statement(conn.dialect.name, error is not None)
    row = first_row(conn, statement, params)
    if row is None:
        return False
    first_row(conn, _sql.REFRESH_ONE, {"b_delivery": row[0]})
    return True


@functools.cache
def _transition(columns: tuple[str, ...]) -> Update:
    """Move one run on if it is still in the state it was read in, setting ``columns`` too.

    One statement per set of columns (a handful exist), built once: constructing it per call
    cost more than executing it."""
    extra: dict[Any, Any] = {runs.c[name]: bindparam(f"c_{name}") for name in columns}
    return (
        update(runs)
        .where(runs.c.id == bindparam("b_id"), runs.c.state == bindparam("b_from"))
        .values({runs.c.state: bindparam("b_to"), runs.c.updated_at: bindparam("b_now"), **extra})
    )


def transition(
    conn: Connection,
    run_id: str,
    state: RunState,
    allowed: Collection[RunState],
    now: datetime | None,
    changes: Changes,
) -> bool:
    """Move one run to ``state`` if it is in ``allowed``; True when it moved."""
    run = _sql.lock_delivery_of_run(conn, run_id)
    if run is None or run["state"] not in allowed:
        return False
    now = write_time(now)
    values = changes(run, now)
    params = {"b_id": run_id, "b_from": run["state"], "b_to": state.value, "b_now": now}
    statement = _transition(tuple(sorted(values)))
    result = conn.execute(statement, params | {f"c_{k}": v for k, v in values.items()})
    if result.rowcount != 1:
        return False
    _sql.refresh_delivery_state(conn, run["delivery_id"])
    return True


def due_for_sweep(
    conn: Connection, now: datetime, unpublished_after: float, queued_after: float, limit: int
) -> list[RunRecord]:
    stmt = (
        select(runs)
        .where(
            or_(
                and_(
                    runs.c.state == RunState.RECEIVED,
                    runs.c.updated_at < now - timedelta(seconds=unpublished_after),
                ),
                # A QUEUED run's updated_at is its published_at, and updated_at is indexed.
                and_(
                    runs.c.state == RunState.QUEUED,
                    runs.c.updated_at < now - timedelta(seconds=queued_after),
                ),
                and_(runs.c.state.in_(_LIVE), runs.c.lease_expires_at < now),
            )
        )
        .order_by(runs.c.created_at, runs.c.id)
        .limit(limit)
    )
    return [_sql.run_from_row(row._mapping) for row in conn.execute(stmt)]


def replay(conn: Connection, delivery_id: str, now: datetime) -> list[RunRecord]:
    if not _sql.lock_deliveries(conn, [delivery_id]):
        raise DeliveryNotFound(f"No delivery {delivery_id!r} in the store")
    rows = conn.execute(
        update(runs)
        .where(runs.c.delivery_id == delivery_id, runs.c.state.in_(REPLAYABLE))
        .values(**_REARM, updated_at=now)
        .returning(*runs.c)
    ).all()
    if rows:
        _sql.refresh_delivery_state(conn, delivery_id)
    records = [_sql.run_from_row(row._mapping) for row in rows]
    return sorted(records, key=lambda run: (run.created_at or now, run.handler))
