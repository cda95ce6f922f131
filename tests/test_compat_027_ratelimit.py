"""fastapi-githubapp 0.2.7's rate-limit waits (issue 12, section 1, item 5), in 0.2.7's own test
style: ``unittest.mock`` for ``time.sleep`` and the ghapi client, respx for GitHub's token
endpoint, FastAPI's TestClient for the webhook.

0.2.7's rule, kept: a ``retry-after`` first, then a ``x-ratelimit-reset`` in the future, then
one minute doubling per attempt, *capped at* ``rate_limit_max_sleep``; a wait GitHub names that
is longer than the cap is not waited for: the call raises ``GitHubRateLimitError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from email.message import Message
from typing import Any
from unittest.mock import Mock, call, patch
from urllib.error import HTTPError

import httpx
import pytest
import respx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ghapp_celery import GitHubApp, GitHubRateLimitError, with_rate_limit_handling
from ghapp_celery.context import set_current_delivery
from ghapp_celery.testing import make_private_key
from ghapp_celery.webhooks import signed_request

KEY = make_private_key()
SECRET = "fake-secret"
SECONDARY = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}


@pytest.fixture(autouse=True)
def no_payload_left_behind() -> Iterator[None]:
    yield
    set_current_delivery(None)


def make_app(app: FastAPI | None = None, *, max_sleep: int = 5) -> GitHubApp:
    """0.2.7's TestRateLimitHandling.setup_method: two retries, waits of at most 5 s."""
    github_app = GitHubApp(
        app,
        github_app_id=12345,
        github_app_key=KEY,
        github_app_secret=SECRET,
        rate_limit_retries=2,
        rate_limit_max_sleep=max_sleep,
    )
    github_app.payload = {"installation": {"id": 123}}
    return github_app


def ghapi1_error(code: int, headers: dict[str, str]) -> HTTPError:
    """What ghapi 1.x (0.2.7's) raised: urllib's HTTPError, with ``code`` and ``headers``."""
    message = Message()
    for name, value in headers.items():
        message[name] = value
    return HTTPError("https://api.github.com/repos/o/r", code, "limited", message, None)


def ghapi2_error(code: int, headers: dict[str, str], body: Any) -> httpx.HTTPStatusError:
    """What an httpx-based client raises: the response, with its body, on the exception."""
    request = httpx.Request("POST", "https://api.github.com/repos/o/r/issues/1/comments")
    response = httpx.Response(code, headers=headers, json=body, request=request)
    return httpx.HTTPStatusError("limited", request=request, response=response)


def failing(*errors: Exception) -> tuple[Callable[[], str], list[int]]:
    """A call raising ``errors`` in turn, then answering; and the list of its attempts."""
    attempts: list[int] = []

    def func() -> str:
        attempts.append(1)
        if len(attempts) <= len(errors):
            raise errors[len(attempts) - 1]
        return "success after retry"

    return func, attempts


class MockResponse:
    """0.2.7's test double for ``_calculate_retry_delay``: headers, nothing else."""

    def __init__(self, headers: dict[str, str], status_code: int = 429) -> None:
        self.headers = headers
        self.status_code = status_code


# -- time.sleep is looked up when a wait happens, so patch("time.sleep") lands ----------------


@pytest.mark.parametrize("target", ["time.sleep", "ghapp_celery.compat.time.sleep"])
def test_patching_time_sleep_intercepts_the_wait(target: str) -> None:
    github_app = make_app()
    func, attempts = failing(ghapi1_error(429, {"retry-after": "1"}))
    with patch(target) as mock_sleep:
        assert github_app.retry_with_rate_limit(func) == "success after retry"
    assert len(attempts) == 2
    mock_sleep.assert_called_once_with(1)


# -- rate_limit_max_sleep caps the backoff, which is then retried -----------------------------


def test_the_backoff_without_headers_is_capped_and_retried() -> None:
    # 0.2.7: min(60 * 2**attempt, rate_limit_max_sleep) = 5, twice; then the call answers.
    github_app = make_app()
    func, attempts = failing(ghapi1_error(429, {}), ghapi1_error(429, {}))
    with patch("time.sleep") as mock_sleep:
        assert github_app.retry_with_rate_limit(func) == "success after retry"
    assert len(attempts) == 3
    assert mock_sleep.call_args_list == [call(5), call(5)]


def test_a_secondary_limit_403_waits_the_capped_backoff() -> None:
    github_app = make_app()
    limited = ghapi2_error(403, {"x-ratelimit-remaining": "4000"}, SECONDARY)
    func, attempts = failing(limited)
    with patch("time.sleep") as mock_sleep:
        assert github_app.retry_with_rate_limit(func) == "success after retry"
    mock_sleep.assert_called_once_with(5)
    assert len(attempts) == 2


def test_every_retry_is_capped_until_the_retries_run_out() -> None:
    github_app = make_app()
    func, attempts = failing(*[ghapi1_error(429, {}) for _ in range(5)])
    with patch("time.sleep") as mock_sleep, pytest.raises(GitHubRateLimitError) as caught:
        github_app.retry_with_rate_limit(func)
    assert len(attempts) == 3  # the call and rate_limit_retries=2 retries
    assert mock_sleep.call_args_list == [call(5), call(5)]
    assert caught.value.status == 429


# -- x-ratelimit-reset is honoured ------------------------------------------------------------


