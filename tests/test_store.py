"""The delivery store against SQLite (a file) and a real PostgreSQL server, same tests."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import random
import socket
import string
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text

from ghapp_celery.exceptions import ConfigurationError, GitHubAppError
from ghapp_celery.store import (
    DeliveryNotFound,
    DeliveryStore,
    RunPlan,
    RunState,
    StoreUnavailable,
    _sql,
    delivery_state,
)
from ghapp_celery.store._runs import _finish_statement
from ghapp_celery.store.migrate import VERSION_TABLE, head_revision
from ghapp_celery.store.models import metadata
from ghapp_celery.webhooks import Delivery
from tests._postgres import PostgresServer, postgres_server  # noqa: F401  (fixture)

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PLANS = [
    RunPlan("welcome", "ghapp.welcome", "github.issues"),
    RunPlan("label", "ghapp.label", "github.issues"),
]


def make_delivery(
    delivery_id: str | None = None,
    *,
    event: str = "issues",
    action: str | None = "opened",
    installation_id: int | None = 42,
    received_at: datetime = T0,
    payload: dict[str, Any] | None = None,
) -> Delivery:
    return Delivery(
        id=delivery_id or str(uuid.uuid4()),
        event=event,
        action=action,
        installation_id=installation_id,
        hook_id=7,
        target_type="integration",
        target_id=99,
        payload=payload if payload is not None else {"action": action, "n": 1},
        received_at=received_at,
    )


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg(request: pytest.FixtureRequest) -> PostgresServer:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server


@pytest.fixture(scope="session")
def pg_store_url(pg: PostgresServer) -> str:
    url = pg.create_database("ghapp_store")
    DeliveryStore(url).upgrade()
    return url


def _fresh_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/store/store.sqlite"
    server: PostgresServer = request.getfixturevalue("pg")
    return server.create_database(f"fresh_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeliveryStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite"
    else:
        # One migrated database for the session, emptied per test: far faster than a new one.
        url = request.getfixturevalue("pg_store_url")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE ghapp_handler_runs, ghapp_deliveries"))
        engine.dispose()
    store = DeliveryStore(url)
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _fresh_url(request, request.param, tmp_path)


def _states(store: DeliveryStore, delivery_id: str) -> dict[str, RunState]:
    record = store.get_delivery(delivery_id, with_payload=False)
    assert record is not None
    return {run.handler: run.state for run in record.runs}


def _delivery_state(store: DeliveryStore, delivery_id: str) -> str:
    record = store.get_delivery(delivery_id, with_payload=False)
    assert record is not None
    return record.state


# -- record ------------------------------------------------------------------------------------


def test_record_new_delivery(store: DeliveryStore) -> None:
    delivery = make_delivery("d-new")
    runs = store.record(delivery, [*PLANS, PLANS[0]], now=T0)  # a duplicate plan is ignored
    assert [run.handler for run in runs] == ["welcome", "label"]
    assert all(run.state is RunState.RECEIVED and run.attempts == 0 for run in runs)
    assert all(run.created_at == T0 and run.delivery_id == "d-new" for run in runs)
    assert len({run.id for run in runs}) == 2 and all(uuid.UUID(run.id) for run in runs)
    record = store.get_delivery("d-new")
    assert record is not None
    assert (record.event, record.action, record.installation_id) == ("issues", "opened", 42)
    assert (record.hook_id, record.target_type, record.target_id) == (7, "integration", 99)
    assert record.received_at == T0 and record.received_at.tzinfo is not None
    assert record.state == "received" and record.redeliveries == 0
    assert record.payload == delivery.payload
    assert {run.id for run in record.runs} == {run.id for run in runs}
    assert store.get_run(runs[0].id) == runs[0]


def test_record_without_background_runs_is_finished(store: DeliveryStore) -> None:
    assert store.record(make_delivery("d-ping", event="ping", action=None), []) == []
    assert _delivery_state(store, "d-ping") == "succeeded"


def test_redelivery_counts_and_leaves_in_flight_runs_alone(store: DeliveryStore) -> None:
    delivery = make_delivery("d-redo")
    welcome, label = store.record(delivery, PLANS, now=T0)
    store.mark_queued([welcome.id, label.id], now=T0)
    assert store.claim(welcome.id, lease_seconds=60, now=T0) is not None
    assert store.record(delivery, PLANS, now=T0 + timedelta(seconds=1)) == []
    record = store.get_delivery("d-redo", with_payload=False)
    assert record is not None and record.redeliveries == 1
    assert _states(store, "d-redo") == {"welcome": RunState.STARTED, "label": RunState.QUEUED}
    store.record(delivery, PLANS)
    assert store.get_delivery("d-redo", with_payload=False).redeliveries == 2  # type: ignore[union-attr]


def test_redelivery_never_reruns_a_succeeded_run(store: DeliveryStore) -> None:
    delivery = make_delivery("d-done")
    runs = store.record(delivery, PLANS, now=T0)
    for run in runs:
        store.claim(run.id, lease_seconds=60, now=T0)
        store.mark_succeeded(run.id, now=T0 + timedelta(seconds=2))
    assert store.record(delivery, PLANS) == []
    assert set(_states(store, "d-done").values()) == {RunState.SUCCEEDED}
    assert _delivery_state(store, "d-done") == "succeeded"


def test_redelivery_rearms_failed_and_dead_runs(store: DeliveryStore) -> None:
    delivery = make_delivery("d-rearm")
    welcome, label = store.record(delivery, PLANS, now=T0)
    store.claim(welcome.id, lease_seconds=60, now=T0)
    store.mark_failed(welcome.id, "422 Validation Failed", now=T0 + timedelta(seconds=1))
    store.claim(label.id, lease_seconds=60, now=T0)
    store.mark_dead(label.id, "retries exhausted", now=T0 + timedelta(seconds=1))
    assert _delivery_state(store, "d-rearm") == "dead"

    later = T0 + timedelta(hours=1)
    moved = RunPlan("label", "ghapp.label_v2", "github.slow")  # the routing changed meanwhile
    extra = RunPlan("triage", "ghapp.triage", "github.issues")  # a handler added since
    runs = store.record(delivery, [PLANS[0], moved, extra], now=later)
    by_handler = {run.handler: run for run in runs}
    assert set(by_handler) == {"welcome", "label", "triage"}
    assert by_handler["welcome"].id == welcome.id  # same run, re-armed: same Celery task id
    assert by_handler["welcome"].state is RunState.RECEIVED
    assert by_handler["welcome"].attempts == 1
    assert by_handler["welcome"].last_error == "422 Validation Failed"
    assert by_handler["welcome"].finished_at is None and by_handler["welcome"].started_at is None
    assert by_handler["label"].last_error == "retries exhausted"
    assert (by_handler["label"].task_name, by_handler["label"].queue) == (
        moved.task_name,
        moved.queue,
    )
    assert by_handler["triage"].attempts == 0
    assert store.get_run(label.id) == by_handler["label"]
    assert _delivery_state(store, "d-rearm") == "received"
    # Re-armed runs are fresh for the sweeper: not "unpublished for an hour".
    assert store.due_for_sweep(now=later + timedelta(seconds=5)) == []


# -- claim and leases --------------------------------------------------------------------------


def test_claim_starts_the_run_once(store: DeliveryStore) -> None:
    run, _ = store.record(make_delivery("d-claim"), PLANS, now=T0)
    claimed = store.claim(run.id, lease_seconds=30, now=T0 + timedelta(seconds=1))
    assert claimed is not None
    assert claimed.state is RunState.STARTED and claimed.attempts == 1
    assert claimed.started_at == T0 + timedelta(seconds=1)
    assert claimed.lease_expires_at == T0 + timedelta(seconds=31)
    assert store.claim(run.id, lease_seconds=30, now=T0 + timedelta(seconds=2)) is None
    assert store.claim("no-such-run", lease_seconds=30) is None
    store.mark_succeeded(run.id, now=T0 + timedelta(seconds=3))
    assert store.claim(run.id, lease_seconds=30, now=T0 + timedelta(hours=1)) is None
    with pytest.raises(ValueError):
        store.claim(run.id, lease_seconds=0)


def test_start_is_the_claim_a_worker_makes_without_reading_the_run_back(
    store: DeliveryStore,
) -> None:
    run, _ = store.record(make_delivery("d-start"), PLANS, now=T0)
    assert store.start(run.id, lease_seconds=30, now=T0 + timedelta(seconds=1)) is True
    started = store.get_run(run.id)
    assert started is not None and started.state is RunState.STARTED and started.attempts == 1
    assert started.lease_expires_at == T0 + timedelta(seconds=31)
    assert _delivery_state(store, "d-start") == "running"
    # A duplicate message while the lease is live, an unknown run: not started.
    assert store.start(run.id, lease_seconds=30, now=T0 + timedelta(seconds=2)) is False
    assert store.start("no-such-run", lease_seconds=30) is False
    # The lease ran out (the worker died): the next message starts it again.
    assert store.start(run.id, lease_seconds=30, now=T0 + timedelta(seconds=40)) is True
    assert store.get_run(run.id).attempts == 2  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        store.start(run.id, lease_seconds=0)


def test_sqlite_cursor_path_stores_what_sqlalchemy_would(tmp_path: Path) -> None:
    """start() and the finishes run on SQLite's cursor (store/_sqlite_fast.py); the rows they
    leave must be byte for byte what the Connection.execute path leaves."""
    url = f"sqlite:///{tmp_path}/store.sqlite"
    store = DeliveryStore(url)
    fast, _ = store.record(make_delivery("d-fast"), PLANS, now=T0)
    slow, _ = store.record(make_delivery("d-slow"), PLANS, now=T0)
    at, until = T0 + timedelta(seconds=1.25), T0 + timedelta(seconds=3)
    assert store.start(fast.id, lease_seconds=7.5, now=at)
    assert store.claim(slow.id, lease_seconds=7.5, now=at) is not None
    engine = create_engine(url)

    def rows() -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            run_rows = conn.execute(
                text("SELECT * FROM ghapp_handler_runs WHERE id IN (:a, :b) ORDER BY id = :a"),
                {"a": fast.id, "b": slow.id},
            ).all()
            states = conn.execute(
                text("SELECT state FROM ghapp_deliveries WHERE id IN ('d-fast', 'd-slow')")
            ).all()
        return [*[tuple(r._mapping[k] for k in r._mapping if k not in ("id", "delivery_id",
                "task_id")) for r in run_rows], *states]  # fmt: skip

    started_slow, started_fast, *states = rows()
    assert started_fast == started_slow and states == [("running",), ("running",)]
    run = store.get_run(fast.id)
    assert (
        run is not None
        and run.started_at == at
        and run.lease_expires_at == at + timedelta(seconds=7.5)
    )
    # Finishing: the error path too (a different compiled statement).
    assert store.mark_failed(fast.id, "ValueError: x", now=until)
    with store._tx(write=True) as conn:  # the same statement through Connection.execute
        conn.execute(
            _finish_statement("sqlite", True),
            {"b_id": slow.id, "b_to": "failed", "b_now": until, "b_error": "ValueError: x"},
        )
        conn.execute(_sql.REFRESH_ONE, {"b_delivery": "d-slow"})
    finished_slow, finished_fast, *states = rows()
    assert finished_fast == finished_slow and states == [("failed",), ("failed",)]
    failed = store.get_run(fast.id)
    assert failed is not None and failed.duration_ms == pytest.approx(1750.0, abs=0.1)
    engine.dispose()
    store.dispose()


def test_the_cursor_path_steps_aside_for_observers_and_refuses_what_it_cannot_copy(
    tmp_path: Path,
) -> None:
    from sqlalchemy import bindparam

    from ghapp_celery.store._sqlite_fast import SQLiteStatement
    from ghapp_celery.store.models import runs

    store = DeliveryStore(f"sqlite:///{tmp_path}/store.sqlite")
    seen: list[str] = []
    # Query logging / OpenTelemetry hook cursor events: the hot statements must reach them.
    event.listen(store._engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    run, _ = store.record(make_delivery("d-observed"), PLANS, now=T0)
    seen.clear()
    assert store.start(run.id, lease_seconds=30, now=T0)
    assert store.mark_succeeded(run.id, now=T0 + timedelta(seconds=1))
    updates = [sql.split()[1] for sql in seen if sql.startswith("UPDATE")]
    assert updates == ["ghapp_handler_runs", "ghapp_deliveries"] * 2
    dialect = store._engine.dialect
    with pytest.raises(ValueError, match="IN lists"):
        SQLiteStatement(
            runs.update().where(runs.c.id.in_(bindparam("ids", expanding=True))), dialect
        )
    with pytest.raises(ValueError, match="result conversion"):
        SQLiteStatement(runs.update().returning(runs.c.started_at), dialect)
    store.dispose()


def _race(count: int, action: Callable[[int], Any]) -> list[Any]:
    """Run ``action(i)`` in ``count`` threads released together; re-raise any error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = action(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def test_claim_is_exclusive_under_eight_racing_threads(store: DeliveryStore) -> None:
    plans = [RunPlan(f"h{i}", f"t{i}", "q") for i in range(5)]
    runs = store.record(make_delivery("d-race"), plans, now=T0)
    store.mark_queued([run.id for run in runs], now=T0)
    for run in runs:
        results = _race(8, lambda _i, run_id=run.id: store.claim(run_id, lease_seconds=60))  # type: ignore[misc]
        winners = [result for result in results if result is not None]
        assert len(winners) == 1, f"{len(winners)} workers claimed run {run.handler}"
        assert winners[0].attempts == 1
        assert store.get_run(run.id).attempts == 1  # type: ignore[union-attr]


def test_expired_lease_lets_a_second_claim_win(store: DeliveryStore) -> None:
    run, _ = store.record(make_delivery("d-lease"), PLANS, now=T0)
    assert store.claim(run.id, lease_seconds=10, now=T0) is not None
    assert store.claim(run.id, lease_seconds=10, now=T0 + timedelta(seconds=9)) is None
    second = store.claim(run.id, lease_seconds=10, now=T0 + timedelta(seconds=11))
    assert second is not None and second.attempts == 2
    assert second.lease_expires_at == T0 + timedelta(seconds=21)


# -- transitions and the delivery state -----------------------------------------------------


def test_transitions_and_delivery_state(store: DeliveryStore) -> None:
    welcome, label = store.record(make_delivery("d-flow"), PLANS, now=T0)
    assert _delivery_state(store, "d-flow") == "received"
    store.mark_queued([welcome.id, label.id], now=T0 + timedelta(seconds=1))
    assert store.get_run(welcome.id).published_at == T0 + timedelta(seconds=1)  # type: ignore[union-attr]
    assert _delivery_state(store, "d-flow") == "queued"

    store.claim(welcome.id, lease_seconds=30, now=T0 + timedelta(seconds=2))
    assert _delivery_state(store, "d-flow") == "running"
    retry_at = T0 + timedelta(minutes=5)
    assert store.mark_retrying(welcome.id, "502", retry_at=retry_at, now=T0 + timedelta(seconds=3))
    run = store.get_run(welcome.id)
    assert run is not None and run.state is RunState.RETRYING and run.last_error == "502"
    assert run.lease_expires_at == retry_at + timedelta(seconds=30)  # past the countdown
    assert _delivery_state(store, "d-flow") == "running"
    assert not store.mark_retrying(welcome.id, "again")  # only a started run retries

    store.claim(welcome.id, lease_seconds=30, now=retry_at)
    assert store.mark_succeeded(welcome.id, now=retry_at + timedelta(milliseconds=1500))
    run = store.get_run(welcome.id)
    assert run is not None and run.state is RunState.SUCCEEDED and run.attempts == 2
    assert run.duration_ms == pytest.approx(1500.0)
    assert run.finished_at == retry_at + timedelta(milliseconds=1500)
    assert run.lease_expires_at is None
    assert _delivery_state(store, "d-flow") == "queued"  # label still waits
    assert not store.mark_failed(welcome.id, "late")  # a finished run is never overwritten
    assert store.get_run(welcome.id).state is RunState.SUCCEEDED  # type: ignore[union-attr]

    store.claim(label.id, lease_seconds=30, now=retry_at)
    assert store.mark_failed(label.id, "404 Not Found", now=retry_at + timedelta(seconds=1))
    assert _delivery_state(store, "d-flow") == "failed"
    assert [run.id for run in store.replay("d-flow")] == [label.id]
    assert _delivery_state(store, "d-flow") == "received"
    store.claim(label.id, lease_seconds=30)
    assert _delivery_state(store, "d-flow") == "running"
    assert store.mark_dead(label.id, "x" * 20_000)
    run = store.get_run(label.id)
    assert run is not None and run.state is RunState.DEAD and run.attempts == 2
    assert run.last_error is not None and 8_000 <= len(run.last_error) < 8_010
    assert _delivery_state(store, "d-flow") == "dead"
    assert not store.mark_succeeded("no-such-run")


def test_delivery_state_precedence() -> None:
    S = RunState
    assert delivery_state([]) == "succeeded"
    assert delivery_state([S.SUCCEEDED, S.SUCCEEDED]) == "succeeded"
    assert delivery_state([S.RECEIVED, S.SUCCEEDED]) == "received"
    assert delivery_state([S.RECEIVED, S.QUEUED]) == "queued"
    assert delivery_state([S.FAILED, S.QUEUED]) == "failed"
    assert delivery_state([S.FAILED, S.DEAD]) == "dead"
    assert delivery_state([S.DEAD, S.RETRYING]) == "running"
    assert delivery_state([S.STARTED, S.SUCCEEDED]) == "running"


def test_sql_delivery_state_matches_python_for_every_pair(store: DeliveryStore) -> None:
    run_a, run_b = store.record(make_delivery("d-pairs"), PLANS, now=T0)
    engine = store._engine  # white box: put the runs in each pair of states directly
    for state_a in RunState:
        for state_b in RunState:
            with engine.begin() as conn:
                for run_id, state in ((run_a.id, state_a), (run_b.id, state_b)):
                    conn.execute(
                        text("UPDATE ghapp_handler_runs SET state = :s WHERE id = :i"),
                        {"s": state.value, "i": run_id},
                    )
                _sql.refresh_delivery_states(conn, ["d-pairs"])
            expected = delivery_state([state_a, state_b])
            assert _delivery_state(store, "d-pairs") == expected, (state_a, state_b)


def test_last_two_runs_finishing_together_leave_the_delivery_succeeded(
    store: DeliveryStore,
) -> None:
    # Each worker recomputes the delivery state; without the delivery lock, two finishing at
    # once can each see the other still running and leave the delivery "running" for good.
    for i in range(15):
        runs = store.record(make_delivery(f"d-pair-{i}"), PLANS)
        for run in runs:
            store.claim(run.id, lease_seconds=60)
        ids = [run.id for run in runs]
        _race(2, lambda k, ids=ids: store.mark_succeeded(ids[k]))  # type: ignore[misc]
        assert _delivery_state(store, f"d-pair-{i}") == "succeeded"


# -- the sweeper -------------------------------------------------------------------------------


def test_due_for_sweep_finds_the_three_cases(store: DeliveryStore) -> None:
    plans = [RunPlan(name, f"t.{name}", "q") for name in "abcdefg"]
    runs = {run.handler: run for run in store.record(make_delivery("d-sweep"), plans, now=T0)}
    later = T0 + timedelta(minutes=5)
    # a: recorded at T0, never published -> due.   b: recorded, published at T0 -> not yet.
    store.mark_queued([runs["b"].id], now=T0)
    # c: published 20 minutes before the sweep -> the broker lost it.
    store.mark_queued([runs["c"].id], now=later - timedelta(minutes=20))
    # d: started, lease expired (worker died).   e: started, lease still live.
    store.claim(runs["d"].id, lease_seconds=60, now=T0)
    store.claim(runs["e"].id, lease_seconds=3600, now=T0)
    # f: retrying, waiting for a countdown past the sweep -> not due.   g: finished.
    store.claim(runs["f"].id, lease_seconds=60, now=T0)
    store.mark_retrying(runs["f"].id, "503", retry_at=later + timedelta(minutes=1), now=T0)
    store.claim(runs["g"].id, lease_seconds=60, now=T0)
    store.mark_dead(runs["g"].id, "gone", now=T0)

    due = store.due_for_sweep(now=later, unpublished_after=30, queued_after=600)
    assert sorted(run.handler for run in due) == ["a", "c", "d"]
    # A just-recorded run is not due: the intake is about to publish it.
    soon = store.due_for_sweep(now=T0 + timedelta(seconds=10))
    assert [run.handler for run in soon] == ["c"]  # c was published before T0
    # After its countdown and lease, a retrying run whose worker vanished is due as well.
    due = store.due_for_sweep(now=later + timedelta(minutes=3))
    assert "f" in {run.handler for run in due}


def test_sweep_is_oldest_first_and_limited(store: DeliveryStore) -> None:
    for i in range(5):
        store.record(make_delivery(f"d-old-{i}"), PLANS[:1], now=T0 + timedelta(seconds=i))
    due = store.due_for_sweep(now=T0 + timedelta(hours=1), limit=3)
    assert [run.delivery_id for run in due] == ["d-old-0", "d-old-1", "d-old-2"]


def test_republishing_takes_runs_off_the_sweep_list(store: DeliveryStore) -> None:
    a, b = store.record(make_delivery("d-repub"), PLANS, now=T0)
    store.claim(b.id, lease_seconds=10, now=T0)
    sweep_at = T0 + timedelta(minutes=1)
    assert {run.id for run in store.due_for_sweep(now=sweep_at)} == {a.id, b.id}
    store.mark_queued([a.id, b.id], now=sweep_at)
    assert store.due_for_sweep(now=sweep_at + timedelta(seconds=1)) == []
    run = store.get_run(b.id)  # the dead worker's run is queued again, its lease dropped
    assert run is not None and run.state is RunState.QUEUED and run.lease_expires_at is None
    assert _delivery_state(store, "d-repub") == "queued"


def test_mark_queued_never_takes_a_run_from_a_live_worker(store: DeliveryStore) -> None:
    # The worker can claim before the intake's mark_queued lands; the run must stay started.
    run, _ = store.record(make_delivery("d-fast"), PLANS, now=T0)
    store.claim(run.id, lease_seconds=60, now=T0 + timedelta(milliseconds=5))
    store.mark_queued([run.id], now=T0 + timedelta(milliseconds=10))
    assert store.get_run(run.id).state is RunState.STARTED  # type: ignore[union-attr]
    store.mark_succeeded(run.id)
    store.mark_queued([run.id])
    assert store.get_run(run.id).state is RunState.SUCCEEDED  # type: ignore[union-attr]
    store.mark_queued([])  # nothing to do, no error


# -- replay ------------------------------------------------------------------------------------


def test_replay(store: DeliveryStore) -> None:
    with pytest.raises(DeliveryNotFound) as caught:
        store.replay("nope")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, GitHubAppError)
    assert "nope" in str(caught.value)

    welcome, label = store.record(make_delivery("d-replay"), PLANS, now=T0)
    assert store.replay("d-replay") == []  # nothing failed: nothing to replay
    store.claim(welcome.id, lease_seconds=60)
    store.mark_dead(welcome.id, "boom")
    store.claim(label.id, lease_seconds=60)
    store.mark_succeeded(label.id)
    replayed = store.replay("d-replay", now=T0 + timedelta(days=2))
    assert [(run.id, run.state, run.attempts) for run in replayed] == [
        (welcome.id, RunState.RECEIVED, 1)
    ]
    assert _states(store, "d-replay") == {"welcome": RunState.RECEIVED, "label": RunState.SUCCEEDED}
    assert store.claim(welcome.id, lease_seconds=60) is not None


