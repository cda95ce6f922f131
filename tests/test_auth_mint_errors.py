"""A failed token mint raises from the one error tree, and the retry policy retries it.

Issue 11, section 2: a connection error or a 5xx while minting is a ``GitHubConnectionError`` /
``ServerError`` (it was a plain ``GitHubAppError`` the policy took for permanent), nothing is
retried or slept on in place, and inside a background run a rate limit raises instead of
sleeping on the worker's thread.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from ghapp_celery.exceptions import GitHubConnectionError, GitHubRateLimitError, ServerError
from ghapp_celery.github import GitHubAppAuth
from ghapp_celery.github.auth import no_rate_limit_waits
from ghapp_celery.policy import DEFAULT_RETRY, Outcome, classify
from ghapp_celery.testing import FakeGitHub

if TYPE_CHECKING:
    from tests._github_fixtures import Sleeps

pytest_plugins = ["tests._github_fixtures"]

MakeAuth = Callable[..., GitHubAppAuth]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_while_minting_is_a_server_error_the_policy_retries(
    fake_github: FakeGitHub, make_auth: MakeAuth, sleeps: Sleeps, status: int
) -> None:
    fake_github.fail_next(status, times=2, path_prefix="/app/installations/")
    auth = make_auth()
    iid = fake_github.installation_ids[0]
    with pytest.raises(ServerError) as caught:
        auth.get_access_token(iid)
    assert caught.value.status == status
    assert classify(caught.value, DEFAULT_RETRY) is Outcome.RETRY

    async def mint() -> None:
        try:
            await auth.aget_access_token(iid)
        finally:
            await auth.aclose()

    with pytest.raises(ServerError) as async_caught:
        asyncio.run(mint())
    assert classify(async_caught.value, DEFAULT_RETRY) is Outcome.RETRY
    assert sleeps.delays == []  # not retried in place: the run retries
    tokens = [r for r in fake_github.requests if r.path.endswith("/access_tokens")]
    assert len(tokens) == 2  # one try each, sync and async


def test_a_refused_connection_while_minting_is_a_connection_error_the_policy_retries(
    make_auth: MakeAuth, sleeps: Sleeps
) -> None:
    auth = make_auth(base_url=f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(GitHubConnectionError) as caught:
        auth.get_access_token(1)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert classify(caught.value, DEFAULT_RETRY) is Outcome.RETRY

    async def mint() -> None:
        try:
            await auth.aget_access_token(1)
        finally:
            await auth.aclose()

    with pytest.raises(GitHubConnectionError) as async_caught:
        asyncio.run(mint())
    assert classify(async_caught.value, DEFAULT_RETRY) is Outcome.RETRY
    assert sleeps.delays == []


def test_a_rate_limited_mint_in_a_background_run_raises_instead_of_sleeping(
    fake_github: FakeGitHub, make_auth: MakeAuth, sleeps: Sleeps
) -> None:
    fake_github.exhaust_primary_limit(reset_in=1)  # outside a run this waits 1 s, as in 0.2.7
    auth = make_auth()
    with no_rate_limit_waits(), pytest.raises(GitHubRateLimitError) as caught:
        auth.get_access_token(fake_github.installation_ids[0])
    assert caught.value.retry_after == 1.0  # Celery's countdown to the reset
    assert classify(caught.value, DEFAULT_RETRY) is Outcome.RATE_LIMITED
    assert sleeps.delays == []

    async def in_a_run() -> None:
        try:
            with no_rate_limit_waits():  # a coroutine handler inherits the run's context
                await auth.aget_access_token(fake_github.installation_ids[0])
        finally:
            await auth.aclose()

    fake_github.exhaust_primary_limit(reset_in=5)
    with pytest.raises(GitHubRateLimitError):
        asyncio.run(in_a_run())
    assert sleeps.delays == []
