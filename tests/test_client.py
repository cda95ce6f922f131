"""AsyncGitHubClient against FakeGitHub over real HTTP on 127.0.0.1: answers, pagination, the
ETag cache, rate limits, retries, tokens, the error tree, Enterprise URLs.

Sleeps are injected (``Sleeps`` records each delay and moves the shared fake clock), so rate-limit
waits and backoffs are asserted exactly and cost no wall time."""

from __future__ import annotations

import asyncio
import importlib.abc
import logging
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.requests import Request

from ghapp_celery.exceptions import (
    Forbidden,
    GitHubAppBadCredentials,
    GitHubAppError,
    GithubAppUnkownObject,
    GitHubAppValidationError,
    GitHubConnectionError,
    GitHubError,
    GitHubRateLimitError,
    GitHubTimeout,
    GithubUnauthorized,
    HTTPError,
    NotFound,
    RateLimited,
    SecondaryRateLimited,
    ServerError,
    Unauthorized,
    ValidationFailed,
)
from ghapp_celery.github import AsyncGitHubClient, GitHubAppAuth, GitHubSession, api_urls
from ghapp_celery.policy import DEFAULT_RETRY, Outcome, classify
from ghapp_celery.testing import Credential, FakeClock, FakeGitHub, Reply

if TYPE_CHECKING:
    from tests._github_fixtures import Sleeps

pytest_plugins = ["tests._github_fixtures"]
pytestmark = pytest.mark.anyio

START = 1_700_000_000
REPO = "octo/hello"
MakeClient = Callable[..., AsyncGitHubClient]


@pytest.fixture
async def make_client(
    fake_github: FakeGitHub, make_auth: Callable[..., GitHubAppAuth], client_options: dict[str, Any]
) -> AsyncIterator[MakeClient]:
    """Clients for the fake's first installation (or ``installation_id=``), all closed after."""
    made: list[AsyncGitHubClient] = []
    auths: list[GitHubAppAuth] = []

    def factory(installation_id: int | None = -1, **overrides: Any) -> AsyncGitHubClient:
        auth = overrides.pop("auth", None)
        if auth is None:
            auth = make_auth()
            auths.append(auth)
        iid = fake_github.installation_ids[0] if installation_id == -1 else installation_id
        options = {**client_options, **overrides}
        client = AsyncGitHubClient(auth, iid, **options)
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.aclose()
    for auth in auths:
        await auth.aclose()


def gets(fake: FakeGitHub, path: str) -> int:
    return len(fake.requests_to(path))


# -- answers ---------------------------------------------------------------------------------


async def test_get_returns_body_status_headers_and_rate_limit(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO, issues=3)
    gh = make_client()
    response = await gh.get(f"/repos/{REPO}/issues/2")
    assert response.status == 200
    assert response.data["number"] == 2
    assert response.data["title"] == "Issue 2"
    assert response.headers["content-type"].startswith("application/json")
    assert response.request_id
    assert response.rate_limit is not None
    assert response.rate_limit.resource == "core"
    assert response.rate_limit.limit == 5000
    assert response.rate_limit.remaining == 4999
    assert gh.rate_limit("core") == response.rate_limit
    sent = fake_github.requests_to(f"/repos/{REPO}/issues/2")[0]
    assert sent.headers["accept"] == "application/vnd.github+json"
    assert sent.headers["x-github-api-version"] == "2022-11-28"
    assert sent.headers["authorization"] == "token <redacted>"
    assert sent.headers["user-agent"] == "ghapp-celery"