# -- reading -----------------------------------------------------------------------------------


def _seed_listing(store: DeliveryStore) -> list[Delivery]:
    deliveries = []
    for i in range(120):
        # Pairs share a timestamp so the id must break ties in the ordering and the cursor.
        delivery = make_delivery(
            f"d-{i:03d}",
            event=("issues", "push", "pull_request")[i % 3],
            installation_id=1 + i % 4,
            received_at=T0 + timedelta(seconds=i // 2),
        )
        deliveries.append(delivery)
        runs = store.record(delivery, PLANS[: 1 + i % 2])
        if i % 5 == 0:
            store.claim(runs[0].id, lease_seconds=60)
            store.mark_failed(runs[0].id, "bug")
    return deliveries


def test_list_deliveries_pages_and_filters(store: DeliveryStore) -> None:
    deliveries = _seed_listing(store)
    newest_first = sorted(deliveries, key=lambda d: (d.received_at, d.id), reverse=True)

    statements: list[str] = []
    engine = store._engine

    def count(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    event.listen(engine, "before_cursor_execute", count)
    try:
        while True:
            statements.clear()
            page = store.list_deliveries(limit=25, cursor=cursor)
            assert len(statements) == 2  # the page and its runs, never one query per delivery
            pages += 1
            for item in page.items:
                assert item.payload is None
                assert len(item.runs) == 1 + int(item.id[2:]) % 2
            seen.extend(item.id for item in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert pages == 5
    assert seen == [d.id for d in newest_first]

    pushes = store.list_deliveries(event="push", limit=500).items
    assert [d.id for d in pushes] == [d.id for d in newest_first if d.event == "push"]
    inst = store.list_deliveries(installation_id=3, limit=500).items
    assert {d.id for d in inst} == {d.id for d in deliveries if d.installation_id == 3}
    failed = store.list_deliveries(state="failed", limit=500).items
    assert {d.id for d in failed} == {f"d-{i:03d}" for i in range(0, 120, 5)}
    window = store.list_deliveries(
        since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=20), limit=500
    ).items
    assert [d.id for d in window] == [f"d-{i:03d}" for i in range(39, 19, -1)]
    combined = store.list_deliveries(event="issues", installation_id=1, limit=4)
    assert [d.id for d in combined.items] == ["d-108", "d-096", "d-084", "d-072"]
    assert combined.next_cursor is not None
    rest = store.list_deliveries(event="issues", installation_id=1, cursor=combined.next_cursor)
    assert [d.id for d in rest.items] == ["d-060", "d-048", "d-036", "d-024", "d-012", "d-000"]
    assert rest.next_cursor is None
    with pytest.raises(ValueError):
        store.list_deliveries(cursor="not-a-cursor")


def _cursor(*parts: object) -> str:
    """A cursor made by hand, in the store's encoding (base64 of a JSON pair)."""
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("0001-01-01T00:00:00+01:00", "d-1"),  # before year 1 once in UTC
        _cursor("2024-01-01T00:00:00", "d-1"),  # no offset
        _cursor("2024-01-01T00:00:00+00:00", "d\x001"),  # PostgreSQL refuses a NUL
        _cursor("2024-01-01T00:00:00+00:00", 5),
        _cursor("2024-01-01T00:00:00+00:00"),
    ],
)
def test_a_forged_cursor_is_a_value_error_not_an_outage(store: DeliveryStore, cursor: str) -> None:
    # Library callers (not only the status API, which turns it into a 400) get ValueError;
    # before, the first and third reached the database: OverflowError, or StoreUnavailable.
    with pytest.raises(ValueError, match="invalid cursor"):
        store.list_deliveries(cursor=cursor)


