"""Store faults while signed deliveries arrive: PostgreSQL stopped and restarted, a long
PostgreSQL table lock, a long SQLite write lock. The two locks are longer than the intake's
deadline plus the margin, so an intake that waits them out answers too late."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
import pytest

from tests._postgres import PostgresServer
from tests._redis import RedisServer
from tests._workers import sqlite_broker_url

from .harness import DEADLINE, LEASE, MARGIN, Deployment, deployment, wait_until
from .invariants import STORE_OUTAGE, Report, check
from .load import Load

pytestmark = pytest.mark.faults

AFTER = 4.0  # seconds of load after the fault, before waiting for every run to end
OUTAGE = 4.0  # PostgreSQL down; with its restart, well within a lease (see harness.LEASE)
STALL = 5.0  # a lock held this long: past the deadline and its margin, within 2/3 of a lease
assert STALL > DEADLINE + MARGIN and STALL + LEASE / 3 < LEASE


def _during(load: Load, start: float, end: float) -> list[str]:
    return [a.delivery_id for a in load.snapshot() if a.kind == "signed" and start <= a.sent <= end]


@pytest.mark.timeout(150)
def test_postgres_stop_and_restart(
    tmp_path: Path, pg_store: str, faults_postgres: PostgresServer
) -> None:
    """PostgreSQL is stopped with ``-m immediate`` while handlers run (their outcome writes
    and lease renewals fail meanwhile) and deliveries arrive (answered 503), then started
    again. It is stopped while a table lock has held every process's statements for a
    second, so statements die mid-flight with their parameters (payloads) bound: the log
    checks see what a failed statement logs. Every delivery answered 2xx runs; nothing runs
    twice: the outcome writes are retried through the outage, shorter than
    GITHUBAPP_OUTCOME_WRITE_TIMEOUT."""
    with (
        RedisServer(tmp_path / "redis") as redis,
        deployment(tmp_path, redis.url, pg_store) as deploy,
    ):
        load = Load(deploy.url).start()
        deploy.warm_up()
        executing = wait_until(deploy.open_executions, 30, "handlers to be executing")
        with _pg_lock(pg_store):
            time.sleep(1.0)
            stopped_at = time.time()
            faults_postgres.stop()
        time.sleep(OUTAGE)
        faults_postgres.start()
        back_at = time.time()
        time.sleep(AFTER)
        load.stop()
        settled = deploy.wait_settled()
        exits = deploy.stop()
    report = check(deploy, load, allowed=STORE_OUTAGE, unexpected_exits=exits)
    refused = [
        a for a in load.snapshot() if a.status == 503 and stopped_at - 1 <= a.sent <= back_at
    ]
    cut_statements = sum(
        path.read_text(errors="replace").count("[SQL: ") for path in deploy.log_files()
    )
    report.facts.update(
        settled=settled,
        executing_at_stop=len(executing),
        refused_during_outage=len(refused),
        failed_statements_logged=cut_statements,
        outage=round(back_at - stopped_at, 2),
    )
    print(report)
    report.assert_held()
    # The fault bit: handlers were running, deliveries were refused during the outage, and
    # statements failed mid-flight (and were logged).
    assert executing and refused and cut_statements, str(report)


def _lock_test(deploy: Deployment, load: Load, hold: AbstractContextManager[None]) -> Report:
    """Hold ``hold`` (a lock) for STALL seconds while handlers run and deliveries arrive."""
    deploy.warm_up()
    executing = wait_until(deploy.open_executions, 30, "handlers to be executing")
    with hold:
        locked_at = time.time()
        time.sleep(STALL)
        released_at = time.time()
    time.sleep(AFTER)
    load.stop()
    settled = deploy.wait_settled()
    exits = deploy.stop()
    report = check(deploy, load, unexpected_exits=exits)
    during = _during(load, locked_at, released_at)
    report.facts.update(
        settled=settled,
        executing_at_lock=len(executing),
        sent_during_lock=len(during),
        lock=round(released_at - locked_at, 2),
    )
    print(report)
    # The fault bit: handlers were running and deliveries arrived while the store was held.
    assert executing and len(during) >= 5, str(report)
    return report


@contextmanager
def _pg_lock(url: str) -> Iterator[None]:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    conn = psycopg.connect(dsn)
    try:
        conn.execute("LOCK TABLE ghapp_deliveries, ghapp_handler_runs IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        with contextlib.suppress(psycopg.Error):  # the server may have been stopped meanwhile
            conn.rollback()
        conn.close()


@contextmanager
def _sqlite_lock(path: Path) -> Iterator[None]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.mark.timeout(150)
def test_postgres_long_lock(tmp_path: Path, pg_store: str) -> None:
    """A connection holds ``LOCK TABLE ghapp_deliveries, ghapp_handler_runs IN ACCESS
    EXCLUSIVE MODE`` for longer than the deadline: every statement of every process waits.
    Deliveries are answered within the deadline anyway (503 when not recorded by then);
    claims and renewals that waited get full leases from their commit, so nothing runs
    twice."""
    with (
        RedisServer(tmp_path / "redis") as redis,
        deployment(tmp_path, redis.url, pg_store) as deploy,
    ):
        load = Load(deploy.url).start()
        report = _lock_test(deploy, load, _pg_lock(pg_store))
    report.assert_held()


@pytest.mark.timeout(150)
def test_sqlite_store_lock(tmp_path: Path) -> None:
    """Embedded broker and SQLite store. A second connection holds ``BEGIN EXCLUSIVE`` on the
    store for longer than the deadline: every write waits (the busy timeout is 30 s).
    Deliveries are answered within the deadline anyway; nothing runs twice."""
    store = tmp_path / "store.sqlite"
    broker = sqlite_broker_url(tmp_path / "broker.sqlite")
    with deployment(tmp_path, broker, f"sqlite:///{store}") as deploy:
        load = Load(deploy.url).start()
        report = _lock_test(deploy, load, _sqlite_lock(store))
    report.assert_held()
