"""GitHubClient, the blocking twin, against FakeGitHub over HTTP: the same rules as the async
client (it drives the same Exchange), plus the per-process session registry (client_for)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from ghapp_celery.exceptions import NotFound, RateLimited, SecondaryRateLimited, Unauthorized
from ghapp_celery.github import (
    AsyncGitHubClient,
    GitHubAppAuth,
    GitHubClient,
    GitHubSession,
    aclose_sessions,
    client_for,
    configure_sessions,
    session_for,
    session_resource,
    sync_client_for,
)
from ghapp_celery.testing import FakeClock, FakeGitHub

if TYPE_CHECKING:
    from tests._github_fixtures import Sleeps

pytest_plugins = ["tests._github_fixtures"]

START = 1_700_000_000
REPO = "octo/hello"


@pytest.fixture
def gh(
    fake_github: FakeGitHub, make_auth: Callable[..., GitHubAppAuth], client_options: dict[str, Any]
) -> Iterator[GitHubClient]:
    fake_github.add_repo(REPO, issues=300)
    with GitHubClient(make_auth(), fake_github.installation_ids[0], **client_options) as client:
        yield client


def test_sync_get_paginate_and_etag(fake_github: FakeGitHub, gh: GitHubClient) -> None:
    first = gh.get(f"/repos/{REPO}/issues/1")
    assert first.status == 200 and first.data["number"] == 1
    second = gh.get(f"/repos/{REPO}/issues/1")
    assert second.status == 304 and second.from_cache and second.data == first.data
    assert second.rate_limit and first.rate_limit
    assert second.rate_limit.remaining == first.rate_limit.remaining
    numbers = [i["number"] for i in gh.paginate(f"/repos/{REPO}/issues")]
    assert numbers == list(range(1, 301))
    assert len(list(gh.list_issues(REPO, max_items=120))) == 120
    assert len(list(gh.pages(f"/repos/{REPO}/issues", max_pages=2))) == 2


def test_sync_helpers_and_errors(fake_github: FakeGitHub, gh: GitHubClient) -> None:
    comment = gh.create_comment(REPO, 1, "hello")
    assert comment["body"] == "hello"
    assert gh.patch(f"/repos/{REPO}/issues/1", {"state": "closed"}).data["state"] == "closed"
    assert gh.put(f"/repos/{REPO}/issues/1/labels", {"labels": ["x"]}).status == 200
    assert gh.delete(f"/repos/{REPO}/issues/comments/{comment['id']}").status == 204
    assert gh.post(f"/repos/{REPO}/issues", {"title": "t"}).status == 201
    with pytest.raises(NotFound):
        gh.get_issue(REPO, 9999)
    data = gh.graphql("query { viewer { login } }")
    assert data["viewer"]["login"] == "fake-app[bot]"
    query = (
        'query($cursor: String) { repository(owner: "octo", name: "hello") { '
        "issues(first: 100, after: $cursor) { nodes { number } "
        "pageInfo { hasNextPage endCursor } } } }"
    )
    assert len(list(gh.graphql_paginate(query, path="repository.issues"))) == 301


def test_sync_rate_limits_retries_and_tokens(
    fake_github: FakeGitHub, gh: GitHubClient, clock: FakeClock, sleeps: Sleeps
) -> None:
    gh.get(f"/repos/{REPO}")
    fake_github.fail_next(502, times=2, path_prefix="/repos")
    assert gh.get(f"/repos/{REPO}", cache=False).status == 200
    assert sleeps.delays == [0.5, 1.0]
    fake_github.secondary_limit(times=1, retry_after=45)
    with pytest.raises(SecondaryRateLimited) as secondary:
        gh.get(f"/repos/{REPO}", cache=False)
    assert secondary.value.retry_after == 45
    reset = int(clock()) + 60
    fake_github.exhaust_primary_limit(reset_in=60)
    with pytest.raises(RateLimited) as primary:
        gh.get(f"/repos/{REPO}", cache=False)
    assert primary.value.reset_at == reset
    clock.advance(61)
    for issued in fake_github.tokens.values():
        issued.revoked = True
    assert gh.get(f"/repos/{REPO}", cache=False).status == 200  # one refresh after the 401
    fake_github.fail_next(401, times=2, path_prefix="/repos")
    with pytest.raises(Unauthorized):
        gh.get(f"/repos/{REPO}", cache=False)


def test_sync_concurrent_threads_share_one_token(fake_github: FakeGitHub, gh: GitHubClient) -> None:
    statuses: list[int] = []

    def call() -> None:
        statuses.append(gh.get(f"/repos/{REPO}/issues/1", cache=False).status)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 20
    assert fake_github.token_request_count() == 1


def test_client_for_shares_one_session_per_loop(
    fake_github: FakeGitHub, make_auth: Callable[..., GitHubAppAuth], clock: FakeClock
) -> None:
    fake_github.add_repo(REPO, issues=1)
    auth = make_auth()
    configure_sessions(auth, max_concurrency=10)
    first, second = fake_github.installation_ids[:2]

    async def handlers() -> tuple[AsyncGitHubClient, AsyncGitHubClient]:
        one = client_for(auth, first)
        two = client_for(auth, second)
        await one.get(f"/repos/{REPO}/issues/1")
        again = await client_for(auth, first).get(f"/repos/{REPO}/issues/1")
        assert again.from_cache  # the cache is the loop's, not the client object's
        await two.get(f"/repos/{REPO}")
        assert session_for(auth) is one.session is two.session
        assert one.session.max_concurrency == 10
        assert one.session.clock is clock  # the auth's clock
        await aclose_sessions(auth)
        assert session_for(auth) is not one.session
        await aclose_sessions()
        await auth.aclose()
        return one, two

    one, _ = asyncio.run(handlers())
    blocking = sync_client_for(auth, first)
    assert blocking.session is sync_client_for(auth, second).session
    assert blocking.session is not one.session
    assert blocking.get(f"/repos/{REPO}/issues/1").status == 200
    blocking.session.close()


def test_session_resource_for_the_worker_loop(
    fake_github: FakeGitHub, make_auth: Callable[..., GitHubAppAuth]
) -> None:
    from ghapp_celery.tasks.loop import WorkerLoop

    fake_github.add_repo(REPO)
    auth = make_auth()
    loop = WorkerLoop(name="test-github-loop")
    loop.register_resource("github", *session_resource(auth))
    try:
        session = loop.resource("github")

        async def handler() -> tuple[GitHubSession, int]:
            gh = client_for(auth, fake_github.installation_ids[0])
            status = (await gh.get(f"/repos/{REPO}")).status
            await auth.aclose()
            return gh.session, status

        used, status = loop.run(handler())
        assert used is session and status == 200
    finally:
        loop.shutdown()
    assert session._ahttp is None  # closed on the loop at shutdown
