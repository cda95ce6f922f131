"""Background handlers end to end: uvicorn -> store -> broker -> a real worker -> store.

Every test posts real, signed deliveries over HTTP and watches the run in the store, which is
where a user (and the status API) sees it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ghapp_celery import GitHubApp
from ghapp_celery.store import DeliveryRecord, RunRecord
from ghapp_celery.testing import serve
from ghapp_celery.webhooks import signed_request
from tests._workers import CeleryWorker, sqlite_broker_url
from tests.payloads import load_payload

SECRET = "background-secret"
QUEUES = "github.issues,github.default,github.bulk"
FINAL = {"succeeded", "failed", "dead"}


def environment(tmp: Path, broker: str) -> dict[str, str]:
    return {
        "GITHUBAPP_DATA_DIR": str(tmp / "data"),
        "GITHUBAPP_WEBHOOK_SECRET": SECRET,
        "CELERY_BROKER_URL": broker,
        "GHAPP_TEST_STATE_DIR": str(tmp / "state"),
        "GITHUBAPP_RUN_LEASE": "1.5",
        "GITHUBAPP_SWEEP_UNPUBLISHED_AFTER": "0",
        "GITHUBAPP_VISIBILITY_TIMEOUT": "3",
    }


def make_app(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> GitHubApp:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from tests import bgapp

    return bgapp.build()


def issue(action: str, delivery_id: str | None = None) -> tuple[bytes, dict[str, str], str]:
    payload = load_payload("issues/opened.json")
    payload["action"] = action
    payload["installation"] = {"id": 77}
    delivery_id = delivery_id or str(uuid.uuid4())
    body, headers = signed_request("issues", payload, secret=SECRET, delivery_id=delivery_id)
    return body, headers, delivery_id


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/webhooks/github/", content=body, headers=headers, timeout=30)


def wait_for(
    app: GitHubApp, delivery_id: str, states: set[str] = FINAL, timeout: float = 60.0
) -> DeliveryRecord:
    deadline = time.monotonic() + timeout
    record: DeliveryRecord | None = None
    while time.monotonic() < deadline:
        record = app.store.get_delivery(delivery_id, with_payload=False)
        if record and record.runs and all(r.state.value in states for r in record.runs):
            return record
        time.sleep(0.1)
    raise AssertionError(f"delivery {delivery_id} did not reach {states}: {record}")


def only_run(record: DeliveryRecord | None) -> RunRecord:
    assert record is not None, "the delivery is not in the store"
    assert len(record.runs) == 1, record.runs
    return record.runs[0]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Any]]:
    """One threads-pool worker on an embedded SQLite broker, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("bg")
    env = environment(tmp, sqlite_broker_url(tmp / "broker.sqlite"))
    with CeleryWorker(
        "tests.bgapp:celery",
        env["CELERY_BROKER_URL"],
        tmp / "workers",
        pool="threads",
        concurrency=8,
        queue=QUEUES,
        env=env,
    ) as worker:
        yield env, worker