def test_payload_round_trip_of_a_real_delivery(store: DeliveryStore) -> None:
    payload = json.loads((FIXTURES / "issues" / "opened.json").read_text())
    store.record(make_delivery("d-real", payload=payload), PLANS)
    assert store.payload("d-real") == payload
    record = store.get_delivery("d-real")
    assert record is not None and record.payload == payload
    with pytest.raises(DeliveryNotFound):
        store.payload("nope")
    assert store.get_delivery("nope") is None and store.get_run("nope") is None


def test_payload_round_trip_of_five_megabytes(store: DeliveryStore) -> None:
    rng = random.Random(5)
    alphabet = string.ascii_letters + string.digits + "é✓ "
    payload = {
        "action": "synchronize",
        "files": [
            {"name": f"f{i}", "patch": "".join(rng.choices(alphabet, k=1000))} for i in range(5000)
        ],
    }
    assert len(json.dumps(payload)) > 5_000_000
    store.record(make_delivery("d-big", payload=payload), PLANS)
    assert store.payload("d-big") == payload


def test_counts(store: DeliveryStore) -> None:
    assert store.counts() == dict.fromkeys((state.value for state in RunState), 0)
    runs = store.record(make_delivery("d-1"), PLANS)
    runs += store.record(make_delivery("d-2"), PLANS)
    store.mark_queued([runs[0].id, runs[1].id])
    store.claim(runs[2].id, lease_seconds=60)
    counts = store.counts()
    assert counts["queued"] == 2 and counts["started"] == 1 and counts["received"] == 1
    assert sum(counts.values()) == 4


