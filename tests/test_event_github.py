"""``event.github``: handlers call GitHub as the delivery's installation, in a worker and inline.

FakeGitHub is the API (tokens, the repository's issue comments); the handlers post a comment
the way DESIGN section 1 shows, and the test reads the comments back from FakeGitHub.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ghapp_celery import GitHubApp
from ghapp_celery.testing import FakeGitHub, serve
from ghapp_celery.webhooks import signed_request
from tests._workers import CeleryWorker, sqlite_broker_url
from tests.payloads import load_payload
from tests.test_background import QUEUES, SECRET, environment, make_app, only_run, post, wait_for

REPO = "Codertocat/Hello-World"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    github = FakeGitHub()
    github.add_repo(REPO, issues=1)
    with github.serve():
        yield github


def env_for(fake: FakeGitHub, tmp: Path) -> dict[str, str]:
    return {
        **environment(tmp, sqlite_broker_url(tmp / "broker.sqlite")),
        "GITHUBAPP_ID": str(fake.app_id),
        "GITHUBAPP_PRIVATE_KEY": fake.private_key_pem.replace("\n", "\\n"),
        "GITHUBAPP_URL": str(fake.base_url),
    }


def delivery(fake: FakeGitHub, action: str) -> tuple[bytes, dict[str, str], str]:
    payload = load_payload("issues/opened.json")
    payload["action"] = action
    payload["installation"] = {"id": fake.installation_ids[0]}
    delivery_id = str(uuid.uuid4())
    body, headers = signed_request("issues", payload, secret=SECRET, delivery_id=delivery_id)
    return body, headers, delivery_id


def comments(fake: FakeGitHub) -> list[dict[str, Any]]:
    return list(fake.repos[REPO].comments)


def test_background_handler_comments_through_event_github(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_for(fake, tmp_path)
    app = make_app(monkeypatch, env)
    before = len(comments(fake))
    tokens_before = fake.token_request_count(fake.installation_ids[0])
    worker = CeleryWorker(
        "tests.bgapp:celery",
        env["CELERY_BROKER_URL"],
        tmp_path / "w",
        pool="threads",
        concurrency=4,
        queue=QUEUES,
        env=env,
    )
    with worker, serve(app.web) as url:  # type: ignore[attr-defined]
        ids = []
        for _ in range(3):
            body, headers, delivery_id = delivery(fake, "pinned")
            assert post(url, body, headers).status_code == 202
            ids.append(delivery_id)
        for delivery_id in ids:
            run = only_run(wait_for(app, delivery_id))
            assert run.state.value == "succeeded", (run.last_error, worker.log_tail())
    new = comments(fake)[before:]
    assert [c["body"] for c in new] == ["Thanks! (pinned)"] * 3
    # One installation token for the worker process, shared by its handlers.
    assert fake.token_request_count(fake.installation_ids[0]) - tokens_before == 1


@pytest.mark.parametrize("action", ["unpinned", "demilestoned"])  # async and sync inline
def test_inline_handlers_use_event_github_in_the_web_process(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    app: GitHubApp = make_app(monkeypatch, env_for(fake, tmp_path))
    before = len(comments(fake))
    with serve(app.web) as url:  # type: ignore[attr-defined]
        body, headers, _ = delivery(fake, action)
        response = post(url, body, headers)
    assert response.status_code == 200, response.text
    comment_id = next(iter(response.json()["calls"].values()))
    new = comments(fake)[before:]
    assert [(c["id"], c["body"]) for c in new] == [(comment_id, f"Thanks! ({action})")]
