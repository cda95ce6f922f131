"""The read side of the store: lookups, the paginated listing and the counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from . import _sql
from .errors import DeliveryNotFound
from .models import deliveries, runs
from .records import DeliveryRecord, Page, RunRecord, RunState

__all__ = [
    "count_dead",
    "count_runs",
    "delivery",
    "in_flight",
    "list_deliveries",
    "payload",
    "run",
    "waiting",
]

MAX_PAGE = 500
# Everything but the payload, which a listing never needs and which can be megabytes.
_SUMMARY = [column for column in deliveries.c if column.name != "payload"]


def _runs_of(conn: Connection, delivery_ids: Sequence[str]) -> dict[str, list[RunRecord]]:
    """The runs of many deliveries in one query (never one query per delivery)."""
    found: dict[str, list[RunRecord]] = defaultdict(list)
    if delivery_ids:
        stmt = (
            select(runs)
            .where(runs.c.delivery_id.in_(delivery_ids))
            .order_by(runs.c.created_at, runs.c.handler)
        )
        for row in conn.execute(stmt):
            found[row.delivery_id].append(_sql.run_from_row(row._mapping))
    return found


def delivery(conn: Connection, delivery_id: str, *, with_payload: bool) -> DeliveryRecord | None:
    columns = list(deliveries.c) if with_payload else _SUMMARY
    row = conn.execute(select(*columns).where(deliveries.c.id == delivery_id)).first()
    if row is None:
        return None
    return _sql.delivery_from_row(
        row, _runs_of(conn, [delivery_id])[delivery_id], with_payload=with_payload
    )


def run(conn: Connection, run_id: str) -> RunRecord | None:
    row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    return None if row is None else _sql.run_from_row(row._mapping)


def payload(conn: Connection, delivery_id: str) -> dict[str, Any]:
    blob = conn.execute(
        select(deliveries.c.payload).where(deliveries.c.id == delivery_id)
    ).scalar_one_or_none()
    if blob is None:
        raise DeliveryNotFound(f"No delivery {delivery_id!r} in the store")
    return _sql.decompress_payload(blob)


def list_deliveries(
    conn: Connection,
    *,
    event: str | None,
    state: str | None,
    installation_id: int | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> Page:
    """Newest first by (received_at, id), ``since`` inclusive and ``until`` exclusive.

    Keyset pagination: the cursor names the last row of the previous page, so pages stay
    stable while new deliveries arrive and a deep page costs the same as the first.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    limit = min(limit, MAX_PAGE)
    stmt = select(*_SUMMARY)
    if event is not None:
        stmt = stmt.where(deliveries.c.event == event)
    if state is not None:
        stmt = stmt.where(deliveries.c.state == state)
    if installation_id is not None:
        stmt = stmt.where(deliveries.c.installation_id == installation_id)
    if since is not None:
        stmt = stmt.where(deliveries.c.received_at >= since)
    if until is not None:
        stmt = stmt.where(deliveries.c.received_at < until)
    if cursor:
        stmt = stmt.where(_sql.before_cursor(cursor))
    # One row more than asked tells whether another page exists without a COUNT.
    stmt = stmt.order_by(deliveries.c.received_at.desc(), deliveries.c.id.desc()).limit(limit + 1)
    rows = conn.execute(stmt).all()
    more = len(rows) > limit
    rows = rows[:limit]
    by_delivery = _runs_of(conn, [row.id for row in rows])
    items = [
        _sql.delivery_from_row(row, by_delivery.get(row.id, ()), with_payload=False) for row in rows
    ]
    next_cursor = _sql.encode_cursor(rows[-1].received_at, rows[-1].id) if more else None
    return Page(items=items, next_cursor=next_cursor)


def count_runs(conn: Connection) -> dict[str, int]:
    """Runs per state, every state present (zero included) so metrics series never vanish."""
    counts = dict.fromkeys((state.value for state in RunState), 0)
    stmt = select(runs.c.state, func.count()).group_by(runs.c.state)
    for state, number in conn.execute(stmt):
        counts[state] = int(number)
    return counts


_WAITING = (
    select(runs.c.queue, func.count(), func.min(runs.c.created_at))
    .where(runs.c.state.in_((RunState.RECEIVED.value, RunState.QUEUED.value)))
    .group_by(runs.c.queue)
)
_IN_FLIGHT = (
    select(runs.c.queue, func.count())
    .where(runs.c.state.in_((RunState.STARTED.value, RunState.RETRYING.value)))
    .group_by(runs.c.queue)
)
_DEAD = select(func.count()).select_from(runs).where(runs.c.state == RunState.DEAD.value)


def waiting(conn: Connection) -> dict[str, tuple[int, datetime]]:
    """Per queue: the runs received or queued but not started, and the oldest's creation.

    Both read the (state, updated_at) index: the cost grows with the waiting runs, not with
    the history of finished ones."""
    found: dict[str, tuple[int, datetime]] = {}
    for queue, number, oldest in conn.execute(_WAITING):
        found[str(queue)] = (int(number), oldest)  # min() keeps the column's UTC type
    return found


def in_flight(conn: Connection) -> dict[str, int]:
    """Per queue: the runs started and not finished (executing, or waiting for a retry's
    countdown), from the same index."""
    return {str(queue): int(number) for queue, number in conn.execute(_IN_FLIGHT)}


def count_dead(conn: Connection) -> int:
    return int(conn.execute(_DEAD).scalar_one())
