"""A store outage while handlers finish: their outcomes are written late, never re-run.

Issue 10, finding 4: during a 7 s PostgreSQL outage, four runs raised StoreUnavailable in
``mark_succeeded`` and ran a second time after their lease expired. Here a real worker runs
journaled handlers on PostgreSQL, the server is stopped (``-m immediate``) while they run and
started again after they returned; every run must end succeeded, executed exactly once, with
the sweeper running meanwhile as in production.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ghapp_celery import GitHubApp
from ghapp_celery.store import DeliveryStore, RunState, StoreUnavailable
from ghapp_celery.testing import serve
from ghapp_celery.webhooks import signed_request
from tests import journalapp
from tests._postgres import PostgresServer, find_pg_bin, start_postgres
from tests._workers import CeleryWorker, sqlite_broker_url
from tests.conftest import IN_CI

SECRET = "outage-secret"
LEASE = 10.0  # the outage below is shorter: no lease may lapse
OUTAGE = 4.0
RUNS = 4


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this module's own, since the test stops it."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    server = start_postgres(bin_dir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(Path(server.data_dir).parent, ignore_errors=True)


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(180)
def test_outcomes_written_after_a_postgres_outage_run_nothing_twice(
    own_postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = own_postgres.create_database("outage")
    DeliveryStore(url).upgrade()
    env = {
        "GITHUBAPP_DATABASE_URL": url,
        "GITHUBAPP_WEBHOOK_SECRET": SECRET,
        "GITHUBAPP_DATA_DIR": str(tmp_path / "data"),
        "CELERY_BROKER_URL": sqlite_broker_url(tmp_path / "broker.sqlite"),
        "GHAPP_TEST_STATE_DIR": str(tmp_path / "state"),
        "GHAPP_TEST_HANDLER_SECONDS": "1.0",
        "GITHUBAPP_RUN_LEASE": str(LEASE),
        "GITHUBAPP_OUTCOME_WRITE_TIMEOUT": "60",
        "GITHUBAPP_SWEEP_UNPUBLISHED_AFTER": "0",
        "GITHUBAPP_SWEEP_QUEUED_AFTER": "30",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app: GitHubApp = journalapp.build()
    journal = tmp_path / "state" / "journal"

    with (
        CeleryWorker(
            "tests.journalapp:celery",
            env["CELERY_BROKER_URL"],
            tmp_path / "workers",
            pool="threads",
            concurrency=8,
            queue="github.default,github.issues",
            env=env,
        ),
        serve(app.web) as web,  # type: ignore[attr-defined]
    ):
        delivery_ids = []
        for _ in range(RUNS):
            delivery_id = str(uuid.uuid4())
            body, headers = signed_request(
                "issues", {"action": "opened"}, secret=SECRET, delivery_id=delivery_id
            )
            answer = httpx.post(f"{web}/webhooks/github/", content=body, headers=headers)
            assert answer.status_code == 202, answer.text
            delivery_ids.append(delivery_id)

        _wait(lambda: len(journalapp.executions(journal)) == RUNS, 60, "every run to start")
        own_postgres.stop()  # the handlers are still sleeping: they return during the outage
        outage_end = time.monotonic() + OUTAGE
        while time.monotonic() < outage_end:
            _sweep(app)
            time.sleep(0.5)
        own_postgres.start()

        def all_succeeded() -> bool:
            _sweep(app)
            states = [_run_state(app, d) for d in delivery_ids]
            return all(state is RunState.SUCCEEDED for state in states)

        _wait(all_succeeded, 60, "every run to succeed")
        # Past a whole lease: a run whose outcome was lost would have been re-run by now.
        time.sleep(LEASE + 1)
        _sweep(app)

    executions = journalapp.executions(journal)
    assert len(executions) == RUNS
    for run_id, runs in executions.items():
        assert len(runs) == 1, f"run {run_id} executed {len(runs)} times: {runs}"
        assert runs[0][1] is not None
    for delivery_id in delivery_ids:
        record = app.store.get_delivery(delivery_id, with_payload=False)
        assert record is not None
        assert [(r.state, r.attempts) for r in record.runs] == [(RunState.SUCCEEDED, 1)]


def _sweep(app: GitHubApp) -> None:
    with contextlib.suppress(StoreUnavailable):  # the outage: the sweeper's reads fail too
        app.sweep()


def _run_state(app: GitHubApp, delivery_id: str) -> RunState | None:
    try:
        record = app.store.get_delivery(delivery_id, with_payload=False)
    except StoreUnavailable:
        return None
    return record.runs[0].state if record and record.runs else None