async def test_post_patch_delete_and_params(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    created = await gh.post(f"/repos/{REPO}/issues", {"title": "New", "labels": ["bug"]})
    assert created.status == 201
    assert created.data["number"] == 2
    patched = await gh.patch(f"/repos/{REPO}/issues/2", {"state": "closed"})
    assert patched.data["state"] == "closed"
    comment = await gh.post(f"/repos/{REPO}/issues/2/comments", {"body": "hi"})
    deleted = await gh.delete(f"/repos/{REPO}/issues/comments/{comment.data['id']}")
    assert deleted.status == 204
    assert deleted.data is None
    closed = await gh.get(f"/repos/{REPO}/issues", {"state": "closed", "per_page": 5})
    assert [i["number"] for i in closed.data] == [2]
    assert fake_github.requests_to(f"/repos/{REPO}/issues")[-1].query == "state=closed&per_page=5"


# -- pagination ------------------------------------------------------------------------------


async def test_paginate_follows_links_across_1000_items(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO, issues=1000)
    gh = make_client()
    numbers = [issue["number"] async for issue in gh.paginate(f"/repos/{REPO}/issues")]
    assert numbers == list(range(1, 1001))
    sent = fake_github.requests_to(f"/repos/{REPO}/issues")
    assert len(sent) == 10
    assert sent[0].query == "state=open&per_page=100" or sent[0].query == "per_page=100"
    assert [r.query.rsplit("page=", 1)[-1] for r in sent[1:]] == [str(n) for n in range(2, 11)]


async def test_paginate_stops_at_max_items_and_max_pages(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO, issues=1000)
    gh = make_client()
    first = [i async for i in gh.paginate(f"/repos/{REPO}/issues", max_items=150)]
    assert len(first) == 150
    assert gets(fake_github, f"/repos/{REPO}/issues") == 2
    pages = [i async for i in gh.paginate(f"/repos/{REPO}/issues", per_page=50, max_pages=3)]
    assert len(pages) == 150
    assert gets(fake_github, f"/repos/{REPO}/issues") == 5
    assert [i async for i in gh.paginate(f"/repos/{REPO}/issues", max_items=0)] == []


async def test_paginate_reads_search_items_and_wrapped_lists(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO, issues=250)
    fake_github.add_repo("octo/other", issues=1)
    gh = make_client()
    found = [i async for i in gh.paginate("/search/issues", {"q": f"Issue repo:{REPO}"})]
    assert len(found) == 250
    assert gh.rate_limit("search") is not None
    assert gh.rate_limit("search").limit == 30  # type: ignore[union-attr]
    repos = [r["full_name"] async for r in gh.paginate("/installation/repositories")]
    assert repos == [REPO, "octo/other"]
    with pytest.raises(ValueError, match="items_key"):
        [x async for x in gh.paginate(f"/repos/{REPO}")]


# -- conditional requests --------------------------------------------------------------------


async def test_second_get_is_a_304_that_costs_no_rate_limit(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    first = await gh.get(f"/repos/{REPO}/issues/1")
    second = await gh.get(f"/repos/{REPO}/issues/1")
    assert first.status == 200 and not first.from_cache
    assert second.status == 304 and second.from_cache
    assert second.data == first.data
    assert fake_github.not_modified == 1
    sent = fake_github.requests_to(f"/repos/{REPO}/issues/1")
    assert sent[1].headers["if-none-match"] == first.etag
    assert first.rate_limit and second.rate_limit
    assert second.rate_limit.remaining == first.rate_limit.remaining  # the 304 was free


async def test_cache_survives_token_rotation_but_not_installations(
    fake_github: FakeGitHub, make_client: MakeClient, clock: FakeClock
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    await gh.get(f"/repos/{REPO}/issues/1")
    clock.advance(3500)  # the hour is nearly over: the next call mints a new token
    again = await gh.get(f"/repos/{REPO}/issues/1")
    assert fake_github.token_request_count() == 2
    assert again.from_cache
    other = gh.for_installation(fake_github.installation_ids[1])
    theirs = await other.get(f"/repos/{REPO}/issues/1")
    assert not theirs.from_cache
    assert "if-none-match" not in fake_github.requests_to(f"/repos/{REPO}/issues/1")[-1].headers


async def test_a_changed_resource_comes_back_fresh(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    await gh.get(f"/repos/{REPO}/issues/1")
    await gh.patch(f"/repos/{REPO}/issues/1", {"title": "Renamed"})
    fresh = await gh.get(f"/repos/{REPO}/issues/1")
    assert fresh.status == 200 and fresh.data["title"] == "Renamed"
    assert (await gh.get(f"/repos/{REPO}/issues/1")).from_cache
    uncached = await gh.get(f"/repos/{REPO}/issues/1", cache=False)
    assert uncached.status == 200


# -- primary and secondary rate limits -------------------------------------------------------


async def test_primary_limit_raises_rate_limited_and_refuses_before_sending(
    fake_github: FakeGitHub, make_client: MakeClient, clock: FakeClock, sleeps: Sleeps
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    await gh.get(f"/repos/{REPO}")
    fake_github.exhaust_primary_limit(reset_in=120)
    with pytest.raises(RateLimited) as caught:
        await gh.get(f"/repos/{REPO}/issues/1")
    error = caught.value
    assert type(error) is RateLimited
    assert error.status == 403
    assert error.reset_at == START + 120
    assert error.retry_after == 120
    assert error.resource == "core"
    assert "API rate limit exceeded" in error.message
    assert isinstance(error, GitHubRateLimitError)
    assert classify(error, DEFAULT_RETRY) is Outcome.RATE_LIMITED
    sent = len(fake_github.requests)
    with pytest.raises(RateLimited) as early:
        await gh.get(f"/repos/{REPO}/issues/1")
    assert len(fake_github.requests) == sent  # GitHub asks not to retry before the reset
    assert early.value.status is None and early.value.reset_at == START + 120
    assert sleeps.delays == []
    clock.advance(121)
    assert (await gh.get(f"/repos/{REPO}/issues/1")).status == 200


async def test_primary_limit_bounded_wait_outside_a_worker(
    fake_github: FakeGitHub, make_client: MakeClient, sleeps: Sleeps
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client(rate_limit_wait=300)
    await gh.get(f"/repos/{REPO}")
    fake_github.exhaust_primary_limit(reset_in=120)
    assert (await gh.get(f"/repos/{REPO}/issues/1")).status == 200
    assert sleeps.delays == [120]
    fake_github.exhaust_primary_limit(reset_in=900)
    with pytest.raises(RateLimited):
        await gh.get(f"/repos/{REPO}/issues/1", cache=False)
    assert sleeps.delays == [120]


async def test_secondary_limit_uses_retry_after_then_backs_off(
    fake_github: FakeGitHub, make_client: MakeClient, sleeps: Sleeps
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    await gh.get("/installation/repositories")  # mint the token before the limit starts
    fake_github.secondary_limit(times=1, retry_after=30)
    with pytest.raises(SecondaryRateLimited) as caught:
        await gh.get(f"/repos/{REPO}")
    assert caught.value.retry_after == 30
    assert caught.value.status == 403
    assert classify(caught.value, DEFAULT_RETRY) is Outcome.RATE_LIMITED
    fake_github.secondary_limit(times=2, retry_after=None)
    waits = []
    for _ in range(2):
        with pytest.raises(SecondaryRateLimited) as again:
            await gh.get(f"/repos/{REPO}")
        waits.append(again.value.retry_after)
    assert waits == [120, 240]  # the third hit in a row: at least 60 s, doubling
    assert (await gh.get(f"/repos/{REPO}")).status == 200
    fake_github.secondary_limit(times=1, retry_after=None)
    with pytest.raises(SecondaryRateLimited) as reset:
        await gh.get(f"/repos/{REPO}")
    assert reset.value.retry_after == 60  # a success ends the streak
    assert sleeps.delays == []


async def test_secondary_limit_bounded_wait(
    fake_github: FakeGitHub, make_client: MakeClient, sleeps: Sleeps
) -> None:
    fake_github.add_repo(REPO)
    gh = make_client(rate_limit_wait=100)
    await gh.get("/installation/repositories")
    fake_github.secondary_limit(times=1, retry_after=30)
    assert (await gh.get(f"/repos/{REPO}")).status == 200
    assert sleeps.delays == [30]


async def test_per_installation_concurrency_cap(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    state = {"now": 0, "max": 0}

    async def probe(request: Request, credential: Credential) -> Reply:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.1)
        state["now"] -= 1
        return Reply(200, {"ok": True})

    fake_github.add_route("/probe", probe)
    gh = make_client(max_concurrency=4)
    await asyncio.gather(*(gh.get("/probe", cache=False) for _ in range(24)))
    assert 1 <= state["max"] <= 4
    state["max"] = 0
    wide = make_client(max_concurrency=100)
    await asyncio.gather(*(wide.get("/probe", cache=False) for _ in range(24)))
    assert state["max"] > 4


# -- retries ---------------------------------------------------------------------------------


async def test_502s_that_clear_after_two_tries(
    fake_github: FakeGitHub, make_client: MakeClient, sleeps: Sleeps
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    await gh.get(f"/repos/{REPO}")  # mint the token first
    fake_github.fail_next(502, times=2, path_prefix="/repos")
    response = await gh.get(f"/repos/{REPO}/issues/1")
    assert response.status == 200
    assert gets(fake_github, f"/repos/{REPO}/issues/1") == 3
    assert sleeps.delays == [0.5, 1.0]


async def test_server_errors_give_up_and_are_transient_for_celery(
    fake_github: FakeGitHub, make_client: MakeClient, sleeps: Sleeps
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    await gh.get(f"/repos/{REPO}")
    fake_github.fail_next(503, times=10, path_prefix="/repos")
    with pytest.raises(ServerError) as caught:
        await gh.get(f"/repos/{REPO}/issues/1")
    assert caught.value.status == 503
    assert sleeps.delays == [0.5, 1.0, 2.0]
    assert classify(caught.value, DEFAULT_RETRY) is Outcome.RETRY


async def test_post_is_not_retried_on_5xx_and_4xx_never(
    fake_github: FakeGitHub, make_client: MakeClient, sleeps: Sleeps
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    await gh.get(f"/repos/{REPO}")
    fake_github.fail_next(502, times=1, path_prefix="/repos")
    with pytest.raises(ServerError):
        await gh.post(f"/repos/{REPO}/issues/1/comments", {"body": "once"})
    assert len(fake_github.requests_to(f"/repos/{REPO}/issues/1/comments", "POST")) == 1
    with pytest.raises(NotFound):
        await gh.get(f"/repos/{REPO}/issues/99")
    assert gets(fake_github, f"/repos/{REPO}/issues/99") == 1
    assert sleeps.delays == []


async def test_connection_errors_retry_then_raise(
    make_auth: Callable[..., GitHubAppAuth], client_options: dict[str, Any], sleeps: Sleeps
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncGitHubClient(
        token="ghu_x", base_url=f"http://127.0.0.1:{port}", **client_options
    ) as gh:
        with pytest.raises(GitHubConnectionError) as caught:
            await gh.get("/user")
        assert sleeps.delays == [0.5, 1.0, 2.0]
        assert isinstance(caught.value, ConnectionError)
        assert classify(caught.value, DEFAULT_RETRY) is Outcome.RETRY
        sleeps.delays.clear()
        with pytest.raises(GitHubConnectionError):
            await gh.get("/user", retry=False)
        assert sleeps.delays == []


async def test_timeouts_are_retried_then_raise_github_timeout(
    fake_github: FakeGitHub, make_client: MakeClient, sleeps: Sleeps
) -> None:
    fake_github.add_repo(REPO)
    gh = make_client(timeout=0.05)
    assert gh.auth is not None
    await gh.auth.aget_access_token(fake_github.installation_ids[0])  # auth has its own timeout
    fake_github.latency = 0.5
    with pytest.raises(GitHubTimeout) as caught:
        await gh.get(f"/repos/{REPO}", cache=False)
    assert isinstance(caught.value, TimeoutError)
    assert len(sleeps.delays) == 3
    assert classify(caught.value, DEFAULT_RETRY) is Outcome.RETRY


# -- tokens ----------------------------------------------------------------------------------


async def test_token_expiring_mid_run_is_renewed_before_use(
    fake_github: FakeGitHub, make_client: MakeClient, clock: FakeClock
) -> None:
    fake_github.add_repo(REPO)
    gh = make_client()
    await gh.get(f"/repos/{REPO}", cache=False)
    first = next(iter(fake_github.tokens))
    clock.advance(3600 - 120)  # inside the 5-minute refresh margin
    await gh.get(f"/repos/{REPO}", cache=False)
    assert fake_github.token_request_count() == 2
    assert fake_github.token_is_valid(first)  # renewed early, not after a 401
    clock.advance(200)
    assert not fake_github.token_is_valid(first)
    assert (await gh.get(f"/repos/{REPO}", cache=False)).status == 200


async def test_the_stateless_token_format_works_like_the_classic_one(
    fake_github: FakeGitHub, make_client: MakeClient, clock: FakeClock
) -> None:
    """GitHub's ``ghs_<app id>_<JWT>`` installation tokens (rolled out from April 2026) are
    hundreds of characters long: nothing may assume the classic 40."""
    fake_github.token_format = "stateless"
    fake_github.add_repo(REPO)
    gh = make_client()
    assert (await gh.get(f"/repos/{REPO}", cache=False)).status == 200
    (token,) = fake_github.tokens
    assert token.startswith(f"ghs_{fake_github.app_id}_") and len(token) > 400
    assert token.count(".") == 2
    created = await gh.post(f"/repos/{REPO}/issues", json={"title": "long token"})
    assert created.status == 201
    # Cached and reused, then renewed before it expires, like any token.
    assert (await gh.get(f"/repos/{REPO}", cache=False)).status == 200
    assert fake_github.token_request_count() == 1
    clock.advance(3600 - 120)
    assert (await gh.get(f"/repos/{REPO}", cache=False)).status == 200
    assert fake_github.token_request_count() == 2
    assert all(len(t) > 400 for t in fake_github.tokens)


async def test_a_401_refreshes_the_token_once(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO)
    gh = make_client()
    await gh.get(f"/repos/{REPO}", cache=False)
    for issued in fake_github.tokens.values():
        issued.revoked = True
    assert (await gh.get(f"/repos/{REPO}", cache=False)).status == 200
    assert fake_github.token_request_count() == 2
    fake_github.fail_next(401, times=2, path_prefix="/repos")
    with pytest.raises(Unauthorized) as caught:
        await gh.get(f"/repos/{REPO}", cache=False)
    assert isinstance(caught.value, GithubUnauthorized)
    assert fake_github.token_request_count() == 3


async def test_100_concurrent_calls_mint_one_token(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    results = await asyncio.gather(
        *(gh.get(f"/repos/{REPO}/issues/1", cache=False) for _ in range(100))
    )
    assert {r.status for r in results} == {200}
    assert fake_github.token_request_count() == 1


async def test_tokens_never_reach_errors_or_logs(
    fake_github: FakeGitHub, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_github.add_repo(REPO)
    gh = make_client()
    await gh.get(f"/repos/{REPO}")
    token = next(iter(fake_github.tokens))
    fake_github.fail_next(401, times=2, path_prefix="/repos")
    with pytest.raises(Unauthorized) as caught:
        await gh.get(f"/repos/{REPO}", cache=False)
    error = caught.value
    text = " ".join([str(error), repr(error), str(error.headers), str(error.data), repr(gh)])
    assert token not in text
    assert token not in caplog.text
    assert "token" not in gh.identity


# -- the error tree --------------------------------------------------------------------------


async def test_errors_carry_githubs_message_and_compat_classes(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    with pytest.raises(NotFound) as missing:
        await gh.get("/repos/octo/nope")
    assert isinstance(missing.value, GithubAppUnkownObject)
    assert missing.value.status == 404
    assert missing.value.message == "Not Found"
    assert missing.value.documentation_url == "https://docs.github.com/rest"
    assert missing.value.request_id
    assert "GET" in str(missing.value) and "/repos/octo/nope" in str(missing.value)
    with pytest.raises(ValidationFailed) as invalid:
        await gh.post(f"/repos/{REPO}/issues", {"body": "no title"})
    assert isinstance(invalid.value, GitHubAppValidationError)
    assert invalid.value.errors == [
        {"resource": "Issue", "code": "missing_field", "field": "title"}
    ]
    fake_github.fail_next(
        403, json={"message": "Resource not accessible by integration", "documentation_url": "d"}
    )
    with pytest.raises(Forbidden) as forbidden:
        await gh.get(f"/repos/{REPO}")
    assert isinstance(forbidden.value, GitHubAppBadCredentials)
    assert forbidden.value.message == "Resource not accessible by integration"
    fake_github.fail_next(418, json={"message": "teapot"})
    with pytest.raises(HTTPError) as other:
        await gh.get(f"/repos/{REPO}")
    assert type(other.value) is HTTPError and other.value.status == 418
    for error in (missing.value, invalid.value, forbidden.value, other.value):
        assert isinstance(error, GitHubError) and isinstance(error, GitHubAppError)
        assert classify(error, DEFAULT_RETRY) is Outcome.FAIL


def test_error_classes_classify_for_the_celery_policy() -> None:
    cases: list[tuple[GitHubAppError, Outcome]] = [
        (RateLimited("x", 403, retry_after=10, reset_at=START + 10), Outcome.RATE_LIMITED),
        (SecondaryRateLimited("x", 403, retry_after=60), Outcome.RATE_LIMITED),
        (ServerError("x", 502), Outcome.RETRY),
        (GitHubConnectionError(), Outcome.RETRY),
        (GitHubTimeout(), Outcome.RETRY),
        (NotFound("x", 404), Outcome.FAIL),
        (Unauthorized("x", 401), Outcome.FAIL),
        (Forbidden("x", 403), Outcome.FAIL),
        (ValidationFailed("x", 422), Outcome.FAIL),
    ]
    for error, expected in cases:
        assert classify(error, DEFAULT_RETRY) is expected, error
    assert RateLimited("x", retry_after=5).retry_after == 5


# -- URLs, identities, sessions --------------------------------------------------------------


def test_api_urls_for_github_and_enterprise() -> None:
    assert api_urls(None) == ("https://api.github.com", "https://api.github.com/graphql")
    assert api_urls("https://ghe.example.com") == (
        "https://ghe.example.com/api/v3",
        "https://ghe.example.com/api/graphql",
    )
    assert api_urls("https://ghe.example.com/api/v3/") == (
        "https://ghe.example.com/api/v3",
        "https://ghe.example.com/api/graphql",
    )
    with pytest.raises(ValueError):
        api_urls("ghe.example.com")


async def test_enterprise_base_url(
    enterprise_github: FakeGitHub, clock: FakeClock, client_options: dict[str, Any]
) -> None:
    enterprise_github.add_repo(REPO, issues=1)
    auth = GitHubAppAuth(
        enterprise_github.app_id,
        enterprise_github.private_key_pem,
        base_url=enterprise_github.base_url or "",
        clock=clock,
    )
    iid = enterprise_github.installation_ids[0]
    async with AsyncGitHubClient(
        auth, iid, base_url=enterprise_github.base_url, **client_options
    ) as gh:
        assert gh.rest_url == enterprise_github.base_url
        assert gh.graphql_url == f"{enterprise_github.root_url}/api/graphql"
        assert (await gh.get(f"/repos/{REPO}/issues/1")).data["number"] == 1
        assert (await gh.graphql("query { viewer { login } }"))["viewer"]["login"]
        assert enterprise_github.requests_to("/api/graphql", "POST")
    await auth.aclose()


async def test_refuses_to_send_credentials_elsewhere(make_client: MakeClient) -> None:
    gh = make_client()
    with pytest.raises(GitHubError, match="outside"):
        await gh.get("https://evil.example.com/steal")


async def test_app_and_user_identities_share_one_session(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    gh = make_client()
    app = gh.as_app()
    assert app.session is gh.session and app.identity == "app:12345"
    installations = [i["id"] async for i in app.list_installations()]
    assert installations == fake_github.installation_ids
    token = (await gh.auth.aget_access_token(fake_github.installation_ids[0])).token  # type: ignore[union-attr]
    async with AsyncGitHubClient(
        token=token, identity="user:7", base_url=fake_github.base_url
    ) as user:
        assert user.identity == "user:7"
        assert (await user.get("/installation/repositories")).status == 200
    plain = AsyncGitHubClient(token=token, base_url=fake_github.base_url)
    assert plain.identity.startswith("user:") and token not in plain.identity
    await plain.aclose()


async def test_a_shared_session_is_not_closed_by_its_clients(
    fake_github: FakeGitHub, make_auth: Callable[..., GitHubAppAuth], client_options: dict[str, Any]
) -> None:
    fake_github.add_repo(REPO)
    auth = make_auth()
    session = GitHubSession(fake_github.base_url, **client_options)
    for iid in fake_github.installation_ids:
        async with AsyncGitHubClient(auth, iid, session=session) as gh:
            await gh.get(f"/repos/{REPO}")
    assert session.tracker.get("installation:40000001") is not None
    assert len(session.tracker.snapshot()) == 3
    await session.aclose()
    await auth.aclose()
    with pytest.raises(TypeError):
        AsyncGitHubClient(auth, 1, session=session, timeout=3)


def test_the_pool_is_split_into_small_shards() -> None:
    from ghapp_celery.github._client_transport import ShardedAsyncTransport, shard_limits

    count, each = shard_limits(httpx.Limits(max_connections=100, max_keepalive_connections=100))
    assert (count, each.max_connections, each.max_keepalive_connections) == (10, 10, 10)
    count, each = shard_limits(httpx.Limits(max_connections=25, max_keepalive_connections=5))
    assert (count, each.max_connections, each.max_keepalive_connections) == (3, 9, 2)
    assert shard_limits(httpx.Limits(max_connections=4))[0] == 1
    transport = ShardedAsyncTransport(httpx.Limits(max_connections=30))
    assert len(transport.shards) == 3


async def test_a_github_call_imports_nothing(
    fake_github: FakeGitHub, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No module lookups per request: httpcore imports sniffio on every request and lock, and
    without sniffio installed each of those was a failed import searching sys.path."""
    fake_github.add_repo(REPO, issues=1)
    gh = make_client()
    await gh.get(f"/repos/{REPO}/issues/1", cache=False)  # first use may import for real
    looked_up: list[str] = []

    class Spy(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, *args: Any, **kwargs: Any) -> None:
            looked_up.append(name)

    monkeypatch.setattr(sys, "meta_path", [Spy(), *sys.meta_path])
    await asyncio.gather(*(gh.get(f"/repos/{REPO}/issues/1", cache=False) for _ in range(5)))
    assert looked_up == []


def test_every_shard_and_twin_uses_the_process_tls_context() -> None:
    """One CA bundle loaded per process, not one per httpx pool (~1 MB each)."""
    from ghapp_celery.github._client_transport import (
        ShardedAsyncTransport,
        ShardedTransport,
        shared_ssl_context,
    )

    limits = httpx.Limits(max_connections=100)
    shards = [*ShardedAsyncTransport(limits).shards, *ShardedTransport(limits).shards]
    # httpx's pool keeps its SSL context privately (httpcore's ConnectionPool): read it there.
    contexts = {id(shard._pool._ssl_context) for shard in shards}  # type: ignore[attr-defined]
    assert len(shards) == 20 and contexts == {id(shared_ssl_context())}
    assert shared_ssl_context().verify_mode is ssl.CERT_REQUIRED  # still verifying


async def test_requests_spread_over_the_shards(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO, issues=1)
    gh = make_client(limits=httpx.Limits(max_connections=30, max_keepalive_connections=30))
    await asyncio.gather(*(gh.get(f"/repos/{REPO}/issues/1", cache=False) for _ in range(30)))
    from ghapp_celery.github._client_transport import ShardedAsyncTransport

    transport = gh.session.ahttp()._transport
    assert isinstance(transport, ShardedAsyncTransport)
    used = [len(shard._pool.connections) for shard in transport.shards]
    assert len(used) == 3 and all(n >= 1 for n in used)


async def test_429_with_retry_after_is_a_secondary_limit(
    fake_github: FakeGitHub, make_client: MakeClient
) -> None:
    fake_github.add_repo(REPO)
    gh = make_client()
    await gh.get("/installation/repositories")
    fake_github.fail_next(
        429,
        headers={"retry-after": "5"},
        json={"message": "You have exceeded a secondary rate limit."},
    )
    with pytest.raises(SecondaryRateLimited) as caught:
        await gh.get(f"/repos/{REPO}")
    assert caught.value.status == 429 and caught.value.retry_after == 5


async def test_last_modified_revalidation_without_an_etag(client_options: dict[str, Any]) -> None:
    """FakeGitHub always sends an ETag; an answer with only Last-Modified needs respx."""
    import respx

    stamp = "Tue, 01 Jul 2025 10:00:00 GMT"
    with respx.mock(base_url="https://api.github.com") as mock:
        route = mock.get("/repos/o/r").mock(
            side_effect=[
                httpx.Response(200, json={"id": 1}, headers={"last-modified": stamp}),
                httpx.Response(304),
            ]
        )
        async with AsyncGitHubClient(token="ghu_test", **client_options) as gh:
            await gh.get("/repos/o/r")
            again = await gh.get("/repos/o/r")
        assert again.from_cache and again.data == {"id": 1}
        assert route.calls[1].request.headers["if-modified-since"] == stamp
        assert "if-none-match" not in route.calls[1].request.headers
