"""GitHubAppAuth against FakeGitHub over real HTTP on 127.0.0.1: JWTs, the token cache,
single-flight minting, error mapping and rate-limit waits (with an injected, recorded sleep)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import jwt
import pytest

from ghapp_celery.exceptions import (
    ConfigurationError,
    Forbidden,
    GitHubAppBadCredentials,
    GitHubAppError,
    GithubAppUnkownObject,
    GitHubAppValidationError,
    GitHubRateLimitError,
    GithubUnauthorized,
    NotFound,
    ServerError,
    Unauthorized,
    ValidationFailed,
)
from ghapp_celery.github import GitHubAppAuth, InstallationAuthorization
from ghapp_celery.testing import FakeClock, FakeGitHub, make_private_key

if TYPE_CHECKING:
    from tests._github_fixtures import Sleeps

pytest_plugins = ["tests._github_fixtures"]

START = 1_700_000_000  # where the fixtures' FakeClock starts

MakeAuth = Callable[..., GitHubAppAuth]
T = TypeVar("T")
TOKEN_PATH = "/app/installations/{}/access_tokens"


def run(auth: GitHubAppAuth, call: Coroutine[Any, Any, T]) -> T:
    """Run one async call on a fresh event loop and close that loop's client before it ends."""

    async def main() -> T:
        try:
            return await call
        finally:
            await auth.aclose()

    return asyncio.run(main())


def token_posts(fake: FakeGitHub) -> int:
    """Every POST that reached the token endpoint, refused ones included."""
    return sum(1 for r in fake.requests if r.method == "POST" and r.path.endswith("access_tokens"))


# -- InstallationAuthorization -------------------------------------------------------------------


def test_installation_authorization_parses_githubs_expiry() -> None:
    auth = InstallationAuthorization(
        "ghs_16C7e42F292c6912E7710c838347Ae178B4a", "2016-07-11T22:14:10Z"
    )
    assert auth.expires_at_epoch == 1468275250.0
    assert auth.expires_at == "2016-07-11T22:14:10Z"
    assert not auth.expired(now=1468275249.0)
    assert auth.expired(now=1468275250.0)
    assert auth.expired()  # 2016 is long gone: the old library said False here
    assert not auth.expires_within(300, now=1468274949.0)
    assert auth.expires_within(300, now=1468274950.0)


def test_installation_authorization_other_inputs() -> None:
    assert not InstallationAuthorization("t", None).expired(now=1e12)
    moment = datetime(2016, 7, 11, 22, 14, 10, tzinfo=UTC)
    assert InstallationAuthorization("t", moment).expires_at_epoch == 1468275250.0
    assert (
        InstallationAuthorization("t", "2016-07-11T22:14:10+00:00").expires_at_epoch == 1468275250
    )
    with pytest.raises(ValueError):
        InstallationAuthorization("t", "next tuesday")


def test_installation_authorization_never_shows_its_token() -> None:
    secret = "ghs_16C7e42F292c6912E7710c838347Ae178B4a"
    auth = InstallationAuthorization(secret, "2016-07-11T22:14:10Z")
    assert secret not in repr(auth)
    assert secret not in str(auth)
    assert secret not in f"{auth!r} {auth}"
    assert "2016-07-11T22:14:10Z" in repr(auth)
    assert auth.token == secret


# -- the app JWT ----------------------------------------------------------------------------------


def test_create_jwt_claims(fake_github: FakeGitHub, make_auth: MakeAuth) -> None:
    token = make_auth().create_jwt()
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token,
        fake_github.public_key_pem,
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert header["alg"] == "RS256"
    assert claims["iat"] == int(START) - 60
    assert claims["exp"] == int(START) + 540
    assert claims["exp"] <= START + 600
    assert claims["iss"] == "12345"
    assert isinstance(claims["iss"], str)


def test_create_jwt_never_reaches_past_ten_minutes(make_auth: MakeAuth) -> None:
    claims = jwt.decode(
        make_auth().create_jwt(expiration=3600), options={"verify_signature": False}
    )
    assert claims["exp"] == int(START) + 600
    with pytest.raises(ValueError):
        make_auth().create_jwt(expiration=0)


def test_fake_github_accepts_our_jwt(make_auth: MakeAuth, fake_github: FakeGitHub) -> None:
    assert make_auth().get_app()["id"] == fake_github.app_id
    assert fake_github.requests[-1].headers["authorization"] == "Bearer <redacted>"


