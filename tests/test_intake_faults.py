"""The intake under faults (issue 10): a stalled store, clients that go away, too many bodies
at once, hostile values. Real HTTP through uvicorn on loopback, the SQLite store (and
PostgreSQL where the database decides), the embedded SQLite broker; no worker."""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ghapp_celery import Event, GitHubApp
from ghapp_celery.testing import serve
from ghapp_celery.webhooks import signed_request, webhook_headers
from tests._postgres import PostgresServer, postgres_server  # noqa: F401  (fixture)
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


# -- finding 6: a budget for the body bytes in flight -----------------------------------------

BUDGET = 1_000_000
HELD = 450_000  # two held bodies of this size leave less than 100 kB of the budget


def wait_for_in_flight(app: GitHubApp, expected: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while app.intake.body_budget.in_use != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.intake.body_budget.in_use == expected


@contextmanager
def held_body(url: str, size: int = HELD) -> Iterator[socket.socket]:
    """A client that declares ``size`` bytes of unsigned body, sends a little, and waits."""
    with raw_connection(url) as sock:
        head = {"Content-Type": "application/json", "X-GitHub-Event": "ping"}
        sock.sendall(request_head(head | {"Content-Length": str(size)}) + b"{" * 1000)
        yield sock


def signed_ping(size: int) -> tuple[bytes, dict[str, str]]:
    return signed_request("ping", {"zen": "x" * size}, secret=SECRET)


def test_bodies_past_the_budget_get_503_and_those_within_it_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_BODY_BUDGET_BYTES", str(BUDGET))
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_MAX_BODY_BYTES", "600000")
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_DEADLINE", "30")  # the held bodies outlive the test
    web, app = inline_app()
    big, small = signed_ping(200_000), signed_ping(50_000)
    with serve(web) as url, httpx.Client(base_url=url, timeout=10) as client:
        with held_body(url) as first, held_body(url):
            wait_for_in_flight(app, 2 * HELD)
            # Declared past the budget: refused before a byte of it is read.
            busy = client.post(ROUTE, content=big[0], headers=big[1])
            assert busy.status_code == 503, busy.text
            assert busy.json()["error"] == "intake_busy"
            assert int(busy.headers["retry-after"]) > 0
            # Within what is left: accepted.
            assert client.post(ROUTE, content=small[0], headers=small[1]).status_code == 200
            # Chunked: counted chunk by chunk, refused once past the budget.
            chunks = [big[0][i : i + 16_384] for i in range(0, len(big[0]), 16_384)]
            chunked = client.post(ROUTE, content=iter(chunks), headers=big[1])
            assert chunked.status_code == 503 and chunked.json()["error"] == "intake_busy"
            wait_for_in_flight(app, 2 * HELD)  # what the refused ones took is back
            first.close()  # a client going away gives its reservation back
            wait_for_in_flight(app, HELD)
            assert client.post(ROUTE, content=big[0], headers=big[1]).status_code == 200
        wait_for_in_flight(app, 0)


def test_a_body_slower_than_the_deadline_gets_408_and_gives_its_bytes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_DEADLINE", str(DEADLINE))
    web, app = inline_app()
    with serve(web) as url, held_body(url) as sock:
        started = time.monotonic()
        answer = sock.recv(65536)
        elapsed = time.monotonic() - started
        # The headers and the body may come in separate segments: read until the connection
        # closes (the server closes it after a 408) or the body has arrived.
        sock.settimeout(5)
        while b'"body_timeout"' not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b'"body_timeout"' in answer
        assert elapsed < DEADLINE + MARGIN, elapsed
        wait_for_in_flight(app, 0)


def test_the_body_budget_defaults_to_64_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    from ghapp_celery import Settings

    monkeypatch.delenv("GITHUBAPP_WEBHOOK_BODY_BUDGET_BYTES", raising=False)
    assert Settings().webhook_body_budget_bytes == 64 * 1024 * 1024


# -- findings 7 and 8: hostile values, the same 400 on every database ------------------------

INT64_MAX = 2**63 - 1


def record_it(event: Event) -> None:  # a background handler: every delivery reaches the store
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def store_app(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[GitHubApp, str]]:
    env = {
        "GITHUBAPP_DATA_DIR": str(tmp_path / "data"),
        "CELERY_BROKER_URL": sqlite_broker_url(tmp_path / "broker.sqlite"),
    }
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        env["GITHUBAPP_DATABASE_URL"] = server.create_database(f"faults_{uuid.uuid4().hex[:12]}")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    web = FastAPI()
    app = GitHubApp(web, github_app_id=1, github_app_secret=SECRET)
    app.on("*", background=True)(record_it)
    app.store.upgrade()
    with serve(web) as url, server_log("uvicorn", "ghapp_celery") as log:
        yield app, url
    assert not [r for r in log.records if r.exc_info], log.text()  # never a traceback
    app.store.dispose()


def deliver(
    url: str,
    payload: dict[str, Any] | None = None,
    *,
    event: str = "issues",
    body: bytes | None = None,
    more_headers: dict[str, str] | None = None,
    **headers: str,
) -> httpx.Response:
    if body is None:
        body, signed = signed_request(event, payload or {"action": "opened"}, secret=SECRET)
    else:
        signed = webhook_headers(event, body, secret=SECRET)
    headers |= more_headers or {}
    signed.update({name.replace("_", "-"): value for name, value in headers.items()})
    return httpx.post(f"{url}{ROUTE}", content=body, headers=signed, timeout=30)


def refused(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == code, answer.text


@pytest.mark.parametrize(
    "installation_id", [10**26, INT64_MAX + 1, -(2**63) - 1, float("inf")], ids=str
)
def test_an_installation_id_past_64_bits_is_400(
    store_app: tuple[GitHubApp, str], installation_id: float
) -> None:
    _, url = store_app
    payload = {"action": "opened", "installation": {"id": installation_id}}
    refused(deliver(url, payload), "invalid_payload_field")


def test_hook_and_target_ids_past_64_bits_are_400(store_app: tuple[GitHubApp, str]) -> None:
    _, url = store_app
    refused(deliver(url, X_GitHub_Hook_ID=str(10**26)), "invalid_header")
    refused(deliver(url, X_GitHub_Hook_Installation_Target_ID=str(2**63)), "invalid_header")


def test_the_largest_64_bit_ids_are_recorded(store_app: tuple[GitHubApp, str]) -> None:
    app, url = store_app
    payload = {"action": "opened", "installation": {"id": INT64_MAX}}
    delivery_id = str(uuid.uuid4())
    answer = deliver(
        url,
        payload,
        X_GitHub_Delivery=delivery_id,
        X_GitHub_Hook_ID=str(INT64_MAX),
        X_GitHub_Hook_Installation_Target_ID=str(INT64_MAX),
        X_GitHub_Hook_Installation_Target_Type="integration",
    )
    assert answer.status_code == 202, answer.text
    record = app.store.get_delivery(delivery_id, with_payload=False)
    assert record is not None and record.installation_id == INT64_MAX


def test_a_delivery_id_over_100_characters_is_400_and_100_are_recorded(
    store_app: tuple[GitHubApp, str],
) -> None:
    app, url = store_app
    refused(deliver(url, X_GitHub_Delivery="d" * 101), "invalid_header")
    answer = deliver(url, X_GitHub_Delivery="d" * 100)
    assert answer.status_code == 202, answer.text
    assert app.store.get_delivery("d" * 100, with_payload=False) is not None


@pytest.mark.parametrize(
    ("event", "headers"),
    [
        ("e" * 101, {}),
        ("issues", {"X_GitHub_Delivery": "id\twith\tcontrol characters"}),
        ("issues", {"X_GitHub_Hook_Installation_Target_Type": "t" * 101}),
    ],
    ids=["long-event", "control-characters-in-id", "long-target-type"],
)
def test_header_values_the_store_cannot_hold_are_400(
    store_app: tuple[GitHubApp, str], event: str, headers: dict[str, str]
) -> None:
    _, url = store_app
    refused(deliver(url, event=event, more_headers=headers), "invalid_header")


@pytest.mark.parametrize("action", ["a" * 101, "opened\u0000", "\ud800"], ids=repr)
def test_an_action_the_store_cannot_hold_is_400(
    store_app: tuple[GitHubApp, str], action: str
) -> None:
    _, url = store_app
    refused(deliver(url, {"action": action}), "invalid_payload_field")


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_json_nested_too_deep_is_400_without_a_traceback(
    store_app: tuple[GitHubApp, str], depth: int
) -> None:
    _, url = store_app
    body = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    refused(deliver(url, body=body), "payload_too_deep")


def test_json_nested_within_the_limit_is_recorded(store_app: tuple[GitHubApp, str]) -> None:
    _, url = store_app
    depth = 100  # GitHub's own payloads nest 7 levels
    body = b'{"action":"opened","a":' + b"[" * depth + b"]" * depth + b"}"
    assert deliver(url, body=body).status_code == 202


def test_the_rules_hold_without_a_server() -> None:
    """webhooks.py alone, as the CLI and the test helpers use it."""
    from ghapp_celery.exceptions import InvalidHeader, InvalidPayloadField, PayloadTooDeep
    from ghapp_celery.webhooks import decode_body, parse_delivery

    push = {"X-GitHub-Event": "push"}
    with pytest.raises(InvalidPayloadField):
        parse_delivery(push, {"installation": {"id": "1" * 5000}})  # past int()'s digit limit
    with pytest.raises(InvalidHeader):
        parse_delivery(push | {"X-GitHub-Hook-ID": "9" * 19}, {})
    # Values that are not numbers at all are ignored, as they always were.
    assert parse_delivery(push | {"X-GitHub-Hook-ID": "abc"}, {}).hook_id is None
    assert parse_delivery(push, {"installation": {"id": "42"}}).installation_id == 42
    with pytest.raises(PayloadTooDeep):
        decode_body(b'{"a":' + b"[" * 100_000, "application/json")
    with pytest.raises(PayloadTooDeep):  # form-encoded bodies are parsed the same way
        decode_body(b"payload=" + b"%5B" * 100_000, "application/x-www-form-urlencoded")
