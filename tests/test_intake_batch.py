"""Deliveries posted at once are recorded and published in batches: fewer commits than
deliveries, one answer per delivery with its own runs, and a delivery the store refuses
fails alone (real HTTP through uvicorn, the SQLite store, the embedded broker; no worker)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, event

from ghapp_celery import GitHubApp
from ghapp_celery.store import DeliveryStore, RunPlan, RunState, StoreUnavailable
from ghapp_celery.testing import serve
from tests._workers import sqlite_broker_url
from tests.test_background import SECRET, environment, issue, make_app
from tests.test_store import make_delivery


def count_commits(app: GitHubApp) -> list[int]:
    commits = [0]

    @event.listens_for(app.store._engine, "commit")
    def on_commit(conn: Connection) -> None:
        commits[0] += 1

    return commits


async def post_all(url: str, requests: list[tuple[bytes, dict[str, str]]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(
            *(client.post("/webhooks/github/", content=b, headers=h) for b, h in requests)
        )


def test_concurrent_deliveries_share_commits_and_each_gets_its_own_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = tmp_path / "broker.sqlite"
    env = environment(tmp_path, sqlite_broker_url(broker)) | {"GITHUBAPP_SCHEDULE_THREADS": "1"}
    app = make_app(monkeypatch, env)
    app.store.upgrade()
    commits = count_commits(app)
    posted = [issue("opened") for _ in range(60)]
    # Hold the one scheduler thread in the store's writer, so the 60 requests queue up.
    release = threading.Event()
    holder = threading.Thread(target=app.store._write, args=(lambda conn: release.wait(10),))
    with serve(app.web) as url:  # type: ignore[attr-defined]
        holder.start()
        threading.Timer(1.0, release.set).start()  # long enough for all 60 to arrive
        answers = asyncio.run(post_all(url, [(b, h) for b, h, _ in posted]))
    holder.join()
    # Far fewer transactions than deliveries (one per batch, plus the holder's).
    assert commits[0] < 30, commits[0]
    assert [a.status_code for a in answers] == [202] * 60
    for answer, (_, _, delivery_id) in zip(answers, posted, strict=True):
        body = answer.json()
        assert body["delivery"] == delivery_id and body["status"] == "QUEUED"
        (run,) = body["runs"]
        assert run["state"] == "queued"
        stored = app.store.get_run(run["id"])
        assert stored is not None and stored.delivery_id == delivery_id
    with sqlite3.connect(broker) as db:
        assert db.execute("SELECT count(*) FROM kombu_message").fetchone()[0] == 60


def test_record_many_answers_each_delivery_and_a_bad_one_fails_alone(tmp_path: Path) -> None:
    store = DeliveryStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    good = [make_delivery() for _ in range(3)]
    plan = [RunPlan("welcome", "ghapp.welcome", "github.issues")]
    broken: list[Any] = [RunPlan(None, "ghapp.x", "github.issues")]  # type: ignore[arg-type]
    items = [(good[0], plan), (make_delivery(), broken), (good[1], plan), (good[2], plan)]
    answers = store.record_many(items, queued=True)
    assert isinstance(answers[1], StoreUnavailable)  # NOT NULL handler: refused
    for answer, delivery in zip([answers[0], *answers[2:]], good, strict=True):
        assert isinstance(answer, list) and [r.delivery_id for r in answer] == [delivery.id]
    assert store.counts()[RunState.QUEUED] == 3
    store.dispose()


def test_a_store_outage_answers_503_for_every_delivery_of_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(tmp_path, sqlite_broker_url(tmp_path / "broker.sqlite"))
    app = make_app(monkeypatch, env)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("the database is down")

    monkeypatch.setattr(app.store, "record_many", down)
    posted = [issue("opened", str(uuid.uuid4())) for _ in range(5)]
    with serve(app.web) as url:  # type: ignore[attr-defined]
        answers = asyncio.run(post_all(url, [(b, h) for b, h, _ in posted]))
    assert [a.status_code for a in answers] == [503] * 5
    assert all(a.json()["error"] == "store_unavailable" for a in answers)
    assert "down" not in answers[0].text and SECRET not in answers[0].text


def test_shutdown_ends_the_scheduler_threads_and_a_restart_brings_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    env = environment(tmp_path, sqlite_broker_url(tmp_path / "broker.sqlite"))
    app = make_app(monkeypatch, env)

    def scheduler_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("ghapp-schedule-")]

    before = set(scheduler_threads())
    for _ in range(2):  # a second start after the first shutdown works the same
        with TestClient(app.web) as client:  # type: ignore[attr-defined]
            body, headers, _ = issue("opened")
            assert (
                client.post("/webhooks/github/", content=body, headers=headers).status_code == 202
            )
            started = set(scheduler_threads()) - before
            assert len(started) == 2  # GITHUBAPP_SCHEDULE_THREADS' default
        for thread in started:
            thread.join(5)
            assert not thread.is_alive()
