"""FakeGitHub's repository endpoints: issues, comments, labels, pulls, reviews, checks, statuses,
contents, search and the app's webhook deliveries, kept in memory with GitHub's JSON shapes.

Lists page the way GitHub does (``per_page`` default 30, max 100, a ``Link`` header with
``next``/``last``/``first``/``prev``); the deliveries list pages with a ``cursor``. A request body
GitHub would reject gets a 422 with ``errors`` in GitHub's format.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ghapp_celery._fake_github_parts import Credential, Reply, error_reply, int_param, iso

if TYPE_CHECKING:
    from ghapp_celery._fake_github import FakeGitHub

__all__ = ["FakeRepo", "paginate_reply"]

API = "https://api.github.com"


@dataclass
class FakeRepo:
    """One repository's state."""

    full_name: str
    repo_id: int
    issues: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    check_runs: list[dict[str, Any]] = field(default_factory=list)
    check_suites: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        owner, name = self.full_name.split("/")
        return {
            "id": self.repo_id,
            "node_id": f"R_fake{self.repo_id}",
            "name": name,
            "full_name": self.full_name,
            "private": False,
            "owner": {"login": owner, "id": 9_000_001, "type": "Organization"},
            "html_url": f"https://github.com/{self.full_name}",
            "url": f"{API}/repos/{self.full_name}",
            "default_branch": "main",
        }


def _validation(resource: str, code: str, field_name: str) -> Reply:
    reply = error_reply(422, "Validation Failed")
    reply.body["errors"] = [{"resource": resource, "code": code, "field": field_name}]
    return reply


def paginate_reply(request: Request, items: list[Any], wrap: str | None = None) -> Reply:
    """One page of ``items`` with GitHub's Link header; ``wrap`` puts them under a key."""
    per_page = min(100, max(1, int_param(request, "per_page", 30)))
    page = max(1, int_param(request, "page", 1))
    chunk = items[(page - 1) * per_page : page * per_page]
    body: Any = chunk if wrap is None else {"total_count": len(items), wrap: chunk}
    reply = Reply(200, body)
    last = max(1, math.ceil(len(items) / per_page))
    links: list[tuple[int, str]] = []
    if page < last:
        links += [(page + 1, "next"), (last, "last")]
    if page > 1:
        links += [(1, "first"), (page - 1, "prev")]
    if links:
        reply.headers["link"] = ", ".join(
            f'<{request.url.include_query_params(per_page=per_page, page=p)}>; rel="{rel}"'
            for p, rel in links
        )
    return reply


async def _body(request: Request) -> dict[str, Any] | Reply:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return error_reply(400, "Problems parsing JSON")
    if not isinstance(data, dict):
        return error_reply(400, "Body should be a JSON object")
    return data