def test_purge_deletes_only_old_finished_deliveries(store: DeliveryStore) -> None:
    old, new = T0, T0 + timedelta(days=30)
    for delivery_id, received_at, outcome in [
        ("old-ok", old, "succeeded"),
        ("old-ping", old, None),
        ("old-failed", old, "failed"),
        ("old-running", old, "started"),
        ("new-ok", new, "succeeded"),
    ]:
        plans = [] if outcome is None else PLANS[:1]
        for run in store.record(make_delivery(delivery_id, received_at=received_at), plans):
            store.claim(run.id, lease_seconds=60)
            if outcome == "succeeded":
                store.mark_succeeded(run.id)
            elif outcome == "failed":
                store.mark_failed(run.id, "bug")
    ok_run = store.get_delivery("old-ok")
    assert store.purge(older_than=T0 + timedelta(days=7)) == 2
    remaining = {d.id for d in store.list_deliveries(limit=500).items}
    assert remaining == {"old-failed", "old-running", "new-ok"}
    assert ok_run is not None and store.get_run(ok_run.runs[0].id) is None  # runs went too
    assert sum(store.counts().values()) == 3


def test_naive_datetimes_are_refused(store: DeliveryStore) -> None:
    with pytest.raises(ValueError):
        store.record(make_delivery(), PLANS, now=datetime(2025, 1, 1))


