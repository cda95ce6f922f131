"""fastapi-githubapp 0.2.7 compatibility, and each of its bugs fixed (docs/migration.md).

These run the app the way a user does: uvicorn on 127.0.0.1, httpx posting signed deliveries,
and FakeGitHub served on loopback as the GitHub API.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import ghapp_celery
from ghapp_celery import (
    STATUS_FUNC_CALLED,
    STATUS_NO_FUNC_CALLED,
    Event,
    GitHubApp,
    GitHubAppError,
    GitHubRateLimitError,
    InstallationAuthorization,
    with_rate_limit_handling,
)
from ghapp_celery.testing import FakeGitHub, serve
from ghapp_celery.webhooks import signed_request
from tests.payloads import load_payload

SECRET = "compat-secret"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    github = FakeGitHub(installations=3)
    with github.serve():
        yield github


def make_app(fake: FakeGitHub, **kwargs: Any) -> tuple[FastAPI, GitHubApp]:
    app = FastAPI()
    github_app = GitHubApp(
        app,
        github_app_id=fake.app_id,
        github_app_key=fake.private_key_pem,
        github_app_secret=SECRET,
        github_app_url=fake.base_url,
        **kwargs,
    )
    return app, github_app


def delivery(installation_id: int, marker: str) -> tuple[bytes, dict[str, str]]:
    payload = load_payload("issues/opened.json")
    payload["installation"] = {"id": installation_id}
    payload["issue"]["title"] = marker
    return signed_request("issues", payload, secret=SECRET)


async def post_all(url: str, requests: list[tuple[bytes, dict[str, str]]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(client.post(f"{url}/webhooks/github/", content=b, headers=h) for b, h in requests)
        )


def test_overlapping_deliveries_each_see_their_own_payload(fake: FakeGitHub) -> None:
    """0.2.7 kept payload on the instance: after an await, a handler read the next delivery's."""
    app, github_app = make_app(fake)
    first_waiting = asyncio.Event()
    second_done = asyncio.Event()

    @github_app.on("issues.opened")
    async def handler() -> str:
        title = github_app.payload["issue"]["title"]
        if title == "first":
            first_waiting.set()
            await asyncio.wait_for(second_done.wait(), 10)  # the second delivery runs meanwhile
        else:
            await asyncio.wait_for(first_waiting.wait(), 10)
            second_done.set()
        return f"{title}:{github_app.payload['issue']['title']}:{github_app.delivery_id}"

    with serve(app) as url:
        first, second = asyncio.run(post_all(url, [delivery(1, "first"), delivery(1, "second")]))
    assert first.json()["calls"]["handler"].startswith("first:first:")
    assert second.json()["calls"]["handler"].startswith("second:second:")
    ids = {
        first.json()["calls"]["handler"].split(":")[2],
        second.json()["calls"]["handler"].split(":")[2],
    }
    assert len(ids) == 2


def test_blocking_sync_handlers_run_concurrently_beyond_six_threads(fake: FakeGitHub) -> None:
    """0.2.7 queued sync handlers on the default executor: 6 threads on a 2-core machine."""
    app, github_app = make_app(fake)
    concurrent = 20
    # Every handler waits until all 20 are running at once; with fewer threads the barrier
    # times out and the handlers fail.
    barrier = threading.Barrier(concurrent, timeout=10)

    @github_app.on("issues.opened")
    def blocking() -> str:
        barrier.wait()
        return str(github_app.payload["issue"]["title"])

    with serve(app) as url:
        responses = asyncio.run(post_all(url, [delivery(1, f"d{i}") for i in range(concurrent)]))
    assert [r.status_code for r in responses] == [200] * concurrent
    assert sorted(r.json()["calls"]["blocking"] for r in responses) == sorted(
        f"d{i}" for i in range(concurrent)
    )


def test_token_minted_once_for_100_concurrent_async_deliveries(fake: FakeGitHub) -> None:
    app, github_app = make_app(fake)
    installation = fake.installation_ids[0]
    before = fake.token_request_count(installation)

    @github_app.on("issues.opened")
    async def needs_token(event: Event) -> bool:
        assert event.installation_id is not None
        auth = await github_app.aget_access_token(event.installation_id)
        return fake.token_is_valid(auth.token)

    with serve(app) as url:
        responses = asyncio.run(post_all(url, [delivery(installation, str(i)) for i in range(100)]))
    assert all(r.json() == {"status": "HIT", "calls": {"needs_token": True}} for r in responses)
    assert fake.token_request_count(installation) - before == 1