def test_missing_or_broken_configuration() -> None:
    key = make_private_key()
    with pytest.raises(ConfigurationError, match="id"):
        GitHubAppAuth(None, key).create_jwt()
    with pytest.raises(ConfigurationError, match="key"):
        GitHubAppAuth(1, None).get_access_token(1)
    with pytest.raises(ConfigurationError) as caught:
        GitHubAppAuth(
            1, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----"
        ).create_jwt()
    assert "c2VjcmV0" not in str(caught.value)
    assert GitHubAppAuth(1, key.encode()).create_jwt()  # bytes work too


# -- installation tokens: requests, cache, refresh -------------------------------------------------


def test_token_request_is_what_github_documents(
    fake_github: FakeGitHub, make_auth: MakeAuth
) -> None:
    iid = fake_github.installation_ids[0]
    token = make_auth().get_access_token(iid)
    assert fake_github.token_is_valid(token.token)
    assert token.expires_at == "2023-11-14T23:13:20Z"
    sent = fake_github.requests[-1]
    assert (sent.method, sent.path, sent.body) == ("POST", TOKEN_PATH.format(iid), b"")
    assert sent.headers["authorization"] == "Bearer <redacted>"
    assert sent.headers["accept"] == "application/vnd.github+json"
    assert sent.headers["x-github-api-version"] == "2022-11-28"
    assert sent.headers["user-agent"] == "ghapp-celery"


def test_legacy_user_id_goes_in_the_body(fake_github: FakeGitHub, make_auth: MakeAuth) -> None:
    make_auth(user_agent="my-app/1.0").get_access_token(fake_github.installation_ids[0], user_id=5)
    sent = fake_github.requests[-1]
    assert json.loads(sent.body) == {"user_id": 5}
    assert sent.headers["user-agent"] == "my-app/1.0"


def test_a_token_asked_for_a_user_is_never_shared_through_the_cache(
    fake_github: FakeGitHub, make_auth: MakeAuth
) -> None:
    auth = make_auth()
    iid = fake_github.installation_ids[0]
    shared = auth.get_access_token(iid)
    for_user = auth.get_access_token(iid, user_id=5)
    assert for_user.token != shared.token and fake_github.token_request_count(iid) == 2
    # Minted for that call only: the installation's callers keep getting the shared token,
    # and asking for the user again mints again.
    assert auth.get_access_token(iid).token == shared.token
    assert auth.cached_token(iid) == shared
    assert auth.get_access_token(iid, user_id=5).token not in (shared.token, for_user.token)

    async def from_a_coroutine() -> tuple[str, str]:
        mine = await auth.aget_access_token(iid, user_id=6)
        return mine.token, (await auth.aget_access_token(iid)).token

    mine, again = asyncio.run(from_a_coroutine())
    assert mine != shared.token and again == shared.token
    assert json.loads(fake_github.requests[-1].body) == {"user_id": 6}
    assert fake_github.token_request_count(iid) == 4


def test_token_is_cached_per_installation(fake_github: FakeGitHub, make_auth: MakeAuth) -> None:
    auth = make_auth()
    first, second = fake_github.installation_ids[:2]
    assert auth.cached_token(first) is None
    token = auth.get_access_token(first)
    assert auth.get_access_token(first) is token
    assert auth.cached_token(first) is token
    other = auth.get_access_token(second)
    assert other.token != token.token
    assert fake_github.token_requests == [first, second]


def test_token_is_refreshed_refresh_margin_before_expiry(
    fake_github: FakeGitHub, make_auth: MakeAuth, clock: FakeClock
) -> None:
    auth = make_auth(refresh_margin=300)
    iid = fake_github.installation_ids[0]
    token = auth.get_access_token(iid)
    clock.advance(3600 - 300 - 1)
    assert auth.get_access_token(iid) is token
    clock.advance(1)
    assert auth.cached_token(iid) is None
    fresh = auth.get_access_token(iid)
    assert fresh.token != token.token
    assert fresh.expires_at_epoch == clock() + 3600
    assert fake_github.token_request_count(iid) == 2


def test_invalidate_after_a_401(fake_github: FakeGitHub, make_auth: MakeAuth) -> None:
    auth = make_auth()
    iid = fake_github.installation_ids[0]
    token = auth.get_access_token(iid)
    fake_github.tokens[token.token].revoked = True  # GitHub now answers 401 for it
    auth.invalidate(iid, token="ghs_some_other_token")  # a stale 401 leaves the cache alone
    assert auth.get_access_token(iid) is token
    auth.invalidate(iid)
    fresh = auth.get_access_token(iid)
    assert fresh.token != token.token
    assert fake_github.token_is_valid(fresh.token)
    auth.invalidate(12345678)  # unknown installations are fine