class _Api:
    """The handlers; state lives on the FakeGitHub (``fake.repos``) under its lock."""

    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake
        self.next_id = 1_000_000

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def repo(self, request: Request) -> FakeRepo | None:
        p = request.path_params
        return self.fake.repos.get(f"{p['owner']}/{p['repo']}")

    def _issue(self, repo: FakeRepo, number: int) -> dict[str, Any] | None:
        if 1 <= number <= len(repo.issues):
            return repo.issues[number - 1]
        return None

    def new_issue(
        self, repo: FakeRepo, title: str, body: str | None, **extra: Any
    ) -> dict[str, Any]:
        number = len(repo.issues) + 1
        now = iso(self.fake.clock())
        issue = {
            "id": self._id(),
            "node_id": f"I_fake{number}",
            "number": number,
            "title": title,
            "body": body,
            "state": "open",
            "labels": [],
            "user": {"login": "octocat", "id": 1, "type": "User"},
            "comments": 0,
            "created_at": now,
            "updated_at": now,
            "url": f"{API}/repos/{repo.full_name}/issues/{number}",
            "html_url": f"https://github.com/{repo.full_name}/issues/{number}",
        }
        issue.update(extra)
        repo.issues.append(issue)
        return issue

    # -- repos and issues --------------------------------------------------------------------

    async def get_repo(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        return Reply(200, repo.json()) if repo else error_reply(404)

    async def issues(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        if repo is None:
            return error_reply(404)
        if request.method == "POST":
            data = await _body(request)
            if isinstance(data, Reply):
                return data
            if not data.get("title"):
                return _validation("Issue", "missing_field", "title")
            issue = self.new_issue(repo, str(data["title"]), data.get("body"))
            for name in data.get("labels") or []:
                issue["labels"].append(self._label(repo, str(name)))
            return Reply(201, issue)
        state = request.query_params.get("state", "open")
        found = [i for i in repo.issues if state == "all" or i["state"] == state]
        pulls_only = request.url.path.endswith("/pulls")
        if pulls_only:
            found = [i for i in found if "head" in i]
        return paginate_reply(request, found)

    async def issue(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        issue = self._issue(repo, int(request.path_params["number"])) if repo else None
        if repo is None or issue is None:
            return error_reply(404)
        if request.method == "PATCH":
            data = await _body(request)
            if isinstance(data, Reply):
                return data
            if "state" in data and data["state"] not in ("open", "closed"):
                return _validation("Issue", "invalid", "state")
            for key in ("title", "body", "state"):
                if key in data:
                    issue[key] = data[key]
            if "labels" in data:
                issue["labels"] = [self._label(repo, str(n)) for n in data["labels"]]
            issue["updated_at"] = iso(self.fake.clock())
        return Reply(200, issue)

    async def comments(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        number = int(request.path_params["number"])
        issue = self._issue(repo, number) if repo else None
        if repo is None or issue is None:
            return error_reply(404)
        if request.method == "GET":
            return paginate_reply(request, [c for c in repo.comments if c["_issue"] == number])
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        if not data.get("body"):
            return _validation("IssueComment", "missing_field", "body")
        cid = self._id()
        comment = {
            "id": cid,
            "node_id": f"IC_fake{cid}",
            "body": data["body"],
            "user": {"login": "fake-app[bot]", "id": 2, "type": "Bot"},
            "created_at": iso(self.fake.clock()),
            "url": f"{API}/repos/{repo.full_name}/issues/comments/{cid}",
            "html_url": f"https://github.com/{repo.full_name}/issues/{number}#issuecomment-{cid}",
            "_issue": number,
        }
        repo.comments.append(comment)
        issue["comments"] += 1
        return Reply(201, comment)

    async def comment(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        cid = int(request.path_params["cid"])
        found = [c for c in repo.comments if c["id"] == cid] if repo else []
        if repo is None or not found:
            return error_reply(404)
        if request.method == "DELETE":
            repo.comments.remove(found[0])
            return Reply(204)
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        found[0]["body"] = data.get("body", found[0]["body"])
        return Reply(200, found[0])

    # -- labels ------------------------------------------------------------------------------

    def _label(self, repo: FakeRepo, name: str) -> dict[str, Any]:
        if name not in repo.labels:
            repo.labels[name] = {"id": self._id(), "name": name, "color": "ededed"}
        return repo.labels[name]

    async def create_label(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        if repo is None:
            return error_reply(404)
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        name = str(data.get("name") or "")
        if not name:
            return _validation("Label", "missing_field", "name")
        if name in repo.labels:
            return _validation("Label", "already_exists", "name")
        label = self._label(repo, name)
        label.update(color=data.get("color", "ededed"), description=data.get("description"))
        return Reply(201, label)

    async def issue_labels(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        issue = self._issue(repo, int(request.path_params["number"])) if repo else None
        if repo is None or issue is None:
            return error_reply(404)
        if request.method == "DELETE":
            name = request.path_params["name"]
            if not any(lb["name"] == name for lb in issue["labels"]):
                return error_reply(404, "Label does not exist")
            issue["labels"] = [lb for lb in issue["labels"] if lb["name"] != name]
            return Reply(200, issue["labels"])
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        names = [str(n) for n in data.get("labels") or []]
        if request.method == "PUT":
            issue["labels"] = []
        for name in names:
            if not any(lb["name"] == name for lb in issue["labels"]):
                issue["labels"].append(self._label(repo, name))
        return Reply(200, issue["labels"])

    # -- pulls and reviews -------------------------------------------------------------------

    async def pulls(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        if repo is None:
            return error_reply(404)
        if request.method == "GET":
            return await self.issues(request, credential)
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        for name in ("title", "head", "base"):
            if not data.get(name):
                return _validation("PullRequest", "missing_field", name)
        sha = hashlib.sha1(str(data["head"]).encode()).hexdigest()  # noqa: S324
        pull = self.new_issue(
            repo,
            str(data["title"]),
            data.get("body"),
            head={"ref": data["head"], "sha": sha},
            base={"ref": data["base"]},
            merged=False,
            requested_reviewers=[],
        )
        return Reply(201, pull)

    def _pull(self, request: Request) -> tuple[FakeRepo, dict[str, Any]] | None:
        repo = self.repo(request)
        issue = self._issue(repo, int(request.path_params["number"])) if repo else None
        if repo is None or issue is None or "head" not in issue:
            return None
        return repo, issue

    async def pull(self, request: Request, credential: Credential) -> Reply:
        found = self._pull(request)
        return Reply(200, found[1]) if found else error_reply(404)

    async def merge(self, request: Request, credential: Credential) -> Reply:
        found = self._pull(request)
        if found is None:
            return error_reply(404)
        pull = found[1]
        if pull["merged"]:
            return error_reply(405, "Pull Request is not mergeable")
        pull.update(merged=True, state="closed")
        return Reply(200, {"sha": pull["head"]["sha"], "merged": True, "message": "merged"})

    async def files(self, request: Request, credential: Credential) -> Reply:
        found = self._pull(request)
        if found is None:
            return error_reply(404)
        items = [{"filename": "README.md", "status": "modified", "additions": 1}]
        return paginate_reply(request, items)

    async def reviews(self, request: Request, credential: Credential) -> Reply:
        found = self._pull(request)
        if found is None:
            return error_reply(404)
        repo, pull = found
        if request.method == "GET":
            return paginate_reply(
                request, [r for r in repo.reviews if r["_pull"] == pull["number"]]
            )
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        event = data.get("event", "COMMENT")
        if event not in ("APPROVE", "REQUEST_CHANGES", "COMMENT"):
            return _validation("PullRequestReview", "invalid", "event")
        state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED"}.get(
            event, "COMMENTED"
        )
        review = {"id": self._id(), "state": state, "body": data.get("body") or ""}
        review["_pull"] = pull["number"]
        repo.reviews.append(review)
        return Reply(200, review)

    async def reviewers(self, request: Request, credential: Credential) -> Reply:
        found = self._pull(request)
        if found is None:
            return error_reply(404)
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        found[1]["requested_reviewers"] = [{"login": n} for n in data.get("reviewers") or []]
        return Reply(201, found[1])
