"""The intake under faults (issue 10): a stalled store, clients that go away, too many bodies
at once, hostile values. Real HTTP through uvicorn on loopback, the SQLite store (and
PostgreSQL where the database decides), the embedded SQLite broker; no worker."""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from ghapp_celery import GitHubApp
from ghapp_celery.testing import serve
from ghapp_celery.webhooks import signed_request
from tests._workers import sqlite_broker_url
from tests.test_background import environment, issue, make_app, post

SECRET = "faults-secret"
ROUTE = "/webhooks/github/"
DEADLINE = 1.0
MARGIN = 1.5  # the answer comes within DEADLINE + MARGIN (no speed test: a generous bound)


def broker_messages(broker: Path, *, at_least: int = 0, timeout: float = 10.0) -> int:
    """Messages in the embedded broker, once there are ``at_least`` (publishing follows the
    commit by a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with sqlite3.connect(broker) as db:
                count = int(db.execute("SELECT count(*) FROM kombu_message").fetchone()[0])
        except sqlite3.OperationalError:  # no table before the first publish
            count = 0
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


@contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Another connection holds SQLite's exclusive lock: every write to the store waits."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("COMMIT")
        conn.close()


def wait_until_recorded(app: GitHubApp, delivery_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.store.get_delivery(delivery_id, with_payload=False) is not None:
            return
        time.sleep(0.05)
    raise AssertionError(f"delivery {delivery_id} was never recorded")


# -- finding 3: a stalled store ---------------------------------------------------------------


@pytest.fixture
def stalled_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[GitHubApp, Path, Path]:
    broker = tmp_path / "broker.sqlite"
    env = environment(tmp_path, sqlite_broker_url(broker)) | {
        "GITHUBAPP_WEBHOOK_DEADLINE": str(DEADLINE),
        "GITHUBAPP_SCHEDULE_THREADS": "1",
    }
    app = make_app(monkeypatch, env)
    app.store.upgrade()
    return app, tmp_path / "data" / "store.sqlite", broker


def test_a_stalled_store_answers_503_within_the_deadline_and_the_delivery_runs_once(
    stalled_app: tuple[GitHubApp, Path, Path],
) -> None:
    app, store_file, broker = stalled_app
    body, headers, delivery_id = issue("opened")
    with serve(app.web) as url:  # type: ignore[attr-defined]
        with sqlite_locked(store_file):
            started = time.monotonic()
            answer = post(url, body, headers)
            elapsed = time.monotonic() - started
            time.sleep(DEADLINE + 1)  # the lock outlives the deadline by far
        assert answer.status_code == 503, answer.text
        assert elapsed < DEADLINE + MARGIN, elapsed
        assert answer.json()["error"] == "store_timeout"
        assert int(answer.headers["retry-after"]) > 0
        # The commit landed once the lock was let go: recorded and published, once.
        wait_until_recorded(app, delivery_id)
        record = app.store.get_delivery(delivery_id, with_payload=False)
        assert record is not None and len(record.runs) == 1
        assert broker_messages(broker, at_least=1) == 1
        # GitHub's redelivery of the same id (the one the 503 asked for) runs nothing again.
        again = post(url, body, headers)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "DUPLICATE"
    record = app.store.get_delivery(delivery_id, with_payload=False)
    assert record is not None and len(record.runs) == 1 and record.redeliveries == 1
    assert broker_messages(broker) == 1


def test_a_delivery_still_queued_at_its_deadline_is_not_recorded_later(
    stalled_app: tuple[GitHubApp, Path, Path],
) -> None:
    """The one scheduler thread is stuck on the first delivery; the second waits behind it
    in the queue. Its 503 is the truth: once the store is back it is dropped, not recorded."""
    app, store_file, broker = stalled_app
    first, second = issue("opened"), issue("opened")
    with serve(app.web) as url:  # type: ignore[attr-defined]
        with sqlite_locked(store_file), ThreadPoolExecutor(2) as pool:
            one = pool.submit(post, url, first[0], first[1])
            time.sleep(0.3)  # the thread has taken the first delivery into the store's wait
            two = pool.submit(post, url, second[0], second[1])
            answers = [one.result(), two.result()]
        assert [a.status_code for a in answers] == [503, 503]
        wait_until_recorded(app, first[2])
        assert broker_messages(broker, at_least=1) == 1
        time.sleep(0.5)  # the thread has gone on to the second one and dropped it
        assert app.store.get_delivery(second[2], with_payload=False) is None
        assert broker_messages(broker) == 1
        # Its redelivery is a new delivery to the store, recorded and queued as usual.
        again = post(url, second[0], second[1])
    assert again.status_code == 202 and again.json()["status"] == "QUEUED"
    assert broker_messages(broker, at_least=2) == 2


def test_the_deadline_setting_defaults_to_8_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    from ghapp_celery import Settings

    monkeypatch.delenv("GITHUBAPP_WEBHOOK_DEADLINE", raising=False)
    assert Settings().webhook_deadline == 8.0
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_DEADLINE", "2.5")
    assert Settings().webhook_deadline == 2.5


# -- finding 5: clients that go away ----------------------------------------------------------


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
        return "\n".join(formatter.format(r) for r in self.records)


@contextmanager
def server_log(*names: str) -> Iterator[Captured]:
    """Everything the server logs on ``names``, tracebacks included. Attach after uvicorn
    started: its logging configuration replaces the handlers of its own loggers."""
    handler = Captured()
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def raw_connection(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def request_head(headers: dict[str, str], *, path: str = ROUTE) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def inline_app() -> tuple[FastAPI, GitHubApp]:
    web = FastAPI()
    app = GitHubApp(web, github_app_id=1, github_app_secret=SECRET)
    app.on("ping")(lambda: "pong")
    return web, app


def wait_for_records(log: Captured, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(log.records) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_client_that_goes_away_mid_body_is_one_short_line_not_a_traceback() -> None:
    web, _ = inline_app()
    body, headers = signed_request("ping", {"zen": "x" * 2000}, secret=SECRET)
    with serve(web) as url, server_log("uvicorn", "ghapp_celery") as log:
        # A body shorter than its Content-Length, then the connection closes.
        with raw_connection(url) as sock:
            sock.sendall(request_head(headers | {"Content-Length": str(len(body))}))
            sock.sendall(body[: len(body) // 2])
        # A slow chunked body, closed halfway.
        with raw_connection(url) as sock:
            sock.sendall(request_head(headers | {"Transfer-Encoding": "chunked"}))
            for start in (0, 500):
                piece = body[start : start + 500]
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                time.sleep(0.2)
        wait_for_records(log, 2)
        time.sleep(0.3)  # anything else the server would log about them
        # The server is fine and answers the next delivery.
        assert httpx.post(f"{url}{ROUTE}", content=body, headers=headers).status_code == 200
    text = log.text()
    assert not [r for r in log.records if r.exc_info], text
    assert "Traceback" not in text and "Exception in ASGI" not in text, text
    gone = [r for r in log.records if "went away" in r.getMessage()]
    assert len(gone) == 2, text
    assert all(r.levelno <= logging.INFO and "\n" not in r.getMessage() for r in gone), text
