"""Every real payload, signed and posted to a GitHubApp, reaches exactly the handlers it should.

One app carries a handler on every ``<event>``, every ``<event>.<action>`` and ``*`` found in
the index, in the three styles users write: a no-argument handler reading
``github_app.payload`` (fastapi-githubapp's style), a handler taking the ``event``, and an
``async def`` catch-all. Each handler records what it saw and returns a digest of it, so the
test checks both the answer (HIT, which calls, in which order) and that every handler saw
this delivery's payload, not another one's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ghapp_celery import Event, GitHubApp
from ghapp_celery.testing import serve
from ghapp_celery.webhooks import webhook_headers
from tests.payloads import FIXTURES, Row, load_index, load_payload, with_installation

SECRET = "It's a Secret to Everybody"
APP_ID = 4242
INSTALLATION_ID = 31337
ROUTE = "/webhooks/github/"
ROWS = load_index()


def digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Seen:
    handler: str
    delivery_id: str | None
    event: str | None
    action: str | None
    installation_id: int | None
    payload: dict[str, Any]


@dataclass
class Harness:
    """The app under test and what its handlers saw, per delivery id."""

    app: FastAPI
    github_app: GitHubApp
    seen: dict[str, list[Seen]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, seen: Seen) -> str:
        with self.lock:
            self.seen.setdefault(seen.delivery_id or "?", []).append(seen)
        return digest(seen.payload)


def _named(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    # The answer's "calls" is keyed by function name, so each handler needs its own.
    func.__name__ = func.__qualname__ = name
    return func


def handler_name(key: str) -> str:
    return "on_any" if key == "*" else "on_" + key.replace(".", "__")


def build_harness() -> Harness:
    app = FastAPI()
    github_app = GitHubApp(
        app, github_app_id=APP_ID, github_app_key="unused", github_app_secret=SECRET
    )
    harness = Harness(app, github_app)

    def legacy_style(name: str) -> Callable[[], str]:
        def handler() -> str:
            payload = github_app.payload
            # Yield the GIL mid-handler: if deliveries shared state, a concurrent one would
            # swap the payload under us here.
            time.sleep(0.001)
            assert github_app.payload is payload
            return harness.record(
                Seen(name, github_app.delivery_id, github_app.event, None, None, payload)
            )

        return _named(handler, name)

    def event_style(name: str) -> Callable[[Event], str]:
        def handler(event: Event) -> str:
            return harness.record(
                Seen(
                    name,
                    event.delivery_id,
                    event.event,
                    event.action,
                    event.installation_id,
                    event.payload,
                )
            )

        return _named(handler, name)

    def async_style(name: str) -> Callable[[Event], Any]:
        async def handler(event: Event) -> str:
            await asyncio.sleep(0)
            return harness.record(
                Seen(name, event.delivery_id, event.event, event.action, None, event.payload)
            )

        return _named(handler, name)

    for event in sorted({row.event for row in ROWS}):
        github_app.on(event)(legacy_style(handler_name(event)))
    for key in sorted({f"{row.event}.{row.action}" for row in ROWS if row.action}):
        github_app.on(key)(event_style(handler_name(key)))
    github_app.on("*")(async_style(handler_name("*")))
    return harness


def expected_handlers(row: Row) -> list[str]:
    """Dispatch order: the event, then event.action, then the catch-all."""
    keys = [row.event] + ([f"{row.event}.{row.action}"] if row.action else []) + ["*"]
    return [handler_name(key) for key in keys]


@dataclass(frozen=True)
class Sent:
    row: Row
    delivery_id: str
    payload: dict[str, Any]
    body: bytes
    headers: dict[str, str]


def prepare(row: Row, *, form: bool = False) -> Sent:
    """The delivery GitHub would send an App: compact JSON, installation added, signed."""
    payload = with_installation(
        load_payload(row.path), installation_id=INSTALLATION_ID, event=row.event
    )
    compact = json.dumps(payload, separators=(",", ":")).encode()
    if form:
        body = urlencode({"payload": compact.decode()}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body, content_type = compact, "application/json"
    delivery_id = str(uuid.uuid4())
    headers = webhook_headers(
        row.event,
        body,
        secret=SECRET,
        delivery_id=delivery_id,
        app_id=APP_ID,
        content_type=content_type,
    )
    return Sent(row, delivery_id, payload, body, headers)


def check(harness: Harness, sent: Sent, status: int, answer: Any) -> None:
    row, names = sent.row, expected_handlers(sent.row)
    assert status == 200, answer
    assert answer["status"] == "HIT"
    # The answer lists exactly the handlers that should run, in order, each with what it
    # returned: a digest of the payload it saw.
    assert list(answer["calls"]) == names
    assert set(answer["calls"].values()) == {digest(sent.payload)}

    seen = harness.seen.pop(sent.delivery_id)
    assert sorted(s.handler for s in seen) == sorted(names)
    installation = sent.payload.get("installation")
    for s in seen:
        assert s.payload == sent.payload
        assert s.event == row.event
        if s.handler != "on_any" and s.handler != handler_name(row.event):
            assert s.action == row.action
            assert s.installation_id == (installation["id"] if installation else None)


@pytest.fixture(scope="module")
def harness() -> Harness:
    return build_harness()


@pytest.fixture(scope="module")
def client(harness: Harness) -> Iterator[TestClient]:
    with TestClient(harness.app) as test_client:
        yield test_client


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_every_payload_reaches_its_handlers(row: Row, harness: Harness, client: TestClient) -> None:
    sent = prepare(row)
    response = client.post(ROUTE, content=sent.body, headers=sent.headers)
    check(harness, sent, response.status_code, response.json())


@pytest.mark.parametrize("path", ["issues/opened.json", "push/default.json", "ping/default.json"])
def test_form_encoded_delivery(path: str, harness: Harness, client: TestClient) -> None:
    row = next(r for r in ROWS if r.path == path)
    sent = prepare(row, form=True)
    response = client.post(ROUTE, content=sent.body, headers=sent.headers)
    check(harness, sent, response.status_code, response.json())


def test_real_form_encoded_capture(harness: Harness, client: TestClient) -> None:
    # gidgethub's capture of a real "form" hook delivery, re-signed with our secret.
    capture = FIXTURES / "api_responses" / "gidgethub_samples" / "ping_urlencoded"
    captured: dict[str, str] = json.loads((capture / "200.json").read_text("utf-8"))
    body = (capture / "body").read_bytes()
    headers = webhook_headers(
        "ping",
        body,
        secret=SECRET,
        delivery_id=captured["x-github-delivery"],
        content_type=captured["content-type"],
    )
    answer = client.post(ROUTE, content=body, headers=headers).json()
    assert list(answer["calls"]) == ["on_ping", "on_any"]
    seen = harness.seen.pop(captured["x-github-delivery"])
    assert {s.payload["zen"] for s in seen} == {"Keep it logically awesome."}


def test_tampered_real_payload_runs_nothing(harness: Harness, client: TestClient) -> None:
    sent = prepare(next(r for r in ROWS if r.path == "issues/opened.json"))
    tampered = sent.body.replace(b'"opened"', b'"closed"', 1)
    assert tampered != sent.body
    response = client.post(ROUTE, content=tampered, headers=sent.headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert sent.delivery_id not in harness.seen


def test_no_matching_handler_is_a_miss() -> None:
    app = FastAPI()
    github_app = GitHubApp(
        app, github_app_id=APP_ID, github_app_key="unused", github_app_secret=SECRET
    )
    github_app.on("issues.closed")(lambda: "never")
    sent = prepare(next(r for r in ROWS if r.path == "issues/opened.json"))
    with TestClient(app) as test_client:
        response = test_client.post(ROUTE, content=sent.body, headers=sent.headers)
    assert (response.status_code, response.json()) == (200, {"status": "MISS", "calls": {}})


# --- over real HTTP: uvicorn on 127.0.0.1, httpx --------------------------------------------


def test_all_payloads_over_real_http_concurrently() -> None:
    """The same checks through uvicorn, all 79 deliveries in flight at once.

    Concurrency is the point: sync handlers run in threads and read ``github_app.payload``,
    so any payload shared between deliveries shows up as a wrong digest.
    """
    harness = build_harness()
    deliveries = [prepare(row) for row in ROWS]

    async def post_all(url: str) -> list[tuple[int, Any]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:

            async def post(sent: Sent) -> tuple[int, Any]:
                response = await http.post(ROUTE, content=sent.body, headers=sent.headers)
                return response.status_code, response.json()

            return await asyncio.gather(*(post(sent) for sent in deliveries))

    started = time.monotonic()
    with serve(harness.app) as url:
        answers = asyncio.run(post_all(url))
    assert time.monotonic() - started < 20
    for sent, (status, answer) in zip(deliveries, answers, strict=True):
        check(harness, sent, status, answer)
    assert harness.seen == {}


def test_form_encoded_over_real_http() -> None:
    harness = build_harness()
    sent = prepare(next(r for r in ROWS if r.path == "pull_request/opened.json"), form=True)
    with serve(harness.app) as url:
        response = httpx.post(url + ROUTE, content=sent.body, headers=sent.headers, timeout=30)
    check(harness, sent, response.status_code, response.json())