# -- failures ----------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the socket is


def test_unreachable_postgres_raises_store_unavailable() -> None:
    port = _closed_port()
    store = DeliveryStore(f"postgresql+psycopg://ghapp:s3cr3t-pw@127.0.0.1:{port}/ghapp")
    with pytest.raises(StoreUnavailable) as caught:
        store.record(make_delivery(), PLANS)
    message = str(caught.value)
    assert "s3cr3t" not in message and str(port) not in message and "127.0.0.1" not in message
    assert caught.value.__cause__ is not None
    assert isinstance(caught.value, GitHubAppError)
    assert "s3cr3t" not in repr(store)
    with pytest.raises(StoreUnavailable):
        store.counts()


def test_unwritable_sqlite_location_raises_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    store = DeliveryStore(f"sqlite:///{blocker}/sub/store.sqlite")
    with pytest.raises(StoreUnavailable) as caught:
        store.record(make_delivery(), PLANS)
    assert str(blocker) not in str(caught.value)
    assert caught.value.__cause__ is not None


def test_store_without_schema_raises_store_unavailable(tmp_path: Path) -> None:
    store = DeliveryStore(f"sqlite:///{tmp_path}/bare.sqlite", auto_upgrade=False)
    with pytest.raises(StoreUnavailable):
        store.record(make_delivery(), PLANS)


