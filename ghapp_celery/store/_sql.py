"""Statement builders and row conversions shared by the repository's methods."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Insert,
    Row,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from .models import deliveries, runs
from .records import DeliveryRecord, DeliveryState, RunRecord, RunState

__all__ = [
    "REFRESH_ONE",
    "RUN",
    "before_cursor",
    "decode_cursor",
    "decompress_payload",
    "delivery_from_row",
    "dialect_insert",
    "encode_cursor",
    "lock_deliveries",
    "lock_delivery_for",
    "lock_delivery_of_run",
    "refresh_delivery_state",
    "refresh_delivery_states",
    "run_from_row",
    "state_in",
    "upsert_delivery",
]


def decompress_payload(blob: bytes) -> dict[str, Any]:
    value = json.loads(zlib.decompress(blob))
    assert isinstance(value, dict)
    return value


def state_in(*states: RunState) -> ColumnElement[bool]:
    """``runs.state IN (...)`` as plain comparisons: a constant IN list is an "expanding"
    parameter that SQLAlchemy re-renders on every execution of the hot statements."""
    return or_(*(runs.c.state == state.value for state in states))


# Mirrors records.delivery_state(); evaluated by the database so a state change and the
# delivery's new state commit together without reading every run back. One pass over the
# delivery's runs (the (delivery_id, handler) index) taking the highest-ranked state: five
# EXISTS per state let SQLite's planner, which has no statistics, search the runs' state
# index instead, scanning every queued run of every delivery while a backlog waits (a finish
# cost grew with the backlog: 1.0 ms at 2,000 queued runs, 2.2 ms at 8,000).
_PRECEDENCE = [  # highest first
    ((RunState.STARTED, RunState.RETRYING), DeliveryState.RUNNING),
    ((RunState.DEAD,), DeliveryState.DEAD),
    ((RunState.FAILED,), DeliveryState.FAILED),
    ((RunState.QUEUED,), DeliveryState.QUEUED),
    ((RunState.RECEIVED,), DeliveryState.RECEIVED),
]
_RANK = case(
    *((state_in(*states), len(_PRECEDENCE) - n) for n, (states, _) in enumerate(_PRECEDENCE)),
    else_=0,
)
_HIGHEST_RANK = (
    select(func.max(_RANK)).where(runs.c.delivery_id == deliveries.c.id).scalar_subquery()
)
_DELIVERY_STATE = case(
    {len(_PRECEDENCE) - n: delivery.value for n, (_, delivery) in enumerate(_PRECEDENCE)},
    value=_HIGHEST_RANK,  # evaluated once: CASE (subquery) WHEN 5 THEN ... END
    else_=DeliveryState.SUCCEEDED.value,
)


def refresh_delivery_states(conn: Connection, delivery_ids: Iterable[str]) -> None:
    ids = sorted(set(delivery_ids))
    if len(ids) == 1:
        refresh_delivery_state(conn, ids[0])
    elif ids:
        conn.execute(
            update(deliveries).where(deliveries.c.id.in_(ids)).values(state=_DELIVERY_STATE)
        )


# The statements every run change executes, built once (construction cost more than running).
REFRESH_ONE = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_delivery"))
    .values(state=_DELIVERY_STATE)
)
_LOCK_DELIVERY_OF_RUN = (
    select(deliveries.c.id)
    .where(
        deliveries.c.id
        == select(runs.c.delivery_id).where(runs.c.id == bindparam("b_run")).scalar_subquery()
    )
    .with_for_update()
)
RUN = select(runs).where(runs.c.id == bindparam("b_run"))


def refresh_delivery_state(conn: Connection, delivery_id: str) -> None:
    conn.execute(REFRESH_ONE, {"b_delivery": delivery_id})


def lock_delivery_for(conn: Connection, run_id: str) -> None:
    """PostgreSQL: lock the run's delivery row (see ``lock_delivery_of_run``); SQLite: nothing."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_DELIVERY_OF_RUN, {"b_run": run_id})


def lock_delivery_of_run(conn: Connection, run_id: str) -> Mapping[Any, Any] | None:
    """Lock the run's delivery row, then return the run's current row (None if unknown).

    Every change to a run locks its delivery first. On PostgreSQL that serialises the state
    recomputation per delivery (otherwise two workers finishing the last two runs could each
    see the other's run unfinished and leave the delivery "running" for good), and one lock
    order (delivery, then runs) everywhere rules out deadlocks with record(). SQLite needs
    none of it: write transactions there are already serial (BEGIN IMMEDIATE).
    """
    lock_delivery_for(conn, run_id)
    row = conn.execute(RUN, {"b_run": run_id}).first()
    return None if row is None else row._mapping