@pytest.fixture
def app_url(
    running: tuple[dict[str, str], Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[GitHubApp, str]]:
    env, _ = running
    app = make_app(monkeypatch, env)
    with serve(app.web) as url:  # type: ignore[attr-defined]
        yield app, url


def test_background_run_is_queued_then_succeeds(app_url: tuple[GitHubApp, str]) -> None:
    app, url = app_url
    body, headers, delivery_id = issue("opened")
    response = post(url, body, headers)
    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "QUEUED" and answer["delivery"] == delivery_id
    assert [(r["queue"], r["state"]) for r in answer["runs"]] == [("github.issues", "queued")]
    assert answer["runs"][0]["handler"] == "github.issues.opened:tests.bgapp.opened"
    run = only_run(wait_for(app, delivery_id))
    assert run.state.value == "succeeded" and run.attempts == 1
    assert run.duration_ms is not None and run.duration_ms >= 0
    state = Path(app.settings.data_dir).parent / "state" / f"opened-{delivery_id}"
    assert state.read_text() == "1"


def test_old_style_sync_handler_reads_payload_in_the_worker(
    app_url: tuple[GitHubApp, str],
) -> None:
    app, url = app_url
    body, headers, delivery_id = issue("edited")
    assert post(url, body, headers).status_code == 202
    assert only_run(wait_for(app, delivery_id)).state.value == "succeeded"
    assert (Path(app.settings.data_dir).parent / "state" / "edited").read_text() == "1"


def test_transient_errors_retry_with_backoff_then_succeed(app_url: tuple[GitHubApp, str]) -> None:
    app, url = app_url
    body, headers, delivery_id = issue("labeled")
    post(url, body, headers)
    run = only_run(wait_for(app, delivery_id))
    assert (run.state.value, run.attempts) == ("succeeded", 3)


def test_client_errors_fail_without_retry_and_replay_runs_them_again(
    app_url: tuple[GitHubApp, str],
) -> None:
    app, url = app_url
    body, headers, delivery_id = issue("unlabeled")
    post(url, body, headers)
    run = only_run(wait_for(app, delivery_id))
    assert (run.state.value, run.attempts) == ("failed", 1)
    assert run.last_error is not None and "422" in run.last_error
    replayed = app.replay(delivery_id)
    assert [r.id for r in replayed] == [run.id]
    time.sleep(0.3)
    again = only_run(wait_for(app, delivery_id))
    assert (again.state.value, again.attempts) == ("failed", 2)


def test_exhausted_retries_make_the_run_dead_and_a_redelivery_reruns_it(
    app_url: tuple[GitHubApp, str],
) -> None:
    app, url = app_url
    body, headers, delivery_id = issue("closed")
    post(url, body, headers)
    run = only_run(wait_for(app, delivery_id))
    assert (run.state.value, run.attempts) == ("dead", 3)  # first try + max_retries=2
    # GitHub's redelivery keeps X-GitHub-Delivery: dead runs run again.
    response = post(url, body, headers)
    assert response.status_code == 202 and response.json()["runs"][0]["id"] == run.id
    time.sleep(0.3)
    assert only_run(wait_for(app, delivery_id)).attempts == 6


def test_redelivery_of_a_succeeded_delivery_runs_nothing(app_url: tuple[GitHubApp, str]) -> None:
    app, url = app_url
    body, headers, delivery_id = issue("opened")
    post(url, body, headers)
    wait_for(app, delivery_id)
    response = post(url, body, headers)
    assert response.status_code == 200
    assert response.json() == {
        "status": "DUPLICATE",
        "delivery": delivery_id,
        "runs": [],
        "calls": {},
    }
    record = app.store.get_delivery(delivery_id, with_payload=False)
    assert record is not None and record.redeliveries == 1
    assert only_run(record).attempts == 1


def test_rate_limit_waits_do_not_use_up_retries(app_url: tuple[GitHubApp, str]) -> None:
    app, url = app_url
    body, headers, delivery_id = issue("reopened")  # max_retries=0, rate limited once
    post(url, body, headers)
    run = only_run(wait_for(app, delivery_id))
    assert (run.state.value, run.attempts) == ("succeeded", 2)


def test_handler_timeout_on_the_threads_pool(app_url: tuple[GitHubApp, str]) -> None:
    app, url = app_url
    body, headers, delivery_id = issue("locked")  # sleeps 30 s, timeout 0.5 s, no retries
    started = time.monotonic()
    post(url, body, headers)
    run = only_run(wait_for(app, delivery_id))
    assert run.state.value == "dead"
    assert run.last_error is not None and run.last_error.startswith("HandlerTimeout")
    assert time.monotonic() - started < 20  # far less than the handler's 30 s sleep


def test_a_long_blocking_handler_keeps_its_lease_and_is_not_run_twice(
    app_url: tuple[GitHubApp, str],
) -> None:
    """The worker renews the lease (1.5 s) while a 5 s blocking handler runs, so sweeps in the
    meantime find nothing to republish."""
    app, url = app_url
    body, headers, delivery_id = issue("milestoned")
    post(url, body, headers)
    wait_for(app, delivery_id, states={"started"}, timeout=30)
    swept: list[str] = []
    while only_run(app.store.get_delivery(delivery_id, with_payload=False)).state.value != (
        "succeeded"
    ):
        swept += app.sweep().republished
        time.sleep(0.3)
    run = only_run(wait_for(app, delivery_id))
    assert (run.state.value, run.attempts) == ("succeeded", 1)
    assert swept == []
    attempts = Path(app.settings.data_dir).parent / "state" / f"blocks-{delivery_id}.attempts"
    assert len(attempts.read_text().splitlines()) == 1


def test_handler_queue_override(app_url: tuple[GitHubApp, str]) -> None:
    app, url = app_url
    payload = load_payload("push/default.with-installation.json")
    body, headers = signed_request("push", payload, secret=SECRET)
    response = post(url, body, headers)
    assert response.json()["runs"][0]["queue"] == "github.bulk"
    run = only_run(wait_for(app, headers["X-GitHub-Delivery"]))
    assert (run.queue, run.state.value) == ("github.bulk", "succeeded")


def test_store_outage_answers_503_and_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(tmp_path, sqlite_broker_url(tmp_path / "broker.sqlite"))
    (tmp_path / "not-a-dir").write_text("a file where the store's directory should be")
    env["GITHUBAPP_DATABASE_URL"] = f"sqlite:///{tmp_path / 'not-a-dir' / 'store.sqlite'}"
    app = make_app(monkeypatch, env)
    with serve(app.web) as url:  # type: ignore[attr-defined]
        body, headers, _ = issue("opened")
        response = post(url, body, headers)
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"
    assert "not-a-dir" not in response.text


def test_publish_failure_still_answers_202_and_the_sweeper_publishes_later(
    running: tuple[dict[str, str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, _ = running
    broken = make_app(monkeypatch, {**env, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"})
    broken.celery.conf.broker_connection_max_retries = 0
    broken.celery.conf.broker_transport_options = {"max_retries": 0}
    with serve(broken.web) as url:  # type: ignore[attr-defined]
        body, headers, delivery_id = issue("opened")
        response = post(url, body, headers)
    assert response.status_code == 202
    assert [r["state"] for r in response.json()["runs"]] == ["received"]
    time.sleep(0.2)
    assert only_run(broken.store.get_delivery(delivery_id, with_payload=False)).state.value == (
        "received"
    )
    working = make_app(monkeypatch, env)  # same store, the worker's broker
    report = working.sweep()
    assert report.republished
    assert only_run(wait_for(working, delivery_id)).state.value == "succeeded"


def test_eager_mode_runs_async_handlers_inside_the_web_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """task_always_eager (how many users test Celery code): the run happens during the
    request, from an async route, without a worker and without an event-loop crash."""
    app = make_app(monkeypatch, environment(tmp_path, sqlite_broker_url(tmp_path / "b.sqlite")))
    app.celery.conf.task_always_eager = True
    with serve(app.web) as url:  # type: ignore[attr-defined]
        body, headers, delivery_id = issue("opened")
        response = post(url, body, headers)
        assert response.status_code == 202
        run = only_run(app.store.get_delivery(delivery_id, with_payload=False))
        assert (run.state.value, run.attempts) == ("succeeded", 1)
        body, headers, delivery_id = issue("labeled")  # fails twice, retried eagerly
        post(url, body, headers)
        run = only_run(app.store.get_delivery(delivery_id, with_payload=False))
        assert (run.state.value, run.attempts) == ("succeeded", 3)


def test_broker_messages_carry_the_delivery_compressed_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read the raw messages off the embedded broker (no worker consumes them here)."""
    import sqlite3

    from ghapp_celery.tasks.handlers import delivery_from_message

    env = environment(tmp_path, sqlite_broker_url(tmp_path / "broker.sqlite"))
    app = make_app(monkeypatch, env)
    token = app.settings.webhook_secrets()[0].decode()
    marker = "x" * 200_000  # a large issue body
    payload = load_payload("issues/opened.json")
    payload["installation"] = {"id": 77}
    small_body, small_headers = signed_request("issues", payload, secret=SECRET)
    payload["issue"]["body"] = marker
    big_body, big_headers = signed_request("issues", payload, secret=SECRET)
    with serve(app.web) as url:  # type: ignore[attr-defined]
        assert post(url, small_body, small_headers).status_code == 202
        assert post(url, big_body, big_headers).status_code == 202
    with sqlite3.connect(tmp_path / "broker.sqlite") as db:
        rows = [row[0] for row in db.execute("SELECT payload FROM kombu_message ORDER BY id")]
    assert len(rows) == 2
    (small_raw, small_kwargs), (big_raw, big_kwargs) = [decode_message(raw) for raw in rows]
    # The payload travels compressed, at any size: a fifth of the body, or less.
    assert len(rows[0]) < len(small_body) / 2
    assert len(rows[1]) < 10_000  # 200 kB of issue body
    small = delivery_from_message(small_kwargs["delivery"])
    big = delivery_from_message(big_kwargs["delivery"])
    assert small.id == small_headers["X-GitHub-Delivery"] and small.installation_id == 77
    assert small.payload == json.loads(small_body) and big.payload == json.loads(big_body)
    assert big.payload["issue"]["body"] == marker
    for raw, delivery in ((small_raw, small), (big_raw, big)):
        for text in (raw, delivery.payload_json or ""):
            assert token not in text and SECRET not in text
            assert "ghs_" not in text and "Bearer" not in text


def decode_message(raw: str) -> tuple[str, dict[str, Any]]:
    """(body text, task kwargs) of a kombu message as the embedded broker stores it."""
    import base64

    body = base64.b64decode(json.loads(raw)["body"]).decode()
    _args, kwargs, _embed = json.loads(body)
    return body, kwargs


def test_retry_backoff_is_celerys_exponential_backoff_in_seconds() -> None:
    from ghapp_celery import RetryPolicy

    policy = RetryPolicy(retry_backoff=0.5, retry_backoff_max=3, retry_jitter=False)
    assert [policy.backoff(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(retry_backoff=2, retry_jitter=True)
    assert all(0 <= jittered.backoff(3) <= 16 for _ in range(50))


def test_sweep_purges_expired_oauth_denylist_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    env = environment(tmp_path, sqlite_broker_url(tmp_path / "broker.sqlite"))
    env |= {
        "GITHUBAPP_OAUTH_CLIENT_ID": "Iv1.test",
        "GITHUBAPP_OAUTH_CLIENT_SECRET": "client-secret",
        "GITHUBAPP_OAUTH_SESSION_SECRET": "s" * 40,
    }
    app = make_app(monkeypatch, env)
    assert app.oauth is not None
    store = app.oauth.store
    now = datetime.now(UTC)
    store.deny("expired-jti", "session", now - timedelta(minutes=1))
    store.deny("live-jti", "session", now + timedelta(hours=1))
    report = app.sweep()
    assert report.oauth_rows_deleted == 1
    assert not store.is_denied("expired-jti") and store.is_denied("live-jti")


def test_a_message_carries_the_stored_compressed_payload_and_old_messages_still_parse() -> None:
    import base64
    import zlib

    from ghapp_celery.tasks.handlers import delivery_from_message, delivery_message
    from ghapp_celery.webhooks import parse_delivery

    body, headers = signed_request("issues", load_payload("issues/opened.json"), secret=SECRET)
    text = body.decode()
    delivery = parse_delivery(headers, json.loads(body), payload_json=text)
    message = delivery_message(delivery)
    # The very bytes the store keeps: the text GitHub sent, compressed once.
    packed = base64.b64decode(message["payload_zlib"])
    assert packed == delivery.payload_zlib
    assert zlib.decompress(packed).decode() == text
    assert "payload" not in message and "payload_json" not in message
    parsed = delivery_from_message(json.loads(json.dumps(message)))
    assert parsed.payload == json.loads(body) and parsed.payload_json == text
    # Messages published by earlier versions carried the text, or the object.
    from_text = delivery_from_message({**message, "payload_zlib": None, "payload_json": text})
    assert (from_text.id, from_text.payload) == (parsed.id, parsed.payload)
    older = {k: v for k, v in message.items() if k != "payload_zlib"} | {"payload": parsed.payload}
    assert delivery_from_message(older).payload == parsed.payload
    # Without the text (a replay rebuilt from the store), the object is compressed instead.
    rebuilt = delivery_message(parse_delivery(headers, json.loads(body)))
    assert delivery_from_message(rebuilt).payload == parsed.payload