def test_one_post_for_a_hundred_threads(fake_github: FakeGitHub, make_auth: MakeAuth) -> None:
    fake_github.latency = 0.2
    auth = make_auth()
    iid = fake_github.installation_ids[0]
    start = threading.Barrier(100)
    results: list[str] = []

    def worker() -> None:
        start.wait()
        results.append(auth.get_access_token(iid).token)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 100
    assert len(set(results)) == 1
    assert token_posts(fake_github) == 1


@pytest.mark.anyio
async def test_one_post_for_a_hundred_coroutines(
    fake_github: FakeGitHub, make_auth: MakeAuth
) -> None:
    fake_github.latency = 0.2
    auth = make_auth()
    iid = fake_github.installation_ids[0]
    tokens = await asyncio.gather(*(auth.aget_access_token(iid) for _ in range(100)))
    assert {t.token for t in tokens} == {tokens[0].token}
    assert token_posts(fake_github) == 1
    await auth.aclose()


def test_threads_and_an_event_loop_share_one_token(
    fake_github: FakeGitHub, make_auth: MakeAuth
) -> None:
    fake_github.latency = 0.2
    auth = make_auth()
    iid = fake_github.installation_ids[0]

    async def many() -> set[str]:
        tokens = await asyncio.gather(*(auth.aget_access_token(iid) for _ in range(20)))
        await auth.aclose()
        return {t.token for t in tokens}

    box: list[set[str]] = []
    loop_thread = threading.Thread(target=lambda: box.append(asyncio.run(many())), daemon=True)
    loop_thread.start()
    sync_token = auth.get_access_token(iid)
    loop_thread.join(timeout=10)
    assert box == [{sync_token.token}]
    assert token_posts(fake_github) == 1


# The first loop ends with its client open on purpose; its sockets are reclaimed by the GC.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_async_clients_follow_the_event_loop(fake_github: FakeGitHub, make_auth: MakeAuth) -> None:
    auth = make_auth()
    iid = fake_github.installation_ids[0]
    first = asyncio.run(auth.aget_access_token(iid))
    auth.invalidate(iid)
    # A new loop: the client bound to the first (now closed) loop must not be reused.
    second = asyncio.run(auth.aget_access_token(iid))
    assert first.token != second.token
    assert run(auth, auth.aget_app())["id"] == fake_github.app_id
    assert auth.get_access_token(iid) is second  # the sync path sees the async cache
    gc.collect()  # reclaim the first loop's client while its warning is filtered


