"""The public test kit: FakeGitHub's real-time clock, make_event, the plugin's fixtures in this
very suite, and a FakeGitHub served on a fixed port by its own process."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest

from ghapp_celery import ConfigurationError, Event, GitHubApp
from ghapp_celery.testing import (
    AppFactory,
    FakeClock,
    FakeGitHub,
    WebhookClient,
    make_event,
)

REPO = "octo/hello"
ISSUE = {"issue": {"number": 1}, "repository": {"full_name": REPO}}


def test_fake_githubs_default_clock_follows_real_time() -> None:
    fake = FakeGitHub()
    first = fake.clock()
    time.sleep(0.05)
    second = fake.clock()
    assert second - first >= 0.05  # not frozen at construction
    assert abs(second - time.time()) < 1
    controlled = FakeGitHub(clock=FakeClock(1_700_000_000.0))
    assert controlled.clock() == 1_700_000_000.0


def installations(fake: FakeGitHub, now: int) -> httpx.Response:
    """``GET /app/installations`` with an app JWT minted at ``now``, as the app mints it."""
    claims = {"iat": now - 30, "exp": now + 540, "iss": str(fake.app_id)}
    token = jwt.encode(claims, fake.private_key_pem, algorithm="RS256")
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "test"}

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=fake.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
            return await client.get("/app/installations", headers=headers)

    return asyncio.run(get())


def test_a_jwt_minted_fifteen_minutes_later_is_accepted_by_the_default_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    follows, frozen = FakeGitHub(), FakeGitHub(clock=FakeClock())
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 900)  # fifteen minutes pass
    assert installations(follows, int(time.time())).status_code == 200
    # A clock frozen at construction (the old default) sees that JWT issued in its future.
    refused = installations(frozen, int(time.time()))
    assert refused.status_code == 401
    assert "'Issued at' claim" in refused.json()["message"]


def test_make_event_points_event_github_at_the_fake(ghapp_fake_github: FakeGitHub) -> None:
    ghapp_fake_github.add_repo(REPO, issues=1)

    async def thank(event: Event) -> None:
        assert event.repository is not None
        await event.github.create_comment(event.repository, 1, "Thanks!")

    event = make_event("issues", ISSUE, action="opened", github=ghapp_fake_github)
    assert event.installation_id == ghapp_fake_github.installation_ids[0]
    asyncio.run(thank(event))
    assert [c["body"] for c in ghapp_fake_github.repos[REPO].comments] == ["Thanks!"]
    event.github_sync.create_comment(REPO, 1, "Again")
    assert len(ghapp_fake_github.repos[REPO].comments) == 2
    assert ghapp_fake_github.token_request_count() >= 1


def test_make_event_takes_the_payloads_installation_and_needs_a_served_fake() -> None:
    fake = FakeGitHub()
    with pytest.raises(ValueError, match="serve the FakeGitHub"):
        make_event("issues", ISSUE, github=fake)
    with fake.serve():
        event = make_event("issues", {**ISSUE, "installation": {"id": 7}}, github=fake)
    assert event.installation_id == 7
    bare = make_event("issues", ISSUE, action="opened", delivery_id="d-1")
    assert (bare.name, bare.delivery_id, bare.repository) == ("issues.opened", "d-1", REPO)
    with pytest.raises(ConfigurationError):
        _ = bare.github


def add_greeting(github_app: GitHubApp) -> None:
    @github_app.on("issues.opened")
    def greet(event: Event) -> str:
        return f"hello {event.installation_id}"


@pytest.fixture
def ghapp_app(ghapp_app_factory: AppFactory) -> GitHubApp:
    return ghapp_app_factory(setup=add_greeting)


def test_the_plugins_fixtures_post_signed_deliveries_to_the_app(
    ghapp_webhooks: WebhookClient, ghapp_fake_github: FakeGitHub
) -> None:
    posted = ghapp_webhooks.post("issues", ISSUE, action="opened")
    first = ghapp_fake_github.installation_ids[0]
    assert posted.json() == {"status": "HIT", "calls": {"greet": f"hello {first}"}}
    sent = posted.response.request.headers
    assert sent["x-github-delivery"] == posted.delivery_id
    assert sent["x-hub-signature-256"].startswith("sha256=")
    assert ghapp_webhooks.post("issues", ISSUE, action="closed").json()["status"] == "MISS"
    wrong = WebhookClient(ghapp_webhooks.url.rsplit("/webhooks", 1)[0], "not-the-secret")
    assert wrong.post("issues", ISSUE, action="opened").status_code == 401


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_fake_github_serves_on_a_fixed_port_in_its_own_process(tmp_path: Path) -> None:
    port = free_port()
    key_file = tmp_path / "app.pem"
    command = [sys.executable, "-m", "ghapp_celery.testing", "--port", str(port)]
    command += ["--key-file", str(key_file), "--until-stdin-closes"]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        info = json.loads(proc.stdout.readline())
        assert info["url"] == f"http://127.0.0.1:{port}"
        now = int(time.time())
        token = jwt.encode(
            {"iat": now - 30, "exp": now + 540, "iss": str(info["app_id"])},
            key_file.read_text(),
            algorithm="RS256",
        )
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "test"}
        answer = httpx.get(f"{info['url']}/app/installations", headers=headers)
        assert [i["id"] for i in answer.json()] == info["installation_ids"]
        proc.stdin.close()  # the parent is done: the fake exits
        assert proc.wait(timeout=15) == 0
