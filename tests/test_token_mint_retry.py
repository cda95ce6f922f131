"""A token mint that fails at the socket is retried by the background run (issue 11, section 2).

The user's path: a background handler calls GitHub through ``event.github`` in a real Celery
worker on the embedded broker. Between the worker and FakeGitHub sits a loopback TCP proxy that
resets the first connection carrying the installation-token POST, before any answer. The mint
raises ``GitHubConnectionError``; the retry policy calls that transient; the run goes again
with Celery's backoff, mints, comments and succeeds on its second attempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ghapp_celery.testing import FakeGitHub, serve
from tests._refusing_proxy import RefusingProxy
from tests._workers import CeleryWorker
from tests.test_background import QUEUES, make_app, only_run, post, wait_for
from tests.test_event_github import REPO, comments, delivery, env_for


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    github = FakeGitHub()
    github.add_repo(REPO, issues=1)
    with github.serve():
        yield github


def test_a_mint_reset_at_the_socket_is_retried_by_the_run(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    iid = fake.installation_ids[0]
    token_post = f"POST /app/installations/{iid}/access_tokens ".encode()
    with RefusingProxy(str(fake.base_url), token_post) as proxy:
        env = {**env_for(fake, tmp_path), "GITHUBAPP_URL": proxy.url}
        app = make_app(monkeypatch, env)
        before = len(comments(fake))
        tokens_before = fake.token_request_count(iid)
        worker = CeleryWorker(
            "tests.bgapp:celery",
            env["CELERY_BROKER_URL"],
            tmp_path / "w",
            pool="threads",
            concurrency=2,
            queue=QUEUES,
            env=env,
        )
        with worker, serve(app.web) as url:  # type: ignore[attr-defined]
            body, headers, delivery_id = delivery(fake, "pinned")  # bgapp: thank, retry=FAST
            assert post(url, body, headers).status_code == 202
            run = only_run(wait_for(app, delivery_id))
            log = worker.log_tail()
        assert (run.state.value, run.attempts) == ("succeeded", 2), (run.last_error, log)
        assert proxy.refused == 1
    assert "GitHubConnectionError" in log  # the first attempt's failure, as the worker saw it
    # The refused POST never reached FakeGitHub; the retry's did, once.
    assert fake.token_request_count(iid) - tokens_before == 1
    assert [c["body"] for c in comments(fake)[before:]] == ["Thanks! (pinned)"]