def test_two_live_event_loops_get_their_own_clients(
    fake_github: FakeGitHub, make_auth: MakeAuth
) -> None:
    fake_github.latency = 0.1
    auth = make_auth()
    ready = threading.Barrier(2)
    found: list[int] = []
    clients: list[set[int]] = []

    async def use() -> None:
        mine = set()
        for _ in range(3):
            found.append((await auth.aget_app())["id"])
            mine.add(id(auth._async_client()))  # an httpx client is bound to its loop
        clients.append(mine)
        await auth.aclose()

    def run_loop() -> None:
        ready.wait()
        asyncio.run(use())

    threads = [threading.Thread(target=run_loop, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert found == [fake_github.app_id] * 6
    assert [len(c) for c in clients] == [1, 1]
    assert clients[0] != clients[1]


# -- errors ---------------------------------------------------------------------------------------


# Issue 11: a mint's answer is mapped by the client's one table, so each error is the client's
# class, which is also the 0.2.7 name (``compat``); a 5xx is a ServerError, retried by a run.
@pytest.mark.parametrize(
    ("status", "expected", "compat"),
    [
        (401, Unauthorized, GithubUnauthorized),
        (403, Forbidden, GitHubAppBadCredentials),
        (404, NotFound, GithubAppUnkownObject),
        (422, ValidationFailed, GitHubAppValidationError),
        (500, ServerError, GitHubAppError),
        (502, ServerError, GitHubAppError),
    ],
)
def test_error_mapping(
    fake_github: FakeGitHub,
    make_auth: MakeAuth,
    sleeps: Sleeps,
    status: int,
    expected: type,
    compat: type,
) -> None:
    fake_github.fail_next(status, times=2, path_prefix="/app/installations/")
    auth = make_auth()
    iid = fake_github.installation_ids[0]
    with pytest.raises(GitHubAppError) as caught:
        auth.get_access_token(iid)
    assert type(caught.value) is expected
    assert isinstance(caught.value, compat)
    assert caught.value.status == status
    assert json.loads(caught.value.data)["documentation_url"] == "https://docs.github.com/rest"
    with pytest.raises(expected):
        run(auth, auth.aget_access_token(iid))
    assert sleeps.delays == []  # an error is not a rate limit
    assert auth.cached_token(iid) is None


def test_real_refusals_from_the_fake(fake_github: FakeGitHub, make_auth: MakeAuth) -> None:
    with pytest.raises(GithubAppUnkownObject):
        make_auth().get_access_token(999)
    stranger = make_auth()
    stranger._private_key = make_private_key(1)  # a key GitHub does not know
    with pytest.raises(GithubUnauthorized) as caught:
        stranger.get_access_token(fake_github.installation_ids[0])
    assert "could not be decoded" in caught.value.data


def test_secrets_stay_out_of_errors_and_logs(
    fake_github: FakeGitHub, make_auth: MakeAuth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = make_auth()
    iid = fake_github.installation_ids[0]
    fake_github.secondary_limit(retry_after=1)
    token = auth.get_access_token(iid).token
    auth.invalidate(iid)
    fake_github.fail_next(401)
    with pytest.raises(GithubUnauthorized) as caught:
        auth.get_access_token(iid)
    jwt_text = auth.create_jwt()
    for text in (str(caught.value), repr(caught.value), caplog.text):
        assert token not in text
        assert "eyJ" not in text  # no JWT (its header always starts like this)
    assert jwt_text.startswith("eyJ")
    assert "rate limit" in caplog.text  # the log did say something
    assert token not in repr(auth)


def test_transport_errors_become_github_app_errors(make_auth: MakeAuth) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    auth = make_auth(base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(GitHubAppError) as caught:
        auth.get_access_token(1)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    with pytest.raises(GitHubAppError) as async_caught:
        run(auth, auth.aget_access_token(1))
    assert isinstance(async_caught.value.__cause__, httpx.ConnectError)


# -- rate limits ----------------------------------------------------------------------------------


def test_primary_limit_waits_for_the_reset(
    fake_github: FakeGitHub, make_auth: MakeAuth, sleeps: Sleeps
) -> None:
    fake_github.exhaust_primary_limit(reset_in=1)
    token = make_auth().get_access_token(fake_github.installation_ids[0])
    assert sleeps.delays == [1.0]
    assert fake_github.token_is_valid(token.token)
    assert token_posts(fake_github) == 2


@pytest.mark.anyio
async def test_primary_limit_waits_for_the_reset_async(
    fake_github: FakeGitHub, make_auth: MakeAuth, sleeps: Sleeps
) -> None:
    fake_github.exhaust_primary_limit(reset_in=1)
    auth = make_auth()
    token = await auth.aget_access_token(fake_github.installation_ids[0])
    assert sleeps.delays == [1.0]
    assert fake_github.token_is_valid(token.token)
    await auth.aclose()


def test_primary_limit_too_far_away_raises(
    fake_github: FakeGitHub, make_auth: MakeAuth, sleeps: Sleeps
) -> None:
    fake_github.exhaust_primary_limit(reset_in=3600)
    with pytest.raises(GitHubRateLimitError) as caught:
        make_auth(rate_limit_max_sleep=60).get_access_token(fake_github.installation_ids[0])
    error = caught.value
    assert error.retry_after == 3600
    assert error.status == 403
    assert error.rate_limit_info["remaining"] == "0"
    assert error.rate_limit_info["reset"] == str(int(START) + 3600)
    assert "API rate limit exceeded" in error.data
    assert sleeps.delays == []
    assert token_posts(fake_github) == 1


def test_secondary_limit_obeys_retry_after(
    fake_github: FakeGitHub, make_auth: MakeAuth, sleeps: Sleeps
) -> None:
    fake_github.secondary_limit(times=2, retry_after=7)
    assert make_auth().list_installations() != []
    assert sleeps.delays == [7.0, 7.0]


def test_secondary_limit_without_retry_after_backs_off(
    fake_github: FakeGitHub, make_auth: MakeAuth, sleeps: Sleeps
) -> None:
    fake_github.secondary_limit(times=2, retry_after=None)
    token = make_auth(rate_limit_max_sleep=300).get_access_token(fake_github.installation_ids[0])
    assert sleeps.delays == [60.0, 120.0]
    assert fake_github.token_is_valid(token.token)


@pytest.mark.anyio
async def test_secondary_limit_gives_up_after_the_retries(
    fake_github: FakeGitHub, make_auth: MakeAuth, sleeps: Sleeps
) -> None:
    fake_github.secondary_limit(times=3, retry_after=None)
    auth = make_auth(rate_limit_retries=2, rate_limit_max_sleep=1000)
    with pytest.raises(GitHubRateLimitError) as caught:
        await auth.aget_access_token(fake_github.installation_ids[0])
    assert sleeps.delays == [60.0, 120.0]
    assert caught.value.retry_after == 240
    assert "secondary rate limit" in caught.value.data
    await auth.aclose()


def test_the_secondary_backoff_is_capped_at_max_sleep(
    fake_github: FakeGitHub, make_auth: MakeAuth, sleeps: Sleeps
) -> None:
    # GitHub named no wait, so the backoff (60, then 120) is a guess: 0.2.7 capped it at
    # rate_limit_max_sleep and retried, where a wait GitHub names beyond it raises (above).
    fake_github.secondary_limit(times=2, retry_after=None)
    assert make_auth(rate_limit_max_sleep=60).get_app() is not None
    assert sleeps.delays == [60.0, 60.0]


# -- app endpoints ------------------------------------------------------------------------------


def test_list_installations_pages(clock: FakeClock, sleeps: Sleeps) -> None:
    fake = FakeGitHub(clock=clock, installations=5)
    with fake.serve() as url:
        auth = GitHubAppAuth(fake.app_id, fake.private_key_pem, base_url=url, clock=clock)
        page_two = auth.list_installations(per_page=2, page=2)
        assert [i["id"] for i in page_two] == fake.installation_ids[2:4]
        assert fake.requests[-1].query == "per_page=2&page=2"
        assert page_two[0]["account"]["type"] == "Organization"
        assert [i["id"] for i in auth.list_installations()] == fake.installation_ids
        everything = auth.all_installations(per_page=2)
        assert [i["id"] for i in everything] == fake.installation_ids
        assert [r.query for r in fake.requests[-3:]] == [f"per_page=2&page={n}" for n in (1, 2, 3)]
        assert (
            run(auth, auth.alist_installations(per_page=2, page=3))[0]["id"]
            == fake.installation_ids[4]
        )
        assert len(run(auth, auth.aall_installations(per_page=4))) == 5
        auth.close()


def test_links_to_another_host_are_not_followed(
    fake_github: FakeGitHub, make_auth: MakeAuth
) -> None:
    elsewhere = '<https://evil.example/app/installations?page=2>; rel="next"'
    fake_github.fail_next(200, headers={"link": elsewhere}, json=[])
    with pytest.raises(GitHubAppError, match="outside"):
        make_auth().all_installations()


def test_get_app(fake_github: FakeGitHub, make_auth: MakeAuth) -> None:
    auth = make_auth()
    assert auth.get_app()["slug"] == "fake-app"
    assert run(auth, auth.aget_app())["client_id"] == fake_github.client_id


def test_enterprise_base_url(clock: FakeClock) -> None:
    fake = FakeGitHub(clock=clock, installations=3)
    with fake.serve(prefix="/api/v3"):
        auth = GitHubAppAuth(
            fake.app_id, fake.private_key_pem, base_url=f"{fake.root_url}/api/v3/", clock=clock
        )
        iid = fake.installation_ids[0]
        assert fake.token_is_valid(auth.get_access_token(iid).token)
        assert len(auth.all_installations(per_page=1)) == 3  # Links carry the prefix
        assert {r.path for r in fake.requests} == {TOKEN_PATH.format(iid), "/app/installations"}
        plain = GitHubAppAuth(
            fake.app_id, fake.private_key_pem, base_url=fake.root_url or "", clock=clock
        )
        with pytest.raises(GitHubAppError):
            plain.get_app()
        auth.close()
        plain.close()


def test_close_then_use_again(fake_github: FakeGitHub, make_auth: MakeAuth) -> None:
    auth = make_auth()
    auth.get_app()
    auth.close()
    auth.close()
    assert auth.get_app()["id"] == fake_github.app_id
