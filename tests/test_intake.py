"""The webhook route: what each kind of bad input gets, and the HIT/MISS answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ghapp_celery import GitHubApp
from ghapp_celery.webhooks import sign, signed_request, webhook_headers
from tests.payloads import load_payload

SECRET = "It's a Secret to Everybody"
ROUTE = "/webhooks/github/"


def make_app(**kwargs: Any) -> tuple[FastAPI, GitHubApp]:
    app = FastAPI()
    kwargs.setdefault("github_app_secret", SECRET)
    github_app = GitHubApp(app, github_app_id=1, **kwargs)
    return app, github_app


@pytest.fixture
def issue_opened() -> dict[str, Any]:
    return load_payload("issues/opened.json")


@pytest.fixture
def client_and_app() -> Iterator[tuple[TestClient, GitHubApp]]:
    app, github_app = make_app()
    with TestClient(app) as client:
        yield client, github_app


def post(client: TestClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(ROUTE, content=body, headers=headers)


def test_hit_returns_each_handlers_result_in_registration_order(
    client_and_app: tuple[TestClient, GitHubApp], issue_opened: dict[str, Any]
) -> None:
    client, github_app = client_and_app
    seen: list[str] = []

    @github_app.on("issues")
    def on_issues() -> str:
        seen.append("issues")
        return "any issue"

    @github_app.on("issues.opened")
    async def on_opened() -> dict[str, int]:
        seen.append("issues.opened")
        return {"number": github_app.payload["issue"]["number"]}

    @github_app.on("issues.closed")
    def on_closed() -> None:
        seen.append("closed")

    response = post(client, *signed_request("issues", issue_opened, secret=SECRET))
    assert response.status_code == 200
    assert response.json() == {
        "status": "HIT",
        "calls": {"on_issues": "any issue", "on_opened": {"number": 1}},
    }
    assert seen == ["issues", "issues.opened"]


def test_miss_when_no_handler_matches(
    client_and_app: tuple[TestClient, GitHubApp], issue_opened: dict[str, Any]
) -> None:
    client, github_app = client_and_app
    github_app.on("push")(lambda: None)
    response = post(client, *signed_request("issues", issue_opened, secret=SECRET))
    assert response.status_code == 200
    assert response.json() == {"status": "MISS", "calls": {}}


@pytest.mark.parametrize(
    ("headers_change", "expected_error"),
    [
        ({"X-Hub-Signature-256": None, "X-Hub-Signature": None}, "invalid_signature"),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, "invalid_signature"),
        ({"X-Hub-Signature-256": sign(b"other body", SECRET)}, "invalid_signature"),
        ({"X-Hub-Signature-256": sign(b'{"zen":"x"}', "wrong secret")}, "invalid_signature"),
        # Only the legacy sha1 header: refused unless webhook_allow_sha1 is set.
        ({"X-Hub-Signature-256": None}, "invalid_signature"),
    ],
)
def test_bad_signature_is_401_and_runs_nothing(
    client_and_app: tuple[TestClient, GitHubApp],
    headers_change: dict[str, str | None],
    expected_error: str,
) -> None:
    client, github_app = client_and_app
    ran: list[int] = []
    github_app.on("*")(lambda: ran.append(1))
    body, headers = signed_request("ping", {"zen": "x"}, secret=SECRET)
    for name, value in headers_change.items():
        headers.pop(name, None)
        if value is not None:
            headers[name] = value
    response = post(client, body, headers)
    assert response.status_code == 401
    assert response.json()["error"] == expected_error
    assert ran == []


def test_sha1_accepted_when_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_ALLOW_SHA1", "true")
    app, _ = make_app()
    body, headers = signed_request("ping", {"zen": "x"}, secret=SECRET)
    del headers["X-Hub-Signature-256"]
    with TestClient(app) as client:
        assert post(client, body, headers).status_code == 200


def test_rotated_secrets_both_verify() -> None:
    app, _ = make_app(github_app_secret=["new secret", "old secret"])
    with TestClient(app) as client:
        for secret in ("new secret", "old secret"):
            assert post(client, *signed_request("ping", {}, secret=secret)).status_code == 200
        assert post(client, *signed_request("ping", {}, secret="stale")).status_code == 401


def test_secret_false_turns_verification_off_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="ghapp_celery"):
        app, _ = make_app(github_app_secret=False)
    assert "verification is OFF" in caplog.text
    with TestClient(app) as client:
        response = post(client, *signed_request("ping", {"zen": "z"}, secret=None))
    assert response.status_code == 200


def test_malformed_json_is_400(client_and_app: tuple[TestClient, GitHubApp]) -> None:
    client, _ = client_and_app
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        response = post(client, body, webhook_headers("issues", body, secret=SECRET))
        assert response.status_code == 400, body
        assert response.json()["error"] == "malformed_payload"


def test_missing_event_header_is_400(client_and_app: tuple[TestClient, GitHubApp]) -> None:
    client, _ = client_and_app
    body, headers = signed_request("issues", {"action": "opened"}, secret=SECRET)
    del headers["X-GitHub-Event"]
    response = post(client, body, headers)
    assert response.status_code == 400
    assert response.json() == {
        "status": "ERROR",
        "error": "missing_header",
        "description": "Missing X-GitHub-Event header",
    }


def test_unsupported_content_type_is_415(client_and_app: tuple[TestClient, GitHubApp]) -> None:
    client, _ = client_and_app
    body = b"zen=x"
    headers = webhook_headers("ping", body, secret=SECRET, content_type="text/plain")
    assert post(client, body, headers).status_code == 415


def test_form_encoded_delivery_is_accepted(
    client_and_app: tuple[TestClient, GitHubApp], issue_opened: dict[str, Any]
) -> None:
    client, github_app = client_and_app
    github_app.on("issues.opened")(lambda: github_app.payload["issue"]["title"])
    body = urlencode({"payload": json.dumps(issue_opened)}).encode()
    headers = webhook_headers(
        "issues", body, secret=SECRET, content_type="application/x-www-form-urlencoded"
    )
    response = post(client, body, headers)
    assert response.status_code == 200
    assert response.json()["calls"] == {"<lambda>": issue_opened["issue"]["title"]}


def test_oversized_body_is_413_by_content_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_MAX_BODY_BYTES", "1024")
    app, github_app = make_app()
    github_app.on("*")(lambda: pytest.fail("must not run"))
    body, headers = signed_request("ping", {"zen": "x" * 2000}, secret=SECRET)
    with TestClient(app) as client:
        response = post(client, body, headers)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_oversized_chunked_body_is_413_while_streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_MAX_BODY_BYTES", "1024")
    app, _ = make_app()
    body, headers = signed_request("ping", {"zen": "x" * 5000}, secret=SECRET)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the intake must count as it reads
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    with TestClient(app) as client:
        response = client.post(ROUTE, content=chunks(), headers=headers)
    assert response.status_code == 413


def test_failing_handler_gives_generic_500_and_logs_traceback(
    client_and_app: tuple[TestClient, GitHubApp],
    issue_opened: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, github_app = client_and_app
    ran: list[str] = []

    @github_app.on("issues.opened")
    def broken() -> None:
        raise RuntimeError("database password is hunter2")

    @github_app.on("*")
    def still_runs() -> None:
        ran.append("still_runs")

    with caplog.at_level(logging.ERROR, logger="ghapp_celery"):
        response = post(client, *signed_request("issues", issue_opened, secret=SECRET))
    assert response.status_code == 500
    assert "hunter2" not in response.text
    assert response.json()["error"] == "handler_failed"
    assert "hunter2" in caplog.text and "Traceback" in caplog.text
    assert ran == ["still_runs"]


def test_ping_without_installation_is_accepted(
    client_and_app: tuple[TestClient, GitHubApp],
) -> None:
    client, github_app = client_and_app
    ping = load_payload("ping/default.json")
    assert "installation" not in ping
    github_app.on("ping")(lambda: github_app.payload["zen"])
    response = post(client, *signed_request("ping", ping, secret=SECRET))
    assert response.status_code == 200
    assert response.json()["calls"] == {"<lambda>": ping["zen"]}
