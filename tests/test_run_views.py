"""What the status API and the CLI say about a run (issue 12, 2.6 and 2.7), with real workers.

- A run whose worker died says so (``lease_expired``) while it waits for the sweeper.
- A run that succeeded after failed attempts shows their error as ``earlier_error``, not as
  its ``last_error``.
- A failure's traceback is in the worker's log once.
- The status API's errors have the webhook route's shape.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ghapp_celery import GitHubApp
from ghapp_celery.testing import serve, signed_request
from tests._workers import CeleryWorker, sqlite_broker_url
from tests.payloads import load_payload

SECRET = "views-secret"
TOKEN = "views-status-token"
PREFIX = "/webhooks/github/status"
QUEUES = "github.issues,github.default"


def environment(tmp: Path) -> dict[str, str]:
    return {
        "GITHUBAPP_DATA_DIR": str(tmp / "data"),
        "GITHUBAPP_WEBHOOK_SECRET": SECRET,
        "GITHUBAPP_STATUS_TOKEN": TOKEN,
        "CELERY_BROKER_URL": sqlite_broker_url(tmp / "broker.sqlite"),
        "GHAPP_TEST_STATE_DIR": str(tmp / "state"),
        "GITHUBAPP_RUN_LEASE": "1.5",
    }


class Served:
    def __init__(self, app: GitHubApp, url: str, env: dict[str, str], worker: CeleryWorker):
        self.app, self.url, self.env, self.worker = app, url, env, worker

    def deliver(self, action: str) -> str:
        payload = load_payload("issues/opened.json")
        payload["action"] = action
        payload["installation"] = {"id": 77}
        delivery = str(uuid.uuid4())
        body, headers = signed_request("issues", payload, secret=SECRET, delivery_id=delivery)
        answer = httpx.post(f"{self.url}/webhooks/github/", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        return delivery

    def status(self, path: str, token: str = TOKEN) -> httpx.Response:
        return httpx.get(
            f"{self.url}{PREFIX}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def run_view(self, delivery: str) -> dict[str, Any]:
        runs = self.status(f"/deliveries/{delivery}").json()["runs"]
        assert len(runs) == 1, runs
        run: dict[str, Any] = runs[0]
        return run

    def until(self, delivery: str, states: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run_view(delivery)
            if run["state"] in states:
                return run
            assert time.monotonic() < deadline, f"run stayed {run['state']}: {run}"
            time.sleep(0.1)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ghapp_celery.cli", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=60,
        )


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    env = environment(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from tests import bgapp

    app = bgapp.build()
    with (
        CeleryWorker(
            "tests.bgapp:celery",
            env["CELERY_BROKER_URL"],
            tmp_path / "workers",
            pool="threads",
            concurrency=4,
            queue=QUEUES,
            env=env,
        ) as worker,
        serve(app.web) as url,  # type: ignore[attr-defined]
    ):
        yield Served(app, url, env, worker)


def test_a_run_whose_worker_died_says_its_lease_expired(served: Served) -> None:
    delivery = served.deliver("assigned")  # bgapp.slow_once: sleeps 60 s the first time
    started = Path(served.env["GHAPP_TEST_STATE_DIR"]) / f"slow_once-{delivery}.started"
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, served.worker.log_tail()
        time.sleep(0.05)
    alive = served.run_view(delivery)
    assert (alive["state"], alive["lease_expired"]) == ("started", False)

    served.worker.kill(signal.SIGKILL, whole_group=True)
    time.sleep(2.5)  # past the 1.5 s lease, which nobody renews now
    dead = served.run_view(delivery)
    assert (dead["state"], dead["lease_expired"]) == ("started", True)

    shown = served.cli("deliveries", "show", delivery)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["runs"][0]["lease_expired"] is True
    listed = served.cli("deliveries", "list")
    line = next(line for line in listed.stdout.splitlines() if delivery in line)
    assert "slow_once=started (lease expired" in line


def test_a_run_that_succeeded_after_failures_shows_their_error_as_earlier(
    served: Served,
) -> None:
    delivery = served.deliver("labeled")  # bgapp.flaky: 502 twice, then succeeds
    run = served.until(delivery, {"succeeded", "failed", "dead"})
    assert (run["state"], run["attempts"]) == ("succeeded", 3)
    assert run["last_error"] is None
    assert "502" in run["earlier_error"]
    assert run["lease_expired"] is False


def test_a_failure_is_current_and_its_traceback_is_logged_once(served: Served) -> None:
    delivery = served.deliver("unlabeled")  # bgapp.client_error: a 422, no retry
    run = served.until(delivery, {"succeeded", "failed", "dead"})
    assert run["state"] == "failed" and "422" in run["last_error"]
    assert run["earlier_error"] is None
    served.worker.stop()
    log = served.worker.log_file.read_text()
    # The last line of a traceback of this failure: once, however many loggers saw it.
    tails = re.findall(r"^\S*GitHubAppError: GitHub answered 422$", log, flags=re.MULTILINE)
    assert len(tails) == 1, log
    assert run["id"] in log  # Celery's line names the task id, which is the run id


def test_status_api_errors_have_the_webhook_routes_shape(served: Served) -> None:
    webhook = httpx.post(f"{served.url}/webhooks/github/", content=b"{}")
    assert webhook.status_code == 401
    refused = served.status("/deliveries", token="wrong")
    assert refused.status_code == 401
    unknown = served.status(f"/deliveries/{uuid.uuid4()}")
    assert unknown.status_code == 404
    for answer in (refused, unknown):
        assert set(answer.json()) == set(webhook.json()) == {"status", "error", "description"}
        assert answer.json()["status"] == webhook.json()["status"] == "ERROR"