def test_token_minted_once_for_100_concurrent_sync_deliveries(fake: FakeGitHub) -> None:
    app, github_app = make_app(fake)
    installation = fake.installation_ids[1]
    before = fake.token_request_count(installation)

    @github_app.on("issues.opened")
    def needs_token() -> bool:
        token = github_app.installation_token
        return token is not None and fake.token_is_valid(token)

    with serve(app) as url:
        responses = asyncio.run(post_all(url, [delivery(installation, str(i)) for i in range(100)]))
    assert all(r.json()["calls"] == {"needs_token": True} for r in responses)
    assert fake.token_request_count(installation) - before == 1


def test_client_is_a_sync_ghapi_on_the_enterprise_url() -> None:
    """0.2.7 ignored github_app_url for client(); ghapi 2.x clients are async by default."""
    fake = FakeGitHub()
    with fake.serve(prefix="/api/v3") as base_url:
        assert base_url.endswith("/api/v3")
        app, github_app = make_app(fake)
        installation = fake.installation_ids[0]

        @github_app.on("issues.opened")
        def list_repos() -> int:
            api = github_app.client()
            assert api.gh_host == base_url
            result = api.apps.list_repos_accessible_to_installation()
            return int(result["total_count"])

        with TestClient(app) as client:
            body, headers = delivery(installation, "enterprise")
            response = client.post("/webhooks/github/", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert isinstance(response.json()["calls"]["list_repos"], int)
        paths = [r.path for r in fake.requests]
        assert "/api/v3/installation/repositories" in paths or "/installation/repositories" in paths


def test_aclient_is_the_async_ghapi(fake: FakeGitHub) -> None:
    _, github_app = make_app(fake)

    async def call() -> Any:
        api = await github_app.aclient(fake.installation_ids[0])
        return await api.apps.list_repos_accessible_to_installation()

    assert "total_count" in asyncio.run(call())


def test_with_rate_limit_handling_retries_client_calls(fake: FakeGitHub) -> None:
    app, github_app = make_app(fake, rate_limit_retries=2, rate_limit_max_sleep=5)
    installation = fake.installation_ids[2]
    github_app.get_access_token(installation)  # mint first so the fault hits the API call

    @github_app.on("issues.opened")
    @with_rate_limit_handling(github_app)
    def limited() -> int:
        api = github_app.get_client()
        fake.fail_next(429, path_prefix="/installation/repositories", headers={"retry-after": "0"})
        return int(api.apps.list_repos_accessible_to_installation()["total_count"])

    @github_app.on("issues.closed")
    def unprotected() -> None:
        fake.fail_next(429, path_prefix="/installation/repositories", headers={"retry-after": "0"})
        github_app.client().apps.list_repos_accessible_to_installation()

    with TestClient(app) as client:
        body, headers = delivery(installation, "limited")
        assert (
            client.post("/webhooks/github/", content=body, headers=headers).json()["status"]
            == STATUS_FUNC_CALLED
        )
        payload = load_payload("issues/opened.json")
        payload["action"] = "closed"
        payload["installation"] = {"id": installation}
        body, headers = signed_request("issues", payload, secret=SECRET)
        # Without the decorator the 429 surfaces as a failed handler.
        assert client.post("/webhooks/github/", content=body, headers=headers).status_code == 500


def test_retry_with_rate_limit_gives_up_when_the_wait_is_too_long(fake: FakeGitHub) -> None:
    _, github_app = make_app(fake, rate_limit_retries=1, rate_limit_max_sleep=1)
    request = httpx.Request("GET", "https://api.github.com/x")
    response = httpx.Response(
        403, request=request, headers={"x-ratelimit-remaining": "0", "retry-after": "30"}
    )
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        raise httpx.HTTPStatusError("limited", request=request, response=response)

    with pytest.raises(GitHubRateLimitError) as caught:
        github_app.retry_with_rate_limit(call)
    assert calls == [1]
    assert caught.value.retry_after == 30
    assert caught.value.rate_limit_info["remaining"] == "0"


def test_load_env_and_app_config(monkeypatch: pytest.MonkeyPatch, fake: FakeGitHub) -> None:
    monkeypatch.setenv("GITHUBAPP_ID", str(fake.app_id))
    monkeypatch.setenv("GITHUBAPP_PRIVATE_KEY", fake.private_key_pem.replace("\n", "\\n"))
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_SECRET", "from-env")
    monkeypatch.setenv("GITHUBAPP_OAUTH_SCOPES", "user:email,repo")
    app = FastAPI()
    app.config = {"GITHUBAPP_WEBHOOK_SECRET": "from-config"}  # type: ignore[attr-defined]
    GitHubApp.load_env(app)
    assert app.config["GITHUBAPP_ID"] == fake.app_id  # type: ignore[attr-defined]
    assert app.config["GITHUBAPP_OAUTH_SCOPES"] == ["user:email", "repo"]  # type: ignore[attr-defined]
    github_app = GitHubApp(app, github_app_url=fake.base_url)
    assert github_app.secret == "from-config"  # app.config wins over the environment
    assert github_app.id == str(fake.app_id)
    assert github_app.get_access_token(fake.installation_ids[0]).token.startswith("ghs_")


def test_init_app_is_idempotent_and_routers_can_be_mounted_by_hand(fake: FakeGitHub) -> None:
    app, github_app = make_app(fake)
    github_app.init_app(app)
    github_app.init_app(app, route="/elsewhere")  # ignored: already mounted
    calls: list[int] = []
    github_app.on("ping")(lambda: calls.append(1))
    body, headers = signed_request("ping", {"zen": "x"}, secret=SECRET)
    with TestClient(app) as client:
        assert client.post("/webhooks/github/", content=body, headers=headers).status_code == 200
        assert client.post("/elsewhere", content=body, headers=headers).status_code == 404
    assert calls == [1]

    own = FastAPI()
    github_app2 = GitHubApp(github_app_secret=SECRET, github_app_route="/hooks")
    github_app2.on("ping")(lambda: "pong")
    own.include_router(github_app2.router, prefix="/gh")
    body, headers = signed_request("ping", {"zen": "x"}, secret=SECRET)
    with TestClient(own) as client:
        assert client.post("/gh/hooks", content=body, headers=headers).json() == {
            "status": "HIT",
            "calls": {"<lambda>": "pong"},
        }


def test_payload_outside_a_delivery_raises(fake: FakeGitHub) -> None:
    _, github_app = make_app(fake)
    with pytest.raises(GitHubAppError):
        _ = github_app.payload
    assert github_app.delivery_id is None
    with pytest.raises(GitHubAppError):
        github_app.client()  # no installation to act as


def test_installation_authorization_parses_expiry() -> None:
    assert InstallationAuthorization("t", "2016-07-11T22:14:10Z").expired()
    assert not InstallationAuthorization("t", "2999-01-01T00:00:00Z").expired()
    assert not InstallationAuthorization("t", None).expired()


def test_public_names_are_pinned() -> None:
    assert STATUS_FUNC_CALLED == "HIT" and STATUS_NO_FUNC_CALLED == "MISS"
    assert sorted(ghapp_celery.__all__) == sorted(
        [
            "STATUS_DUPLICATE",
            "STATUS_FUNC_CALLED",
            "STATUS_NO_FUNC_CALLED",
            "STATUS_QUEUED",
            "AsyncGitHubClient",
            "ConfigurationError",
            "Delivery",
            "Event",
            "Forbidden",
            "GitHubApp",
            "GitHubAppAuth",
            "GitHubAppBadCredentials",
            "GitHubAppError",
            "GitHubAppValidationError",
            "GitHubClient",
            "GitHubConnectionError",
            "GitHubError",
            "GitHubRateLimitError",
            "GitHubResponse",
            "GitHubSession",
            "GitHubTimeout",
            "GithubAppUnkownObject",
            "GithubUnauthorized",
            "GraphQLError",
            "HTTPError",
            "InstallationAuthorization",
            "InvalidSignature",
            "MalformedPayload",
            "MemoryCache",
            "MissingHeader",
            "NotFound",
            "PayloadTooLarge",
            "RateLimited",
            "RateLimitedGhApi",
            "RedisCache",
            "RetryPolicy",
            "SecondaryRateLimited",
            "ServerError",
            "Settings",
            "Unauthorized",
            "UnsupportedContentType",
            "ValidationFailed",
            "WebhookError",
            "__version__",
            "with_rate_limit_handling",
            # issue 11: the whole exception tree is public
            "BodyTimeout",
            "DeliveryNotFound",
            "GitHubOAuthError",
            "HandlerTimeout",
            "IntakeBusy",
            "InvalidHeader",
            "InvalidPayloadField",
            "InvalidSession",
            "LoginError",
            "OAuthFlowError",
            "PayloadTooDeep",
            "ScheduleTimeout",
            "StatusError",
            "StoreError",
            "StoreUnavailable",
        ]
    )
    for name in ghapp_celery.__all__:
        assert hasattr(ghapp_celery, name), name
    # Every fastapi-githubapp 0.2.7 error name is a GitHubAppError.
    for name in (
        "GitHubAppValidationError",
        "GitHubAppBadCredentials",
        "GithubUnauthorized",
        "GithubAppUnkownObject",
        "GitHubRateLimitError",
    ):
        assert issubclass(getattr(ghapp_celery, name), GitHubAppError)
