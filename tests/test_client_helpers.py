"""Every helper of AsyncGitHubClient once, against FakeGitHub over HTTP: the right method,
path and body, and GitHub's answer back."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ghapp_celery.exceptions import NotFound, ValidationFailed
from ghapp_celery.github import AsyncGitHubClient, GitHubAppAuth
from ghapp_celery.testing import FakeGitHub

pytest_plugins = ["tests._github_fixtures"]
pytestmark = pytest.mark.anyio

REPO = "octo/hello"


@pytest.fixture
async def gh(
    fake_github: FakeGitHub, make_auth: Callable[..., GitHubAppAuth], client_options: dict[str, Any]
) -> AsyncIterator[AsyncGitHubClient]:
    fake_github.add_repo(REPO, issues=3, pulls=2)
    auth = make_auth()
    async with AsyncGitHubClient(auth, fake_github.installation_ids[0], **client_options) as client:
        yield client
    await auth.aclose()


def last(fake: FakeGitHub) -> tuple[str, str, Any]:
    request = fake.requests[-1]
    return request.method, request.path, json.loads(request.body) if request.body else None


async def test_issue_and_comment_helpers(fake_github: FakeGitHub, gh: AsyncGitHubClient) -> None:
    assert (await gh.get_issue(REPO, 1))["title"] == "Issue 1"
    created = await gh.create_issue(REPO, "Bug", "It broke", labels=["bug"])
    assert last(fake_github) == (
        "POST",
        f"/repos/{REPO}/issues",
        {"title": "Bug", "body": "It broke", "labels": ["bug"]},
    )
    number = created["number"]
    assert [lb["name"] for lb in created["labels"]] == ["bug"]
    closed = await gh.update_issue(REPO, number, state="closed")
    assert closed["state"] == "closed"
    comment = await gh.create_comment(REPO, number, "Thanks!")
    assert last(fake_github) == (
        "POST",
        f"/repos/{REPO}/issues/{number}/comments",
        {"body": "Thanks!"},
    )
    edited = await gh.update_comment(REPO, comment["id"], "Thanks a lot!")
    assert edited["body"] == "Thanks a lot!"
    assert [c["body"] async for c in gh.list_comments(REPO, number)] == ["Thanks a lot!"]
    assert await gh.delete_comment(REPO, comment["id"]) is None
    assert [c async for c in gh.list_comments(REPO, number)] == []
    titles = [i["title"] async for i in gh.list_issues(REPO, max_items=2)]
    assert titles == ["Issue 1", "Issue 2"]
    assert last(fake_github)[1] == f"/repos/{REPO}/issues"
    assert "state=open" in fake_github.requests[-1].query


async def test_label_helpers(fake_github: FakeGitHub, gh: AsyncGitHubClient) -> None:
    label = await gh.create_label(REPO, "triage", "#ff0000", "Needs a look")
    assert last(fake_github)[2] == {
        "name": "triage",
        "color": "ff0000",
        "description": "Needs a look",
    }
    assert label["name"] == "triage"
    with pytest.raises(ValidationFailed) as exists:
        await gh.create_label(REPO, "triage")
    assert exists.value.errors[0]["code"] == "already_exists"
    names = [lb["name"] for lb in await gh.add_labels(REPO, 1, ["triage", "bug"])]
    assert names == ["triage", "bug"]
    assert [lb["name"] for lb in await gh.set_labels(REPO, 1, ["docs"])] == ["docs"]
    assert await gh.remove_label(REPO, 1, "docs") == []
    assert last(fake_github)[:2] == ("DELETE", f"/repos/{REPO}/issues/1/labels/docs")
    with pytest.raises(NotFound):
        await gh.remove_label(REPO, 1, "docs")


async def test_pull_request_and_review_helpers(
    fake_github: FakeGitHub, gh: AsyncGitHubClient
) -> None:
    pulls = [p["number"] async for p in gh.list_pulls(REPO)]
    assert pulls == [4, 5]
    pull = await gh.get_pull(REPO, 4)
    assert pull["head"]["ref"] == "feature-1"
    created = await gh.create_pull(REPO, "Add X", "feature-x", "main", "Adds X")
    assert created["base"]["ref"] == "main"
    files = [f["filename"] async for f in gh.list_pull_files(REPO, 4)]
    assert files == ["README.md"]
    review = await gh.create_review(REPO, 4, event="APPROVE", body="LGTM")
    assert review["state"] == "APPROVED"
    assert [r["state"] async for r in gh.list_reviews(REPO, 4)] == ["APPROVED"]
    requested = await gh.request_reviewers(REPO, 4, ["octocat"])
    assert requested["requested_reviewers"] == [{"login": "octocat"}]
    assert last(fake_github)[2] == {"reviewers": ["octocat"], "team_reviewers": []}
    merged = await gh.merge_pull(REPO, 4, merge_method="squash")
    assert merged["merged"] is True
    assert last(fake_github) == ("PUT", f"/repos/{REPO}/pulls/4/merge", {"merge_method": "squash"})
    with pytest.raises(NotFound):
        await gh.get_pull(REPO, 1)  # an issue, not a pull request


async def test_check_and_status_helpers(fake_github: FakeGitHub, gh: AsyncGitHubClient) -> None:
    sha = "a" * 40
    run = await gh.create_check_run(REPO, "lint", sha, status="in_progress")
    assert run["status"] == "in_progress"
    done = await gh.update_check_run(
        REPO, run["id"], status="completed", conclusion="success", output={"title": "ok"}
    )
    assert done["conclusion"] == "success"
    assert [r["name"] async for r in gh.list_check_runs(REPO, sha)] == ["lint"]
    with pytest.raises(ValidationFailed):
        await gh.create_check_run(REPO, "bad", sha, status="completed")
    suite = await gh.create_check_suite(REPO, sha)
    assert await gh.rerequest_check_suite(REPO, suite["id"]) == {}
    await gh.create_status(REPO, sha, "pending", context="ci/build")
    await gh.create_status(REPO, sha, "success", context="ci/build", description="ok")
    combined = await gh.get_combined_status(REPO, sha)
    assert combined["state"] == "success" and combined["total_count"] == 1
    with pytest.raises(ValidationFailed):
        await gh.create_status(REPO, sha, "sideways")


async def test_contents_helpers(fake_github: FakeGitHub, gh: AsyncGitHubClient) -> None:
    created = await gh.create_or_update_file(REPO, "docs/a b.md", "hello", "Add a file")
    sent = fake_github.requests[-1]
    assert sent.path == f"/repos/{REPO}/contents/docs/a b.md"  # sent quoted, as a%20b.md
    assert json.loads(sent.body)["content"] == base64.b64encode(b"hello").decode()
    sha = created["content"]["sha"]
    got = await gh.get_contents(REPO, "docs/a b.md")
    assert base64.b64decode(got["content"]) == b"hello"
    assert got["sha"] == sha
    with pytest.raises(ValidationFailed):  # replacing needs the current sha
        await gh.create_or_update_file(REPO, "docs/a b.md", "new", "Change")
    await gh.create_or_update_file(REPO, "docs/a b.md", b"new", "Change", sha=sha)
    got = await gh.get_contents(REPO, "docs/a b.md")
    await gh.delete_file(REPO, "docs/a b.md", "Remove", got["sha"])
    with pytest.raises(NotFound):
        await gh.get_contents(REPO, "docs/a b.md")
    with pytest.raises(ValueError):
        await gh.get_contents("not-a-repo", "x")


async def test_installation_and_delivery_helpers(
    fake_github: FakeGitHub, gh: AsyncGitHubClient
) -> None:
    repos = [r["full_name"] async for r in gh.list_installation_repositories()]
    assert repos == [REPO]
    app = gh.as_app()
    assert [i["id"] async for i in app.list_installations()] == fake_github.installation_ids
    assert (await app.get_installation(fake_github.installation_ids[1]))["id"] == (
        fake_github.installation_ids[1]
    )
    assert (await app.get_repo_installation(REPO))["id"] == fake_github.installation_ids[0]
    for n in range(130):
        fake_github.add_delivery("issues", "opened", status_code=500 if n % 3 == 0 else 200)
    every = [d async for d in app.list_deliveries()]
    assert len(every) == 130
    assert every[0]["id"] > every[-1]["id"]  # newest first
    assert "cursor=" in fake_github.requests[-1].query  # paged with GitHub's cursor
    failed = [d async for d in app.list_deliveries(status="failure")]
    assert len(failed) == 44 and {d["status_code"] for d in failed} == {500}
    one = await app.get_delivery(failed[0]["id"])
    assert one["guid"] == failed[0]["guid"]
    assert await app.redeliver(failed[0]["id"]) == {}
    assert last(fake_github)[:2] == ("POST", f"/app/hook/deliveries/{failed[0]['id']}/attempts")
    again = fake_github.deliveries[-1]
    assert again["redelivery"] is True and again["guid"] == failed[0]["guid"]
