"""GraphQL through AsyncGitHubClient against FakeGitHub: data, errors in a 200 body (GitHub's
real captured bodies), cursor pagination, the graphql rate-limit bucket, retries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ghapp_celery.exceptions import GraphQLError, HTTPError, RateLimited, ServerError
from ghapp_celery.github import AsyncGitHubClient, GitHubAppAuth
from ghapp_celery.policy import DEFAULT_RETRY, Outcome, classify
from ghapp_celery.testing import FakeGitHub

if TYPE_CHECKING:
    from tests._github_fixtures import Sleeps

pytest_plugins = ["tests._github_fixtures"]
pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).parent / "fixtures/api_responses/gidgethub_samples/GraphQL"
REPO = "octo/hello"
ISSUES = """
query($owner: String!, $name: String!, $cursor: String) {
  repository(owner: $owner, name: $name) {
    issues(first: 100, after: $cursor) {
      nodes { number title }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""


@pytest.fixture
async def gh(
    fake_github: FakeGitHub, make_auth: Callable[..., GitHubAppAuth], client_options: dict[str, Any]
) -> AsyncIterator[AsyncGitHubClient]:
    auth = make_auth()
    async with AsyncGitHubClient(auth, fake_github.installation_ids[0], **client_options) as client:
        yield client
    await auth.aclose()


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return data


async def test_query_returns_data(fake_github: FakeGitHub, gh: AsyncGitHubClient) -> None:
    fake_github.add_repo(REPO, issues=2)
    data = await gh.graphql("query { viewer { login } }")
    assert data == {"viewer": {"login": "fake-app[bot]"}}
    sent = fake_github.requests_to("/graphql", "POST")[0]
    assert json.loads(sent.body) == {"query": "query { viewer { login } }"}
    assert sent.headers["authorization"] == "token <redacted>"
    limit = gh.rate_limit("graphql")
    assert limit is not None and limit.resource == "graphql"
    assert gh.rate_limit("core") is None  # a separate bucket


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed-query-200.json", 'Parse error on ":" (COLON) at [1, 9]'),
        (
            "missing-variable-in-request-200.json",
            "Variable $number_of_repos of type Int! was provided invalid value",
        ),
    ],
)
async def test_githubs_real_error_bodies_raise_graphql_error(
    fake_github: FakeGitHub, gh: AsyncGitHubClient, name: str, message: str
) -> None:
    body = sample(name)
    fake_github.graphql_resolver = lambda query, variables, fake: body
    with pytest.raises(GraphQLError) as caught:
        await gh.graphql("query { viewer { login } }")
    assert caught.value.status == 200
    assert caught.value.message == message
    assert caught.value.errors == body["errors"]
    assert classify(caught.value, DEFAULT_RETRY) is Outcome.FAIL


async def test_partial_data_and_error_types(fake_github: FakeGitHub, gh: AsyncGitHubClient) -> None:
    with pytest.raises(GraphQLError) as caught:
        await gh.graphql(ISSUES, {"owner": "octo", "name": "missing"})
    assert caught.value.types == ["NOT_FOUND"]
    assert caught.value.data == {"repository": None}
    assert "Could not resolve to a Repository" in str(caught.value)
    with pytest.raises(GraphQLError, match="Parse error"):
        await gh.graphql("query { viewer { login }")


async def test_success_sample_round_trips(fake_github: FakeGitHub, gh: AsyncGitHubClient) -> None:
    body = sample("success-200.json")
    fake_github.graphql_resolver = lambda query, variables, fake: body
    data = await gh.graphql("query { viewer { name } }")
    assert data["viewer"]["repositories"]["nodes"][0] == {"name": "actions-workflow-samples"}


async def test_graphql_paginate_walks_the_cursor(
    fake_github: FakeGitHub, gh: AsyncGitHubClient
) -> None:
    fake_github.add_repo(REPO, issues=250)
    variables = {"owner": "octo", "name": "hello"}
    nodes = [n async for n in gh.graphql_paginate(ISSUES, variables, path="repository.issues")]
    assert [n["number"] for n in nodes] == list(range(1, 251))
    sent = [json.loads(r.body) for r in fake_github.requests_to("/graphql", "POST")]
    assert [s["variables"]["cursor"] is None for s in sent] == [True, False, False]
    few = [
        n
        async for n in gh.graphql_paginate(
            ISSUES, variables, path="repository.issues", max_items=120
        )
    ]
    assert len(few) == 120
    one_page = [
        n
        async for n in gh.graphql_paginate(ISSUES, variables, path="repository.issues", max_pages=1)
    ]
    assert len(one_page) == 100
    with pytest.raises(ValueError, match=r"repository\.pulls"):
        [n async for n in gh.graphql_paginate(ISSUES, variables, path="repository.pulls")]


async def test_graphql_rate_limit_in_a_200_body(
    fake_github: FakeGitHub, gh: AsyncGitHubClient
) -> None:
    await gh.graphql("query { viewer { login } }")
    body = {
        "errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for installation."}]
    }
    fake_github.graphql_resolver = lambda query, variables, fake: body
    with pytest.raises(RateLimited) as caught:
        await gh.graphql("query { viewer { login } }")
    limit = gh.rate_limit("graphql")
    assert limit is not None
    assert caught.value.resource == "graphql"
    assert caught.value.reset_at == limit.reset
    assert classify(caught.value, DEFAULT_RETRY) is Outcome.RATE_LIMITED


async def test_queries_retry_5xx_but_mutations_do_not(
    fake_github: FakeGitHub, gh: AsyncGitHubClient, sleeps: Sleeps
) -> None:
    await gh.graphql("query { viewer { login } }")
    fake_github.fail_next(502, times=2, path_prefix="/graphql")
    assert await gh.graphql("query { viewer { login } }")
    assert sleeps.delays == [0.5, 1.0]
    fake_github.fail_next(502, times=1, path_prefix="/graphql")
    with pytest.raises(ServerError):
        await gh.graphql("mutation { viewer { login } }")
    assert sleeps.delays == [0.5, 1.0]


async def test_malformed_json_is_a_400(fake_github: FakeGitHub, gh: AsyncGitHubClient) -> None:
    with pytest.raises(HTTPError) as caught:
        await gh.request("POST", "/graphql", content=b"{not json")
    assert caught.value.status == 400
    assert caught.value.message == "Problems parsing JSON"
