"""Log lines name the delivery and the run they belong to (issue 13 §3, docs/observability.md).

The formatter and the filter in-process; then as users run things: a real ``uvicorn`` with the
documented ``--log-config`` (and with plain uvicorn and ``GITHUBAPP_LOG_FORMAT=json``) whose
inline handlers log through their own logger, and a real ``celery worker`` with
``GITHUBAPP_LOG_FORMAT=json`` whose background handler fails once and is retried: each JSON
line is parsed and its fields compared with the delivery posted and the store's run record.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ghapp_celery.cli import sample_payload
from ghapp_celery.config import Settings
from ghapp_celery.observability.logs import JsonFormatter, LogContextFilter, log_context
from ghapp_celery.store import DeliveryStore, RunRecord
from ghapp_celery.webhooks import signed_request
from tests._redis import free_port
from tests._served import Served
from tests._venvs import clean_env

SECRET = "log-context-secret"
MARKER = "payload-text-that-must-not-be-logged"


def _capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(LogContextFilter())
    logger = logging.getLogger(f"tests.log_context.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, stream


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_context_and_the_traceback_as_one_string() -> None:
    logger, stream = _capture(JsonFormatter())
    with log_context(delivery_id="d-1", event="issues.opened", installation_id=7):
        with log_context(run_id="r-1", task="myapp.handle", attempt=2):
            try:
                raise ZeroDivisionError("no")
            except ZeroDivisionError:
                logger.exception("handler %s broke", "myapp.handle")
        logger.warning("after the run")
    logger.info("outside")

    broke, after, outside = _lines(stream)
    assert broke["message"] == "handler myapp.handle broke"
    assert broke["level"] == "ERROR" and broke["logger"] == logger.name
    assert {k: broke[k] for k in ("delivery_id", "event", "installation_id")} == {
        "delivery_id": "d-1",
        "event": "issues.opened",
        "installation_id": 7,
    }
    assert (broke["run_id"], broke["task"], broke["attempt"]) == ("r-1", "myapp.handle", 2)
    assert broke["exc_info"].startswith("Traceback (most recent call last):")
    assert broke["exc_info"].endswith("ZeroDivisionError: no")
    assert broke["time"].endswith("+00:00")
    # The inner block ended: its fields are gone, the outer ones stay.
    assert after["delivery_id"] == "d-1" and "run_id" not in after
    assert set(outside) == {"time", "level", "logger", "message"}


def test_an_extra_of_the_same_name_wins_and_other_attributes_are_not_written() -> None:
    logger, stream = _capture(JsonFormatter())
    with log_context(delivery_id="d-2", event="issues.opened"):
        # Inside a delivery, a handler's own extra of a context name must not raise (a record
        # factory setting the attribute would make Logger.makeRecord raise KeyError).
        logger.info("mine", extra={"event": "custom"})
        # Celery's records carry the task's arguments (the payload) in ``data``.
        logger.info("celery-like", extra={"data": {"kwargs": MARKER}, "token": "ghs_x"})
    mine, celery_like = _lines(stream)
    assert mine["event"] == "custom" and mine["delivery_id"] == "d-2"
    assert MARKER not in stream.getvalue() and "ghs_x" not in stream.getvalue()
    assert set(celery_like) == {"time", "level", "logger", "message", "delivery_id", "event"}


def test_the_context_takes_only_its_six_fields() -> None:
    with pytest.raises(TypeError):
        log_context(token="ghs_secret")  # type: ignore[call-arg]


def test_a_text_format_names_the_fields_through_the_filter() -> None:
    logger, stream = _capture(logging.Formatter("%(delivery_id)s %(event)s %(message)s"))
    logger.info("before")
    with log_context(delivery_id="d-3", event="ping"):
        logger.info("during")
    assert stream.getvalue().splitlines() == ["None None before", "d-3 ping during"]


# -- a real uvicorn and a real worker --------------------------------------------------------

MYAPP = """\
import logging
# PREAMBLE

from fastapi import FastAPI
from ghapp_celery import Event, GitHubApp, GitHubAppError, RetryPolicy

app = FastAPI()
github_app = GitHubApp(app)
celery = github_app.celery
log = logging.getLogger("myapp.handlers")
attempts = {}


@github_app.on("issues.opened")
def inline_sync(event: Event) -> None:
    log.warning("sync inline handler ran")


@github_app.on("issues.opened")
async def inline_async(event: Event) -> None:
    log.warning("async inline handler ran")


@github_app.on("issue_comment.created")
def inline_broken(event: Event) -> None:
    raise RuntimeError("inline handler broke")