# -- migrations --------------------------------------------------------------------------------


def test_upgrade_from_empty_and_twice(empty_url: str) -> None:
    store = DeliveryStore(empty_url, auto_upgrade=False)
    assert store.current_revision() is None
    store.upgrade()
    assert store.current_revision() == head_revision()
    run, _ = store.record(make_delivery("d-kept"), PLANS)
    store.upgrade()  # a no-op: same revision, data untouched
    assert store.current_revision() == head_revision()
    assert store.get_run(run.id) == run
    store.dispose()


def test_a_schema_from_a_newer_version_is_refused(empty_url: str) -> None:
    store = DeliveryStore(empty_url)
    store.upgrade()
    engine = create_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE ghapp_alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(ConfigurationError, match="0099"):
        DeliveryStore(empty_url).upgrade()
    store.dispose()


def test_first_use_upgrades_automatically(empty_url: str) -> None:
    store = DeliveryStore(empty_url)
    assert store.record(make_delivery(), PLANS)
    assert store.current_revision() == head_revision()
    store.dispose()


def test_migrations_match_the_models(empty_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    DeliveryStore(empty_url).upgrade()
    engine = create_engine(empty_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, *_: name != VERSION_TABLE,
            },
        )
        assert compare_metadata(context, metadata) == []
    engine.dispose()


