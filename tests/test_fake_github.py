"""FakeGitHub over real HTTP: it must refuse what GitHub refuses and answer in GitHub's shapes."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jwt
import pytest
from starlette.requests import Request

from ghapp_celery.testing import (
    Credential,
    FakeClock,
    FakeGitHub,
    Reply,
    make_private_key,
)

pytest_plugins = ["tests._github_fixtures"]

START = 1_700_000_000  # where the fixtures' FakeClock starts

TOKEN_RE = re.compile(r"^ghs_[A-Za-z0-9]{36}$")


def app_jwt(fake: FakeGitHub, *, key: str | None = None, **claims: Any) -> str:
    now = int(fake.clock())
    payload: dict[str, Any] = {"iat": now - 60, "exp": now + 540, "iss": str(fake.app_id)}
    payload.update(claims)
    return jwt.encode(payload, key or fake.private_key_pem, algorithm="RS256")


def call(
    fake: FakeGitHub, method: str, path: str, token: str | None = None, *, scheme: str = "Bearer"
) -> httpx.Response:
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    return httpx.request(method, f"{fake.base_url}{path}", headers=headers)


def mint(fake: FakeGitHub, installation_id: int | None = None) -> httpx.Response:
    iid = installation_id or fake.installation_ids[0]
    return call(fake, "POST", f"/app/installations/{iid}/access_tokens", app_jwt(fake))


def test_make_private_key_is_cached_per_slot() -> None:
    assert make_private_key() == make_private_key()
    assert make_private_key(1) != make_private_key()
    assert make_private_key(1).startswith("-----BEGIN PRIVATE KEY-----")


def test_fake_clock_moves_only_when_told() -> None:
    fake_clock = FakeClock(100.0)
    assert fake_clock() == 100.0
    fake_clock.advance(2.5)
    assert fake_clock() == 102.5
    fake_clock.set(7)
    assert fake_clock() == 7


def test_issues_a_token_shaped_like_githubs(fake_github: FakeGitHub) -> None:
    response = mint(fake_github)
    assert response.status_code == 201
    body = response.json()
    assert TOKEN_RE.match(body["token"])
    assert body["expires_at"] == "2023-11-14T23:13:20Z"  # START + 3600 s, GitHub's format
    assert body["repository_selection"] == "all"
    assert body["permissions"] == fake_github.permissions
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert fake_github.token_requests == [fake_github.installation_ids[0]]
    assert fake_github.token_is_valid(body["token"])


def test_tokens_expire_on_the_fake_clock(fake_github: FakeGitHub, clock: FakeClock) -> None:
    token = mint(fake_github).json()["token"]
    assert call(fake_github, "GET", "/installation/repositories", token, scheme="token").is_success
    clock.advance(3599)
    assert fake_github.token_is_valid(token)
    clock.advance(1)
    assert not fake_github.token_is_valid(token)
    expired = call(fake_github, "GET", "/installation/repositories", token, scheme="token")
    assert expired.status_code == 401
    assert expired.json()["message"] == "Bad credentials"
    assert not fake_github.token_is_valid("ghs_" + "x" * 36)


def test_a_revoked_token_stops_working(fake_github: FakeGitHub) -> None:
    token = mint(fake_github).json()["token"]
    assert call(fake_github, "DELETE", "/installation/token", token).status_code == 204
    assert call(fake_github, "GET", "/installation/repositories", token).status_code == 401


def test_requested_permissions_must_be_granted(fake_github: FakeGitHub) -> None:
    url = f"{fake_github.base_url}/app/installations/{fake_github.installation_ids[0]}"
    headers = {"Authorization": f"Bearer {app_jwt(fake_github)}"}
    narrowed = httpx.post(
        f"{url}/access_tokens", headers=headers, json={"permissions": {"issues": "read"}}
    )
    assert narrowed.status_code == 201
    assert narrowed.json()["permissions"] == {"issues": "read"}
    too_much = httpx.post(
        f"{url}/access_tokens", headers=headers, json={"permissions": {"administration": "write"}}
    )
    assert too_much.status_code == 422
    broken = httpx.post(f"{url}/access_tokens", headers=headers, content=b"{nope")
    assert broken.status_code == 400
    assert broken.json()["message"] == "Problems parsing JSON"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"key": make_private_key(1)}, "A JSON web token could not be decoded"),
        ({"exp": int(START) - 1}, "'Expiration time' claim ('exp') must be a numeric value"),
        (
            {"exp": int(START) + 601 + 30},
            "'Expiration time' claim ('exp') is too far in the future",
        ),
        ({"iat": int(START) + 120}, "'Issued at' claim ('iat') must be an Integer"),
        ({"iss": "99999"}, "A JSON web token could not be decoded"),
    ],
    ids=["other-key", "expired", "exp-beyond-10-min", "iat-in-future", "wrong-iss"],
)
def test_refuses_a_jwt_github_would_refuse(
    fake_github: FakeGitHub, claims: dict[str, Any], message: str
) -> None:
    token = app_jwt(fake_github, **claims)
    response = call(fake_github, "POST", "/app/installations/40000001/access_tokens", token)
    assert response.status_code == 401
    assert response.json()["message"].startswith(message)
    assert response.json()["documentation_url"].startswith("https://docs.github.com/")
    assert fake_github.token_requests == []


def test_refuses_an_hs256_jwt_and_a_token_where_a_jwt_is_needed(fake_github: FakeGitHub) -> None:
    now = int(fake_github.clock())
    hs = jwt.encode({"iat": now, "exp": now + 60, "iss": "12345"}, "s" * 32, algorithm="HS256")
    assert call(fake_github, "GET", "/app", hs).status_code == 401
    token = mint(fake_github).json()["token"]
    assert call(fake_github, "GET", "/app", token).status_code == 401
    assert call(fake_github, "GET", "/app").json()["message"] == "Requires authentication"


def test_accepts_the_client_id_as_issuer(fake_github: FakeGitHub) -> None:
    token = app_jwt(fake_github, iss=fake_github.client_id)
    assert call(fake_github, "GET", "/app", token).status_code == 200


def test_unknown_installation_is_404(fake_github: FakeGitHub) -> None:
    response = mint(fake_github, installation_id=1)
    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"


def test_get_app_and_installation(fake_github: FakeGitHub) -> None:
    app = call(fake_github, "GET", "/app", app_jwt(fake_github)).json()
    assert app["id"] == fake_github.app_id
    assert app["client_id"] == fake_github.client_id
    assert app["installations_count"] == 3
    iid = fake_github.installation_ids[1]
    one = call(fake_github, "GET", f"/app/installations/{iid}", app_jwt(fake_github)).json()
    assert one["id"] == iid
    assert one["account"]["login"] == "fake-org-2"
    assert one["app_id"] == fake_github.app_id


def test_rate_limit_headers_count_down_per_credential(fake_github: FakeGitHub) -> None:
    first = call(fake_github, "GET", "/app", app_jwt(fake_github))
    second = call(fake_github, "GET", "/app", app_jwt(fake_github))
    token = mint(fake_github).json()["token"]
    with_token = call(fake_github, "GET", "/installation/repositories", token)
    assert first.headers["x-ratelimit-limit"] == "5000"
    assert first.headers["x-ratelimit-remaining"] == "4999"
    assert second.headers["x-ratelimit-remaining"] == "4998"
    assert second.headers["x-ratelimit-used"] == "2"
    assert second.headers["x-ratelimit-reset"] == str(int(START) + 3600)
    assert second.headers["x-ratelimit-resource"] == "core"
    assert with_token.headers["x-ratelimit-remaining"] == "4999"  # its own budget


def test_a_spent_budget_is_a_primary_limit_until_the_window_resets(clock: FakeClock) -> None:
    fake = FakeGitHub(clock=clock, rate_limit=2)
    with fake.serve():
        assert call(fake, "GET", "/app", app_jwt(fake)).status_code == 200
        assert call(fake, "GET", "/app", app_jwt(fake)).status_code == 200
        refused = call(fake, "GET", "/app", app_jwt(fake))
        assert refused.status_code == 403
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert refused.json()["message"] == f"API rate limit exceeded for app ID {fake.app_id}."
        clock.advance(3600)
        assert call(fake, "GET", "/app", app_jwt(fake)).status_code == 200


def test_installations_page_with_githubs_link_header(clock: FakeClock) -> None:
    fake = FakeGitHub(clock=clock, installations=5)
    with fake.serve() as url:
        listing = f"{url}/app/installations"

        def page(n: int) -> httpx.Response:
            return call(fake, "GET", f"/app/installations?per_page=2&page={n}", app_jwt(fake))

        first, middle, last = page(1), page(2), page(3)
        assert [i["id"] for i in first.json()] == fake.installation_ids[:2]
        assert [i["id"] for i in last.json()] == fake.installation_ids[4:]
        assert first.headers["link"] == (
            f'<{listing}?per_page=2&page=2>; rel="next", <{listing}?per_page=2&page=3>; rel="last"'
        )
        assert middle.links["next"]["url"] == f"{listing}?per_page=2&page=3"
        assert middle.links["prev"]["url"] == f"{listing}?per_page=2&page=1"
        assert middle.links["first"]["url"] == f"{listing}?per_page=2&page=1"
        assert set(last.links) == {"first", "prev"}
        everything = call(fake, "GET", "/app/installations", app_jwt(fake))
        assert len(everything.json()) == 5
        assert "link" not in everything.headers


def test_fail_next_matches_a_path_prefix_and_runs_out(fake_github: FakeGitHub) -> None:
    fake_github.fail_next(502, times=2, path_prefix="/app/installations", headers={"x-a": "b"})
    assert call(fake_github, "GET", "/app", app_jwt(fake_github)).status_code == 200
    assert mint(fake_github).status_code == 502
    failed = mint(fake_github)
    assert failed.status_code == 502
    assert failed.headers["x-a"] == "b"
    assert failed.json() == {
        "message": "Bad Gateway",
        "documentation_url": "https://docs.github.com/rest",
    }
    assert mint(fake_github).status_code == 201


def test_fail_next_with_a_custom_body(fake_github: FakeGitHub) -> None:
    fake_github.fail_next(422, json={"message": "Validation Failed", "errors": []})
    assert mint(fake_github).json() == {"message": "Validation Failed", "errors": []}


def test_exhausted_primary_limit(fake_github: FakeGitHub, clock: FakeClock) -> None:
    fake_github.exhaust_primary_limit(reset_in=30)
    refused = mint(fake_github)
    assert refused.status_code == 403
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-reset"] == str(int(START) + 30)
    assert refused.json()["message"] == "API rate limit exceeded for installation ID 40000001."
    clock.advance(30)
    assert mint(fake_github).status_code == 201


@pytest.mark.parametrize("retry_after", [17, None])
def test_secondary_limit(fake_github: FakeGitHub, retry_after: int | None) -> None:
    fake_github.secondary_limit(times=1, retry_after=retry_after)
    refused = mint(fake_github)
    assert refused.status_code == 403
    assert "secondary rate limit" in refused.json()["message"]
    assert refused.headers.get("retry-after") == (None if retry_after is None else "17")
    assert refused.headers["x-ratelimit-remaining"] != "0"
    assert mint(fake_github).status_code == 201


def test_request_log_hides_credentials(fake_github: FakeGitHub) -> None:
    secret = app_jwt(fake_github)
    call(fake_github, "GET", "/app?x=1", secret)
    entry = fake_github.requests[-1]
    assert (entry.method, entry.path, entry.query) == ("GET", "/app", "x=1")
    assert entry.headers["authorization"] == "Bearer <redacted>"
    assert entry.headers["x-github-api-version"] == "2022-11-28"
    assert secret not in repr(fake_github.requests)


def test_unsupported_api_version_and_unknown_paths(fake_github: FakeGitHub) -> None:
    response = httpx.get(
        f"{fake_github.base_url}/app",
        headers={
            "X-GitHub-Api-Version": "2020-01-01",
            "Authorization": f"Bearer {app_jwt(fake_github)}",
        },
    )
    assert response.status_code == 400
    assert "not supported" in response.json()["message"]
    missing = httpx.get(f"{fake_github.base_url}/no/such/thing")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Not Found"
    assert "x-ratelimit-limit" in missing.headers


def test_served_under_an_enterprise_prefix(clock: FakeClock) -> None:
    fake = FakeGitHub(clock=clock)
    with fake.serve(prefix="/api/v3") as url:
        assert url == f"{fake.root_url}/api/v3" == fake.base_url
        assert call(fake, "GET", "/app", app_jwt(fake)).status_code == 200
        assert httpx.get(f"{fake.root_url}/app").status_code == 404
        assert fake.requests[-1].path == "/app"
    assert fake.base_url is None


def test_add_route_goes_through_the_same_checks(fake_github: FakeGitHub) -> None:
    async def whoami(request: Request, credential: Credential) -> Reply:
        return Reply(200, {"installation": credential.installation_id})

    fake_github.add_route("/whoami", whoami, auth="token")
    token = mint(fake_github).json()["token"]
    answer = call(fake_github, "GET", "/whoami", token, scheme="token")
    assert answer.json() == {"installation": fake_github.installation_ids[0]}
    assert call(fake_github, "GET", "/whoami", "ghs_bogus").status_code == 401