def test_a_reset_45_seconds_ahead_waits_about_45_seconds() -> None:
    github_app = make_app(max_sleep=60)
    reset = str(int(time.time()) + 45)
    func, _ = failing(ghapi1_error(429, {"x-ratelimit-reset": reset}))
    with patch("time.sleep") as mock_sleep:
        assert github_app.retry_with_rate_limit(func) == "success after retry"
    (waited,) = mock_sleep.call_args.args
    assert 40 <= waited <= 46


def test_the_retry_delay_calculation_of_0_2_7() -> None:
    # 0.2.7's own test_retry_delay_calculation, as it stands there.
    github_app = make_app()
    assert github_app._calculate_retry_delay(MockResponse({"retry-after": "30"}), 0) == 30
    future_time = int(time.time()) + 45
    delay = github_app._calculate_retry_delay(
        MockResponse({"x-ratelimit-reset": str(future_time)}), 0
    )
    assert 40 <= delay <= 50
    # 60 * 2**1 = 120, capped by rate_limit_max_sleep=5
    assert github_app._calculate_retry_delay(MockResponse({}), 1) == 5


def test_a_secondary_limit_waits_the_backoff_not_the_primary_reset() -> None:
    # The bucket still has requests left, so its reset (an hour away) is not what GitHub asks
    # to wait for; GitHub's docs say one minute, here capped at 5 s. 0.2.7 gave up instead.
    github_app = make_app()
    reset = str(int(time.time()) + 3600)
    headers = {"x-ratelimit-remaining": "4000", "x-ratelimit-reset": reset}
    func, _ = failing(ghapi2_error(403, headers, SECONDARY))
    with patch("time.sleep") as mock_sleep:
        assert github_app.retry_with_rate_limit(func) == "success after retry"
    mock_sleep.assert_called_once_with(5)


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "30"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 600)},
    ],
    ids=["retry-after", "reset"],
)
def test_a_wait_github_names_beyond_the_cap_raises_without_sleeping(
    headers: dict[str, str],
) -> None:
    # GitHub said when to come back; retrying earlier only spends the budget, as 0.2.7 knew.
    github_app = make_app()
    func, attempts = failing(ghapi1_error(429, headers))
    with patch("time.sleep") as mock_sleep, pytest.raises(GitHubRateLimitError) as caught:
        github_app.retry_with_rate_limit(func)
    assert attempts == [1]
    mock_sleep.assert_not_called()
    assert caught.value.retry_after is not None and caught.value.retry_after > 5


# -- and for the app's own calls: get_access_token and list_installations (0.2.7 did the same) --

TOKENS = "https://api.github.com/app/installations/123/access_tokens"
MINTED = httpx.Response(201, json={"token": "ghs_x", "expires_at": None})


@respx.mock
@pytest.mark.parametrize(
    ("headers", "waited"), [({"retry-after": "1"}, 1), ({}, 5)], ids=["retry-after", "backoff"]
)
def test_a_rate_limited_token_mint_waits_through_time_sleep(
    headers: dict[str, str], waited: float
) -> None:
    github_app = make_app()
    route = respx.post(TOKENS).mock(side_effect=[httpx.Response(429, headers=headers), MINTED])
    with patch("time.sleep") as mock_sleep:
        assert github_app.get_access_token(123).token == "ghs_x"
    mock_sleep.assert_called_once_with(waited)
    assert route.call_count == 2


@respx.mock
def test_list_installations_caps_the_secondary_backoff() -> None:
    github_app = make_app()
    limited = httpx.Response(403, headers={"x-ratelimit-remaining": "4000"}, json=SECONDARY)
    respx.get("https://api.github.com/app/installations").mock(
        side_effect=[limited, httpx.Response(200, json=[{"id": 123}])]
    )
    with patch("time.sleep") as mock_sleep:
        assert github_app.list_installations() == [{"id": 123}]
    mock_sleep.assert_called_once_with(5)


# -- the same rule through the decorator, in a webhook handler --------------------------------


@respx.mock
def test_a_decorated_handler_rides_out_a_secondary_limit() -> None:
    app = FastAPI()
    github_app = make_app(app)
    token_route = respx.post("https://api.github.com/app/installations/123/access_tokens").mock(
        return_value=httpx.Response(201, json={"token": "ghs_x", "expires_at": None})
    )
    mock_ghapi = Mock()
    mock_ghapi.issues.create_comment.side_effect = [
        ghapi2_error(403, {"x-ratelimit-remaining": "4000"}, SECONDARY),
        {"id": 456},
    ]

    @github_app.on("issues.opened")
    @with_rate_limit_handling(github_app)
    def comment() -> int:
        client = github_app.get_client()
        return int(client.issues.create_comment(owner="o", repo="r", issue_number=1)["id"])

    body, headers = signed_request(
        "issues", {"action": "opened", "installation": {"id": 123}}, secret=SECRET
    )
    with (
        patch("ghapp_celery.compat.GhApi", return_value=mock_ghapi) as ghapi_class,
        patch("time.sleep") as mock_sleep,
        TestClient(app) as client,
    ):
        answer = client.post("/webhooks/github/", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "HIT", "calls": {"comment": 456}}
    mock_sleep.assert_called_once_with(5)
    assert mock_ghapi.issues.create_comment.call_count == 2
    ghapi_class.assert_called_once_with(token="ghs_x")
    assert token_route.call_count == 1
