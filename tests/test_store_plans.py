"""The statements every run executes stay cheap while a backlog waits: SQLite's query plans
for them use the delivery's own rows, never a scan of every run in some state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.dialects import sqlite

from ghapp_celery.store import DeliveryStore, RunPlan, RunState, _runs, _sql
from tests.test_store import make_delivery


@pytest.fixture
def store(tmp_path: Path) -> DeliveryStore:
    s = DeliveryStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    s.upgrade()
    return s


def plan_of(store: DeliveryStore, statement: Any) -> str:
    compiled = statement.compile(
        dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True}
    )
    params = tuple(compiled.params[name] for name in compiled.positiontup)
    with store._engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize(
    "statement",
    [
        _sql.REFRESH_ONE,
        _runs._START,
        _runs._finish_statement("sqlite", False),
        _runs._finish_statement("sqlite", True),
    ],
    ids=["refresh delivery state", "claim", "finish", "finish with error"],
)
def test_hot_statements_never_search_runs_by_state(store: DeliveryStore, statement: Any) -> None:
    plan = plan_of(store, statement)
    assert "SCAN" not in plan, plan
    assert "ix_ghapp_handler_runs_state" not in plan, plan


def test_the_delivery_state_follows_its_runs_with_a_backlog_of_other_deliveries(
    store: DeliveryStore,
) -> None:
    plans = [RunPlan("a", "t.a", "q"), RunPlan("b", "t.b", "q")]
    for _ in range(50):  # other deliveries' queued runs: what the old plan scanned
        store.record(make_delivery(), plans, queued=True)
    delivery = make_delivery()
    first, second = store.record(delivery, plans, queued=True)

    def state() -> str:
        record = store.get_delivery(delivery.id, with_payload=False)
        assert record is not None
        return str(record.state)

    assert store.claim(first.id, lease_seconds=60) is not None
    assert state() == "running"
    assert store.mark_failed(first.id, "4xx")
    assert state() == "failed"  # failed outranks the queued second run
    assert store.claim(second.id, lease_seconds=60) is not None
    assert state() == "running"
    assert store.mark_dead(second.id, "gone")
    assert state() == "dead"
    assert store.counts()[RunState.QUEUED] == 100


def test_the_sweeper_finds_due_runs_through_the_state_index(store: DeliveryStore) -> None:
    """Without an index on the lease (migration 0003), expired leases are looked for among the
    started and retrying runs found by state: never a scan of every run."""
    from datetime import UTC, datetime

    captured: list[Any] = []

    class Recorder:
        def execute(self, statement: Any, *args: Any) -> list[Any]:
            captured.append(statement)
            return []

    _runs.due_for_sweep(Recorder(), datetime.now(UTC), 30, 900, 500)  # type: ignore[arg-type]
    plan = plan_of(store, captured[0])
    assert "SCAN ghapp_handler_runs" not in plan, plan
    assert plan.count("USING INDEX ix_ghapp_handler_runs_state_updated") == 3, plan
