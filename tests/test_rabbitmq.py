"""RabbitMQ as the broker: ``CELERY_BROKER_URL=amqp://...`` is all a user sets.

Against a real rabbitmq-server on loopback (skipped locally without it, a failure in CI) and a
real ``celery worker`` subprocess; deliveries are posted over HTTP to uvicorn and watched in the
store. Our queues are quorum queues, with publisher confirms and native delayed delivery.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ghapp_celery import GitHubApp
from ghapp_celery.testing import serve
from tests._rabbitmq import RabbitMQ, rabbitmq_server
from tests._workers import CeleryWorker
from tests.test_background import QUEUES, environment, issue, make_app, only_run, post, wait_for

OUR_QUEUES = set(QUEUES.split(","))


@pytest.fixture(scope="module", autouse=True)
def _forget_celeryconfig() -> Iterator[None]:
    """The checkout's celeryconfig.py reads CELERY_BROKER_URL when first imported, and the
    module stays imported: without this, later tests' apps would get this module's amqp URLs
    (of a server stopped by then) from it."""
    before = sys.modules.get("celeryconfig")
    yield
    if before is None:
        sys.modules.pop("celeryconfig", None)
    else:
        sys.modules["celeryconfig"] = before


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    with rabbitmq_server(tmp_path_factory.mktemp("rabbitmq")) as server:
        yield server


@pytest.fixture(scope="module")
def running(
    rabbit: RabbitMQ, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], CeleryWorker]]:
    tmp = tmp_path_factory.mktemp("bg-rabbitmq")
    env = environment(tmp, rabbit.url)
    with CeleryWorker(
        "tests.bgapp:celery",
        rabbit.url,
        tmp / "workers",
        pool="threads",
        concurrency=4,
        queue=QUEUES,
        env=env,
    ) as worker:
        yield env, worker


@pytest.fixture
def app_url(
    running: tuple[dict[str, str], CeleryWorker], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[GitHubApp, str]]:
    env, _ = running
    app = make_app(monkeypatch, env)
    with serve(app.web) as url:  # type: ignore[attr-defined]
        yield app, url


def confirming_channels(rabbit: RabbitMQ) -> set[str]:
    """The broker's channels in publisher-confirm mode."""
    out = rabbit.ctl("list_channels", "name", "confirm", "--quiet", "--no-table-headers")
    return {line.split("\t")[0] for line in out.splitlines() if line.endswith("\ttrue")}


def test_a_delivery_runs_in_a_worker_over_rabbitmq(
    rabbit: RabbitMQ, app_url: tuple[GitHubApp, str]
) -> None:
    app, url = app_url
    before = confirming_channels(rabbit)
    body, headers, delivery_id = issue("opened")
    response = post(url, body, headers)
    assert response.status_code == 202
    # The intake published on a channel in confirm mode (its pooled connection stays open).
    assert confirming_channels(rabbit) - before
    run = only_run(wait_for(app, delivery_id))
    assert (run.state.value, run.attempts) == ("succeeded", 1)
    state = Path(app.settings.data_dir).parent / "state" / f"opened-{delivery_id}"
    assert state.read_text() == "1"


def test_our_queues_are_quorum_queues_on_topic_exchanges(
    rabbit: RabbitMQ, running: tuple[dict[str, str], CeleryWorker]
) -> None:
    types = rabbit.queue_types()
    assert {name: types.get(name) for name in OUR_QUEUES} == dict.fromkeys(OUR_QUEUES, "quorum")
    # The worker declared Celery's native delayed delivery topology, as quorum queues too.
    assert types.get("celery_delayed_0") == "quorum", types
    out = rabbit.ctl("list_exchanges", "name", "type", "--quiet", "--no-table-headers")
    exchanges = dict(line.split("\t", 1) for line in out.strip().splitlines() if "\t" in line)
    assert {name: exchanges.get(name) for name in OUR_QUEUES} == dict.fromkeys(OUR_QUEUES, "topic")
    assert exchanges.get("celery_delayed_delivery") == "topic"


def test_retries_complete_on_quorum_queues(
    app_url: tuple[GitHubApp, str], running: tuple[dict[str, str], CeleryWorker]
) -> None:
    app, url = app_url
    _, worker = running
    body, headers, flaky = issue("labeled")  # fails twice with a 502, then succeeds
    assert post(url, body, headers).status_code == 202
    body, headers, limited = issue("reopened")  # rate limited once: retried after 1 s
    started = time.monotonic()
    assert post(url, body, headers).status_code == 202
    run = only_run(wait_for(app, flaky))
    assert (run.state.value, run.attempts) == ("succeeded", 3)
    run = only_run(wait_for(app, limited))
    assert (run.state.value, run.attempts) == ("succeeded", 2)
    assert time.monotonic() - started >= 1.0  # the countdown was kept
    log = worker.log_tail(200_000)
    # Celery's messages when a countdown falls back to the worker holding the message.
    assert "direct exchange" not in log.lower(), log
    assert "delayed delivery" not in log.lower(), log


def celery_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Any:
    monkeypatch.setenv("GITHUBAPP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_SECRET", "s")
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:1//")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return GitHubApp().celery


def test_classic_queues_are_an_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    celery = celery_for(monkeypatch, tmp_path, GITHUBAPP_RABBITMQ_QUEUE_TYPE="classic")
    queue = celery.conf.task_queues[0]
    assert (queue.queue_arguments, queue.exchange.type) == (None, "direct")
    assert celery.conf.broker_transport_options["confirm_publish"] is True
    assert celery.conf.task_default_queue_type == "classic"


def test_the_users_celeryconfig_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "rmqconfig.py").write_text(
        "broker_transport_options = {'confirm_publish': False}\n"
        "broker_native_delayed_delivery_queue_type = 'classic'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    celery = celery_for(monkeypatch, tmp_path, GITHUBAPP_CELERY_CONFIG_MODULE="rmqconfig")
    assert celery.conf.broker_transport_options["confirm_publish"] is False
    assert celery.conf.broker_native_delayed_delivery_queue_type == "classic"
    queue = celery.conf.task_queues[0]
    assert (queue.queue_arguments, queue.exchange.type) == ({"x-queue-type": "quorum"}, "topic")
    assert celery.conf.worker_detect_quorum_queues is True