@github_app.on(
    "issues.opened",
    background=True,
    retry=RetryPolicy(max_retries=3, retry_backoff=0, retry_jitter=False),
)
def in_the_worker(event: Event) -> None:
    key = event.delivery_id
    attempts[key] = attempts.get(key, 0) + 1
    log.info("background attempt %d", attempts[key])
    if attempts[key] == 1:
        raise GitHubAppError("GitHub answered 502", status=502)


@github_app.on("issues.opened", background=True)
async def in_the_worker_async(event: Event) -> None:
    # On the worker's event loop thread: the run's context goes with the coroutine.
    log.info("async background ran")
"""

LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "ghapp_celery.observability.logs.LogContextFilter"}},
    "formatters": {"json": {"()": "ghapp_celery.observability.logs.JsonFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["context"],
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
}


# docs/observability.md's way to take over a worker's logging.
CELERY_DICTCONFIG = f"""\
import logging.config
from celery.signals import setup_logging

@setup_logging.connect
def configure_logging(**_):
    logging.config.dictConfig({LOG_CONFIG!r})
"""
TEXT_CELERYCONFIG = (
    'worker_log_format = "TEXT %(levelname)s run=%(run_id)s delivery=%(delivery_id)s '
    'attempt=%(attempt)s %(message)s"\n'
)


@dataclass
class User:
    workdir: Path
    env: dict[str, str]

    def served(self, name: str, *args: str) -> Served:
        return Served(name, [sys.executable, "-m", *args], self.workdir, self.env)


@pytest.fixture
def user(tmp_path: Path) -> User:
    (tmp_path / "myapp.py").write_text(MYAPP)
    (tmp_path / "logging.json").write_text(json.dumps(LOG_CONFIG))
    env = clean_env(
        Path(sys.executable).parent,
        {"GITHUBAPP_DATA_DIR": str(tmp_path / ".ghapp"), "GITHUBAPP_WEBHOOK_SECRET": SECRET},
    )
    return User(tmp_path, env)


@contextmanager
def uvicorn(user: User, *options: str) -> Iterator[tuple[Served, str]]:
    port = free_port()
    with user.served("web", "uvicorn", "myapp:app", "--port", str(port), *options) as web:
        web.wait_for_line("Application startup complete.")
        yield web, f"http://127.0.0.1:{port}/webhooks/github/"


def post(url: str, sample: str, installation_id: int) -> tuple[str, httpx.Response]:
    event, payload = sample_payload(sample, installation_id=installation_id)
    payload.setdefault("issue", {})["title"] = MARKER
    body, headers = signed_request(event, payload, secret=SECRET)
    return headers["X-GitHub-Delivery"], httpx.post(url, content=body, headers=headers, timeout=30)


def json_lines(output: str) -> list[dict[str, Any]]:
    """The output's JSON log lines (a worker's banner and uvicorn's own lines are not)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def the_line(lines: list[dict[str, Any]], message: str) -> dict[str, Any]:
    found = [line for line in lines if line["message"] == message]
    assert len(found) == 1, (message, lines)
    return found[0]


def test_inline_handlers_lines_name_the_delivery_under_uvicorn_log_config(user: User) -> None:
    with uvicorn(user, "--log-config", "logging.json") as (web, url):
        delivery_id, response = post(url, "issues.opened", installation_id=4242)
        assert response.status_code == 202, response.text
        web.wait_for_line("async inline handler ran")
        web.wait_for_line("sync inline handler ran")
        output = web.output()
    lines = json_lines(output)
    expected = {"delivery_id": delivery_id, "event": "issues.opened", "installation_id": 4242}
    # The sync handler runs on the intake's thread pool, the async one on the event loop.
    for message in ("sync inline handler ran", "async inline handler ran"):
        line = the_line(lines, message)
        assert line["logger"] == "myapp.handlers"
        assert {k: line.get(k) for k in expected} == expected
        assert "run_id" not in line
    # Lines of no delivery (uvicorn's start-up) carry no delivery fields.
    startup = the_line(lines, "Application startup complete.")
    assert "delivery_id" not in startup
    # uvicorn's access line goes through the same root handler.
    (access,) = [x for x in lines if x["logger"] == "uvicorn.access"]
    assert "POST /webhooks/github/" in access["message"]
    assert MARKER not in output and SECRET not in output


def test_plain_uvicorn_with_the_json_setting_writes_the_failure_as_json(user: User) -> None:
    user.env["GITHUBAPP_LOG_FORMAT"] = "json"
    with uvicorn(user) as (web, url):
        delivery_id, response = post(url, "issue_comment.created", installation_id=9)
        assert response.status_code == 500
        web.wait_for_line("RuntimeError: inline handler broke")
        output = web.output()
    line = the_line(
        json_lines(output),
        f"Handler myapp.inline_broken failed for delivery {delivery_id} (issue_comment.created)",
    )
    assert line["level"] == "ERROR" and line["logger"] == "ghapp_celery.intake"
    assert (line["delivery_id"], line["event"], line["installation_id"]) == (
        delivery_id,
        "issue_comment.created",
        9,
    )
    assert line["exc_info"].endswith("RuntimeError: inline handler broke")
    assert MARKER not in output