def _open_fresh_store(url: str, barrier: Any, index: int) -> None:
    try:
        barrier.wait(timeout=20)
        store = DeliveryStore(url)
        store.record(make_delivery(f"d-proc-{index}"), PLANS)
        assert store.current_revision() == head_revision()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def test_processes_opening_a_fresh_sqlite_store_together(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared/store.sqlite"
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    processes = [
        context.Process(target=_open_fresh_store, args=(url, barrier, i)) for i in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    store = DeliveryStore(url)
    assert len(store.list_deliveries().items) == 4
    store.dispose()


def test_only_database_failures_count_as_an_outage() -> None:
    """A batch that failed on an outage fails as a whole; one bad statement's batch is retried
    write by write (store/_combine.py). Statements on SQLite's cursor raise sqlite3's own."""
    import sqlite3

    from ghapp_celery.store.engine import is_outage

    def wrapped(exc: Exception) -> StoreUnavailable:
        error = StoreUnavailable("The delivery store is unavailable")
        error.__cause__ = exc
        return error

    assert is_outage(wrapped(sqlite3.OperationalError("database is locked")))
    assert is_outage(sqlite3.OperationalError("disk I/O error"))
    assert not is_outage(wrapped(sqlite3.IntegrityError("UNIQUE constraint failed")))
    assert not is_outage(sqlite3.ProgrammingError("Incorrect number of bindings"))
    assert not is_outage(ValueError("not a database error"))
