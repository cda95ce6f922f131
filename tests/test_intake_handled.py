"""Deliveries answered without background runs are recorded too (issue 12, 2.5): a ping, an
event no handler listens to, a delivery handled inline. After the answer, off the request
path; `ghapp-celery deliveries show` finds them, and a store outage costs only the record."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ghapp_celery import GitHubApp
from ghapp_celery.store import DeliveryState, DeliveryStore
from ghapp_celery.testing import serve, signed_request
from tests.payloads import load_payload

SECRET = "handled-secret"
ROUTE = "/webhooks/github/"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / ".ghapp"
    monkeypatch.setenv("GITHUBAPP_DATA_DIR", str(path))
    monkeypatch.delenv("GITHUBAPP_DATABASE_URL", raising=False)
    return path


def make_app(**kwargs: Any) -> tuple[FastAPI, GitHubApp]:
    app = FastAPI()
    github_app = GitHubApp(app, github_app_id=1, github_app_secret=SECRET, **kwargs)
    return app, github_app


def post(
    client: httpx.Client | TestClient, event: str, payload: dict[str, Any], delivery: str
) -> Any:
    body, headers = signed_request(event, payload, secret=SECRET, delivery_id=delivery)
    return client.post(ROUTE, content=body, headers=headers)


def wait_for(store: DeliveryStore, delivery_id: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = store.get_delivery(delivery_id, with_payload=False)
        if record is not None:
            return record
        time.sleep(0.02)
    raise AssertionError(f"delivery {delivery_id} was not recorded within {timeout} s")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ghapp_celery.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
        timeout=60,
    )


@pytest.fixture
def served(data_dir: Path) -> Iterator[tuple[str, GitHubApp]]:
    app, github_app = make_app()

    @github_app.on("issues.opened")
    def opened() -> str:
        return "seen"

    with serve(app) as url:
        yield url, github_app


def test_a_ping_and_an_inline_delivery_are_shown_by_the_cli(
    served: tuple[str, GitHubApp], data_dir: Path, tmp_path: Path
) -> None:
    url, github_app = served
    ping, opened = str(uuid.uuid4()), str(uuid.uuid4())
    with httpx.Client(base_url=url) as client:
        assert (
            post(client, "ping", load_payload("ping/default.json"), ping).json()["status"] == "MISS"
        )
        answer = post(client, "issues", load_payload("issues/opened.json"), opened)
        assert answer.json() == {"status": "HIT", "calls": {"opened": "seen"}}
    wait_for(github_app.store, opened)

    shown = cli("deliveries", "show", ping, cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    record = json.loads(shown.stdout)
    assert (record["id"], record["event"], record["state"]) == (ping, "ping", "succeeded")
    assert record["runs"] == []

    listed = cli("deliveries", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert ping in listed.stdout and opened in listed.stdout


def test_a_failed_inline_handler_is_recorded_failed_and_a_good_redelivery_succeeded(
    data_dir: Path,
) -> None:
    app, github_app = make_app()
    calls: list[int] = []

    @github_app.on("issues.opened")
    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first time unlucky")

    delivery = str(uuid.uuid4())
    payload = load_payload("issues/opened.json")
    with TestClient(app) as client:
        assert post(client, "issues", payload, delivery).status_code == 500
        assert wait_for(github_app.store, delivery).state == DeliveryState.FAILED
        assert post(client, "issues", payload, delivery).status_code == 200
        deadline = time.monotonic() + 10
        while github_app.store.get_delivery(delivery, with_payload=False).redeliveries == 0:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the redelivery was not recorded"
            time.sleep(0.02)
    record = github_app.store.get_delivery(delivery, with_payload=True)
    assert record is not None
    assert (record.state, record.redeliveries) == (DeliveryState.SUCCEEDED, 1)
    assert record.payload == payload  # the payload is kept, as for background deliveries


def test_shutdown_writes_what_is_still_queued(data_dir: Path) -> None:
    app, github_app = make_app()
    ids = [str(uuid.uuid4()) for _ in range(50)]
    with TestClient(app) as client:
        for delivery in ids:
            assert (
                post(client, "ping", load_payload("ping/default.json"), delivery).status_code == 200
            )
    # The lifespan's shutdown has run: no waiting here.
    found = {d.id for d in github_app.store.list_deliveries(limit=100).items}
    assert set(ids) <= found


def test_the_setting_off_keeps_only_deliveries_with_background_runs(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUBAPP_RECORD_HANDLED_DELIVERIES", "false")
    app, github_app = make_app()
    delivery = str(uuid.uuid4())
    with TestClient(app) as client:
        assert post(client, "ping", load_payload("ping/default.json"), delivery).status_code == 200
    assert github_app.store.get_delivery(delivery) is None


def test_an_unreachable_store_costs_the_record_not_the_answer(
    data_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 9 (discard) on loopback refuses connections: every write fails at once.
    monkeypatch.setenv(
        "GITHUBAPP_DATABASE_URL", "postgresql+psycopg://nobody:secret-word@127.0.0.1:9/none"
    )
    app, github_app = make_app()

    @github_app.on("issues.opened")
    def opened() -> str:
        return "handled"

    caplog.set_level(logging.WARNING, logger="ghapp_celery")
    with TestClient(app) as client:
        answer = post(client, "issues", load_payload("issues/opened.json"), str(uuid.uuid4()))
        assert answer.json() == {"status": "HIT", "calls": {"opened": "handled"}}
    warnings = [r for r in caplog.records if "Could not record 1 handled" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert warnings[0].exc_info is None
    assert "secret-word" not in caplog.text and "Traceback" not in caplog.text