def _finished_run(store: DeliveryStore, run_id: str, worker: Served) -> RunRecord:
    deadline = time.monotonic() + 60
    while True:
        run = store.get_run(run_id)
        if run is not None and run.state.value == "succeeded":
            return run
        assert worker.proc.poll() is None, worker.output()[-4000:]
        assert time.monotonic() < deadline, (run, worker.output()[-4000:])
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("pool", "setup"),
    [
        ("threads", "setting"),
        ("prefork", "setting"),
        ("solo", "setting"),
        ("threads", "setup_logging"),
    ],
)
def test_worker_json_lines_carry_the_run_and_a_retry_is_attempt_2(
    user: User, pool: str, setup: str
) -> None:
    if setup == "setting":
        user.env["GITHUBAPP_LOG_FORMAT"] = "json"
    else:  # the user's own dictConfig, through Celery's setup_logging signal
        app = user.workdir / "myapp.py"
        app.write_text(app.read_text().replace("# PREAMBLE\n", CELERY_DICTCONFIG))
    worker_args = ("celery", "-A", "myapp:celery", "worker", "-P", pool, "-c", "1")
    with (
        uvicorn(user) as (_, url),
        user.served("worker", *worker_args, "--loglevel", "INFO", "-Q", "github.issues") as worker,
    ):
        delivery_id, response = post(url, "issues.opened", installation_id=31)
        assert response.status_code == 202, response.text
        queued = {r["handler"]: r["id"] for r in response.json()["runs"]}
        store = DeliveryStore.from_url(Settings(data_dir=user.workdir / ".ghapp").store_url())
        try:
            run = _finished_run(store, queued["github.issues.opened:myapp.in_the_worker"], worker)
            other = _finished_run(
                store, queued["github.issues.opened:myapp.in_the_worker_async"], worker
            )
        finally:
            store.dispose()
        worker.wait_for_line(f"Task {run.task_name}[{run.id}] succeeded")
        output = worker.output()

    assert run.attempts == 2
    lines = json_lines(output)
    common = {
        "delivery_id": delivery_id,
        "event": "issues.opened",
        "installation_id": 31,
        "run_id": run.id,
        "task": run.task_name,
    }
    for attempt in (1, 2):
        line = the_line(lines, f"background attempt {attempt}")
        assert line["logger"] == "myapp.handlers"
        assert {k: line.get(k) for k in common} == common
        assert line["attempt"] == attempt
    line = the_line(lines, "async background ran")
    assert (line["run_id"], line["task"], line["attempt"]) == (other.id, other.task_name, 1)
    assert line["delivery_id"] == delivery_id
    # The package's retry line and Celery's own outcome line belong to the run too.
    (retry,) = [
        x for x in lines if x["message"].startswith(f"Run {run.id} failed (GitHubAppError)")
    ]
    assert retry["attempt"] == 1 and retry["run_id"] == run.id
    (celery_retry,) = [
        x for x in lines if x["message"].startswith(f"Task {run.task_name}[{run.id}] retry")
    ]
    assert celery_retry["attempt"] == 1 and celery_retry["delivery_id"] == delivery_id
    (succeeded,) = [
        x for x in lines if x["message"].startswith(f"Task {run.task_name}[{run.id}] succeeded")
    ]
    assert succeeded["logger"] == "celery.app.trace"
    assert succeeded["attempt"] == 2 and succeeded["delivery_id"] == delivery_id
    assert MARKER not in output and SECRET not in output


def test_a_worker_text_format_names_the_run_fields(user: User) -> None:
    (user.workdir / "celeryconfig.py").write_text(TEXT_CELERYCONFIG)
    worker_args = ("celery", "-A", "myapp:celery", "worker", "-P", "threads", "-c", "1")
    with (
        uvicorn(user) as (_, url),
        user.served("worker", *worker_args, "--loglevel", "INFO", "-Q", "github.issues") as worker,
    ):
        delivery_id, response = post(url, "issues.opened", installation_id=5)
        assert response.status_code == 202, response.text
        queued = {r["handler"]: r for r in response.json()["runs"]}[
            "github.issues.opened:myapp.in_the_worker"
        ]
        worker.wait_for_line(f"[{queued['id']}] succeeded")
        output = worker.output()
    run = f"run={queued['id']} delivery={delivery_id}"
    assert f"TEXT INFO {run} attempt=2 background attempt 2" in output
    assert f"TEXT INFO {run} attempt=1 background attempt 1" in output
    # A line of no run names none (the filter sets the attributes on every record).
    assert "TEXT INFO run=None delivery=None attempt=None" in output
