"""FakeGitHub's repository endpoints over raw HTTP: GitHub's Link header, ETags and which 304s
are free, one budget per resource, and the Enterprise layout."""

from __future__ import annotations

import httpx
from starlette.requests import Request

from ghapp_celery.testing import Credential, FakeGitHub, Reply
from tests.test_fake_github import call, mint

pytest_plugins = ["tests._github_fixtures"]

REPO = "octo/hello"


def get(fake: FakeGitHub, path: str, token: str | None, **headers: str) -> httpx.Response:
    sent = {"User-Agent": "test", **headers}
    if token is not None:
        sent["Authorization"] = f"token {token}"
    return httpx.get(f"{fake.base_url}{path}", headers=sent)


def test_issues_page_with_githubs_link_header(fake_github: FakeGitHub) -> None:
    fake_github.add_repo(REPO, issues=95)
    token = mint(fake_github).json()["token"]
    first = get(fake_github, f"/repos/{REPO}/issues?per_page=30", token)
    assert [i["number"] for i in first.json()][:2] == [1, 2] and len(first.json()) == 30
    assert set(first.links) == {"next", "last"}
    assert first.links["last"]["url"].endswith("per_page=30&page=4")
    middle = get(fake_github, f"/repos/{REPO}/issues?per_page=30&page=2", token)
    assert set(middle.links) == {"next", "last", "first", "prev"}
    last = get(fake_github, f"/repos/{REPO}/issues?per_page=30&page=4", token)
    assert len(last.json()) == 5 and set(last.links) == {"first", "prev"}
    assert all(not k.startswith("_") for i in last.json() for k in i)


def test_authorized_304s_are_free_and_anonymous_ones_are_not(fake_github: FakeGitHub) -> None:
    fake_github.add_repo(REPO, issues=1)
    token = mint(fake_github).json()["token"]
    first = get(fake_github, f"/repos/{REPO}/issues/1", token)
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    again = get(fake_github, f"/repos/{REPO}/issues/1", token, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["x-ratelimit-remaining"] == first.headers["x-ratelimit-remaining"]

    async def public(request: Request, credential: Credential) -> Reply:
        return Reply(200, {"hello": "world"})

    fake_github.add_route("/public", public, auth="none")
    one = get(fake_github, "/public", None)
    two = get(fake_github, "/public", None, **{"If-None-Match": one.headers["etag"]})
    assert two.status_code == 304
    remaining = int(two.headers["x-ratelimit-remaining"])
    assert remaining == int(one.headers["x-ratelimit-remaining"]) - 1  # counted


def test_search_and_graphql_have_their_own_buckets(fake_github: FakeGitHub) -> None:
    fake_github.add_repo(REPO, issues=3)
    token = mint(fake_github).json()["token"]
    core = get(fake_github, f"/repos/{REPO}", token)
    search = get(fake_github, f"/search/issues?q=repo:{REPO}", token)
    graphql = httpx.post(
        f"{fake_github.base_url}/graphql",
        json={"query": "query { viewer { login } }"},
        headers={"Authorization": f"bearer {token}", "User-Agent": "t"},
    )
    assert core.headers["x-ratelimit-resource"] == "core"
    assert search.headers["x-ratelimit-resource"] == "search"
    assert search.headers["x-ratelimit-limit"] == "30"
    assert search.json()["total_count"] == 3 and len(search.json()["items"]) == 3
    assert graphql.headers["x-ratelimit-resource"] == "graphql"
    assert graphql.headers["x-ratelimit-remaining"] == "4999"
    assert fake_github.remaining(token) == 4999
    assert fake_github.remaining(token, "search") == 29


def test_enterprise_layout_serves_graphql_beside_the_rest_root(
    enterprise_github: FakeGitHub,
) -> None:
    token = mint(enterprise_github).json()["token"]
    assert call(enterprise_github, "GET", "/installation/repositories", token).is_success
    root = enterprise_github.root_url
    answer = httpx.post(
        f"{root}/api/graphql",
        json={"query": "query { viewer { login } }"},
        headers={"Authorization": f"bearer {token}", "User-Agent": "t"},
    )
    assert answer.json() == {"data": {"viewer": {"login": "fake-app[bot]"}}}
    assert httpx.post(f"{root}/graphql", json={}).status_code == 404
