"""The production combination end to end: Redis broker, PostgreSQL store, workers per queue.

CELERY_BROKER_URL points at a redis-server this module starts, GITHUBAPP_DATABASE_URL at a
fresh database on the PostgreSQL server the session starts. The schema is created the way a
deploy does it (``ghapp-celery db upgrade``), deliveries arrive over HTTP, and two workers with
different ``-Q`` show that the queue list is what decides which handlers a worker runs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from ghapp_celery import GitHubApp, cli
from ghapp_celery.store.migrate import head_revision
from ghapp_celery.testing import serve
from ghapp_celery.webhooks import signed_request
from tests._postgres import PostgresServer, postgres_server  # noqa: F401  (fixture)
from tests._redis import redis_server
from tests._workers import CeleryWorker
from tests.payloads import load_payload
from tests.test_background import SECRET, environment, issue, make_app, only_run, post, wait_for

SCHEMA_TABLES = {"ghapp_deliveries", "ghapp_handler_runs", "ghapp_alembic_version"}


def fresh_database(server: PostgresServer) -> str:
    return server.create_database(f"ghapp_prod_{uuid.uuid4().hex[:12]}")


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def rows(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()


def executed(app: GitHubApp, worker: CeleryWorker) -> dict[str, int]:
    """Task name -> how many this worker ran, from Celery's remote control (Redis has it)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        replies = app.celery.control.inspect([worker.nodename], timeout=2).stats() or {}
        if worker.nodename in replies:
            return dict(replies[worker.nodename].get("total", {}))
        time.sleep(0.2)
    raise AssertionError(f"{worker.nodename} did not answer inspect stats:\n{worker.log_tail()}")


@pytest.fixture(scope="module")
def pg(request: pytest.FixtureRequest) -> PostgresServer:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def test_db_upgrade_creates_the_schema_and_reports_the_head_revision(
    pg: PostgresServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = fresh_database(pg)
    assert not tables(url) & SCHEMA_TABLES
    monkeypatch.setenv("GITHUBAPP_DATABASE_URL", url)
    head = head_revision()
    assert head

    assert cli.main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == f"Store at revision {head}"
    assert tables(url) >= SCHEMA_TABLES
    assert rows(url, "SELECT version_num FROM ghapp_alembic_version") == [(head,)]

    # A second deploy runs it again: nothing to do, same answer.
    assert cli.main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == f"Store at revision {head}"


def test_workers_take_only_their_queues_on_redis_with_postgresql(
    tmp_path: Path, pg: PostgresServer, broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_database(pg)
    env = {
        **environment(tmp_path, broker),
        "GITHUBAPP_DATABASE_URL": url,
        # Longer than any handler here: Redis must not hand a running task to another worker.
        "GITHUBAPP_VISIBILITY_TIMEOUT": "120",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["db", "upgrade"]) == 0  # the deploy step, before anything serves

    app = make_app(monkeypatch, env)
    assert app.settings.store_url() == url
    assert app.celery.conf.broker_url == broker

    issues_worker = CeleryWorker(
        "tests.bgapp:celery",
        broker,
        tmp_path / "issues-worker",
        pool="threads",  # async, I/O-bound handlers
        concurrency=4,
        queue="github.issues",
        env=env,
        ready="ping",
        ping_app=app.celery,
        name="issues",
    )
    bulk_worker = CeleryWorker(
        "tests.bgapp:celery",
        broker,
        tmp_path / "bulk-worker",
        pool="prefork",  # forks: the store must open its own PostgreSQL connections
        concurrency=1,
        queue="github.default,github.bulk",
        env=env,
        ready="ping",
        ping_app=app.celery,
        name="bulk",
    )
    with serve(app.web) as web, issues_worker:  # type: ignore[attr-defined]
        push_body, push_headers = signed_request(
            "push", load_payload("push/default.with-installation.json"), secret=SECRET
        )
        push_id = push_headers["X-GitHub-Delivery"]
        response = post(web, push_body, push_headers)
        assert response.status_code == 202, response.text
        assert [(r["queue"], r["state"]) for r in response.json()["runs"]] == [
            ("github.bulk", "queued")
        ]
        # Posted after the push: the issues worker runs these and never touches the push.
        issue_ids = []
        for action in ("opened", "edited", "labeled"):  # labeled: two 502s, then success
            body, headers, delivery_id = issue(action)
            assert post(web, body, headers).status_code == 202
            issue_ids.append(delivery_id)
        for delivery_id in issue_ids:
            run = only_run(wait_for(app, delivery_id))
            assert run.state.value == "succeeded", issues_worker.log_tail()
        assert only_run(wait_for(app, issue_ids[-1])).attempts == 3
        push_run = only_run(app.store.get_delivery(push_id, with_payload=False))
        assert (push_run.state.value, push_run.attempts) == ("queued", 0)

        with bulk_worker:
            push_run = only_run(wait_for(app, push_id))
            assert (push_run.state.value, push_run.queue) == ("succeeded", "github.bulk")
            by_bulk = executed(app, bulk_worker)
        by_issues = executed(app, issues_worker)

    # Each worker ran exactly the tasks of its queues.
    assert by_bulk == {"github.push:tests.bgapp.noop": 1}
    assert set(by_issues) == {
        "github.issues.opened:tests.bgapp.opened",
        "github.issues.edited:tests.bgapp.edited_sync",
        "github.issues.labeled:tests.bgapp.flaky",
    }
    # What the store says is in PostgreSQL itself, not in a SQLite file next to the app.
    assert not (Path(env["GITHUBAPP_DATA_DIR"]) / "store.sqlite").exists()
    stored = rows(
        url,
        "SELECT d.event, d.state, r.queue, r.state, r.attempts FROM ghapp_deliveries d "
        "JOIN ghapp_handler_runs r ON r.delivery_id = d.id ORDER BY r.queue, r.attempts",
    )
    assert [tuple(row) for row in stored] == [
        ("push", "succeeded", "github.bulk", "succeeded", 1),
        ("issues", "succeeded", "github.issues", "succeeded", 1),
        ("issues", "succeeded", "github.issues", "succeeded", 1),
        ("issues", "succeeded", "github.issues", "succeeded", 3),
    ]
    # Nothing left for the sweeper.
    assert app.sweep().as_dict() == {
        "republished": 0,
        "failed": 0,
        "broker_rows_deleted": 0,
        "oauth_rows_deleted": 0,
    }
