"""A store that stalls: a write that waited for its lock must not write a stale lease.

Issue 10, finding 1: with an 80 s SQLite stall a run executed five times, three at once. The
claim took its timestamp before waiting for the write lock, so a claim committing 80 s late
wrote a lease that had already expired, and the next late claim beat it. Here a second
connection holds the lock (SQLite ``BEGIN EXCLUSIVE``, PostgreSQL ``LOCK TABLE``) for longer
than the lease while a claim waits; once it is let go, the claim must hold a full lease and
a second claim must lose.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text

from ghapp_celery.store import DeliveryStore, RunPlan, RunState
from ghapp_celery.webhooks import Delivery
from tests._postgres import PostgresServer, postgres_server  # noqa: F401  (fixture)

LEASE = 1.0
STALL = 2.5  # longer than the lease: a lease computed before the wait has expired by then


def _delivery() -> Delivery:
    return Delivery(
        id=str(uuid.uuid4()),
        event="issues",
        action="opened",
        installation_id=42,
        payload={"action": "opened"},
    )


@pytest.fixture(scope="module")
def pg_url(request: pytest.FixtureRequest) -> str:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database(f"stall_{uuid.uuid4().hex[:8]}")
    DeliveryStore(url).upgrade()
    return url


Blocker = Callable[[], AbstractContextManager[None]]


def _sqlite_blocker(path: Path) -> Blocker:
    @contextmanager
    def hold() -> Iterator[None]:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("COMMIT")
            conn.close()

    return hold


def _pg_blocker(url: str) -> Blocker:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")

    @contextmanager
    def hold() -> Iterator[None]:
        with psycopg.connect(dsn) as conn:
            conn.execute("LOCK TABLE ghapp_deliveries, ghapp_handler_runs IN ACCESS EXCLUSIVE MODE")
            yield
            conn.rollback()

    return hold


@pytest.fixture(params=["sqlite", "postgresql"])
def stalled(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[DeliveryStore, Blocker]]:
    if request.param == "sqlite":
        path = tmp_path / "store.sqlite"
        store = DeliveryStore(f"sqlite:///{path}")
        store.upgrade()
        blocker = _sqlite_blocker(path)
    else:
        url: str = request.getfixturevalue("pg_url")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE ghapp_handler_runs, ghapp_deliveries"))
        engine.dispose()
        store = DeliveryStore(url)
        blocker = _pg_blocker(url)
    yield store, blocker
    store.dispose()


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = call()
        except Exception as exc:  # reported by the test
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def _stall_while(blocker: Blocker, call: Callable[[], Any]) -> tuple[Any, datetime]:
    """Run ``call`` in a thread while the store is held; return its value and the release."""
    with blocker():
        thread, out = _in_thread(call)
        time.sleep(STALL)
        assert thread.is_alive(), "the write did not wait for the lock"
        released = datetime.now(UTC)
    thread.join(timeout=30)
    assert "error" not in out, out.get("error")
    return out["value"], released


def test_a_claim_that_waited_for_the_lock_holds_a_full_lease(
    stalled: tuple[DeliveryStore, Blocker],
) -> None:
    store, blocker = stalled
    [run] = store.record(_delivery(), [RunPlan("h", "t.h", "q")], queued=True)

    won, released = _stall_while(blocker, lambda: store.start(run.id, lease_seconds=LEASE))

    assert won is True
    stored = store.get_run(run.id)
    assert stored is not None and stored.state is RunState.STARTED
    assert stored.lease_expires_at is not None
    # The lease runs from when the claim was written, not from when it was asked for.
    assert stored.lease_expires_at >= released + timedelta(seconds=LEASE * 0.9)
    # The sweeper does not see it as abandoned, and a duplicate message's claim loses.
    assert run.id not in {r.id for r in store.due_for_sweep(unpublished_after=0)}
    assert store.start(run.id, lease_seconds=LEASE) is False


def test_late_duplicate_claims_lose_to_the_first(stalled: tuple[DeliveryStore, Blocker]) -> None:
    """Several claims of one run queued behind the stall (the sweeper republished it): only
    the first to commit wins, the others find its lease live."""
    store, blocker = stalled
    [run] = store.record(_delivery(), [RunPlan("h", "t.h", "q")], queued=True)
    started = []
    with blocker():
        for _ in range(4):  # asked a lease apart, as sweeps republishing during the stall
            started.append(_in_thread(lambda: store.start(run.id, lease_seconds=LEASE)))
            time.sleep(LEASE * 1.1)
    for thread, _ in started:
        thread.join(timeout=30)
    outcomes = [out.get("value", out.get("error")) for _, out in started]
    assert sorted(outcomes, key=str) == [False, False, False, True]
    stored = store.get_run(run.id)
    assert stored is not None and stored.attempts == 1


def test_a_renewal_that_waited_extends_from_its_commit(
    stalled: tuple[DeliveryStore, Blocker],
) -> None:
    store, blocker = stalled
    [run] = store.record(_delivery(), [RunPlan("h", "t.h", "q")], queued=True)
    assert store.start(run.id, lease_seconds=LEASE)

    renewed, released = _stall_while(
        blocker, lambda: store.renew_leases([run.id], lease_seconds=LEASE)
    )

    assert renewed == 1
    stored = store.get_run(run.id)
    assert stored is not None and stored.lease_expires_at is not None
    assert stored.lease_expires_at >= released + timedelta(seconds=LEASE * 0.9)
    assert store.start(run.id, lease_seconds=LEASE) is False