def lock_deliveries(conn: Connection, delivery_ids: Sequence[str]) -> list[str]:
    """Lock these deliveries in id order (one global order: no deadlocks); returns those found."""
    stmt = select(deliveries.c.id).where(deliveries.c.id.in_(sorted(set(delivery_ids))))
    if conn.dialect.name == "postgresql":
        stmt = stmt.order_by(deliveries.c.id).with_for_update()
    return list(conn.execute(stmt).scalars())


def dialect_insert(dialect: str) -> Callable[..., Any]:
    """The dialect's INSERT, which has ON CONFLICT. Imported on first use: PostgreSQL's
    dialect module is ~2 MB that a process on SQLite never needs."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


@functools.cache
def upsert_delivery(dialect: str, traced: bool = False) -> Insert:
    """INSERT the delivery, or count a redelivery; RETURNING redeliveries (0 means new) and,
    when ``traced``, the trace_parent stored (the first delivery's: an update never sets it).

    Built once per dialect and executed with the row as parameters: building it per call
    cost more than the commit (SQLAlchemy coerces and keys every value of ``.values()``).
    """
    returned = (deliveries.c.redeliveries, deliveries.c.trace_parent)
    statement: Insert = (
        dialect_insert(dialect)(deliveries)
        .on_conflict_do_update(
            index_elements=[deliveries.c.id],
            set_={"redeliveries": deliveries.c.redeliveries + 1},
        )
        .returning(*returned[: 2 if traced else 1])
    )
    return statement


@functools.cache
def upsert_handled_delivery(dialect: str) -> Insert:
    """INSERT a delivery the intake handled without background runs (inline handlers, or
    none matched) in its outcome's state, or count a redelivery and take its newer outcome:
    a failed inline handler that succeeds on redelivery leaves the delivery succeeded. A
    delivery that has background runs keeps the state its runs give it."""
    insert = dialect_insert(dialect)(deliveries)
    has_runs = select(runs.c.id).where(runs.c.delivery_id == deliveries.c.id).exists()
    statement: Insert = insert.on_conflict_do_update(
        index_elements=[deliveries.c.id],
        set_={
            "redeliveries": deliveries.c.redeliveries + 1,
            "state": case((has_runs, deliveries.c.state), else_=insert.excluded.state),
        },
    )
    return statement


def run_from_row(row: Mapping[Any, Any]) -> RunRecord:
    """A RunRecord from a row mapping (``row._mapping``) or the dict that was inserted."""
    return RunRecord(
        id=row["id"],
        delivery_id=row["delivery_id"],
        handler=row["handler"],
        task_name=row["task_name"],
        queue=row["queue"],
        state=RunState(row["state"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        published_at=row["published_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease_expires_at=row["lease_expires_at"],
        duration_ms=row["duration_ms"],
    )


def delivery_from_row(
    row: Row[Any], run_records: Iterable[RunRecord], *, with_payload: bool
) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        event=row.event,
        action=row.action,
        installation_id=row.installation_id,
        hook_id=row.hook_id,
        target_type=row.target_type,
        target_id=row.target_id,
        received_at=row.received_at,
        state=row.state,
        redeliveries=row.redeliveries,
        trace_parent=row.trace_parent,
        payload=decompress_payload(row.payload) if with_payload else None,
        runs=tuple(run_records),
    )


def encode_cursor(received_at: datetime, delivery_id: str) -> str:
    raw = json.dumps([received_at.isoformat(), delivery_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, delivery_id = json.loads(raw)
        when = datetime.fromisoformat(at)
        # In range once in UTC (0001-01-01T00:00+01:00 is not), as the database compares it.
        when.astimezone(UTC)
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        raise ValueError("invalid cursor") from exc
    # A NUL is refused by PostgreSQL's driver as a 503-looking DataError; no id holds one.
    if when.tzinfo is None or not isinstance(delivery_id, str) or "\x00" in delivery_id:
        raise ValueError("invalid cursor")
    return when, delivery_id


def before_cursor(cursor: str) -> ColumnElement[bool]:
    """Rows after the cursor in newest-first order: (received_at, id) strictly smaller."""
    at, delivery_id = decode_cursor(cursor)
    return or_(
        deliveries.c.received_at < at,
        and_(deliveries.c.received_at == at, deliveries.c.id < delivery_id),
    )
