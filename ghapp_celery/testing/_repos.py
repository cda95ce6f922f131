"""FakeGitHub's repository and issue endpoints: the repository, issues, comments, labels, pull
requests and their reviews, kept in memory in GitHub's JSON shapes.

Lists page as GitHub's do (``_replies.paginate_reply``); a request body GitHub would reject gets
its 422 with ``errors``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.requests import Request

from ghapp_celery.testing._replies import (
    error_reply,
    paginate_reply,
    read_json_object,
    validation_reply,
)
from ghapp_celery.testing._state import API, FakeRepo, FakeState
from ghapp_celery.testing._types import Credential, Endpoint, Reply, iso

__all__ = ["RepoEndpoints"]


class RepoEndpoints:
    """``/repos/{owner}/{repo}``: issues, comments, labels, pulls, reviews."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def endpoints(self) -> list[Endpoint]:
        repo = "/repos/{owner}/{repo}"
        issue = f"{repo}/issues/{{number:int}}"
        pull = f"{repo}/pulls/{{number:int}}"
        return [
            Endpoint(repo, self.get_repo),
            Endpoint(f"{repo}/issues", self.issues, ("GET", "POST")),
            Endpoint(issue, self.issue, ("GET", "PATCH")),
            Endpoint(f"{issue}/comments", self.comments, ("GET", "POST")),
            Endpoint(f"{repo}/issues/comments/{{cid:int}}", self.comment, ("PATCH", "DELETE")),
            Endpoint(f"{issue}/labels", self.issue_labels, ("POST", "PUT")),
            Endpoint(f"{issue}/labels/{{name}}", self.issue_labels, ("DELETE",)),
            Endpoint(f"{repo}/labels", self.create_label, ("POST",)),
            Endpoint(f"{repo}/pulls", self.pulls, ("GET", "POST")),
            Endpoint(pull, self.pull),
            Endpoint(f"{pull}/merge", self.merge, ("PUT",)),
            Endpoint(f"{pull}/files", self.files),
            Endpoint(f"{pull}/reviews", self.reviews, ("GET", "POST")),
            Endpoint(f"{pull}/requested_reviewers", self.reviewers, ("POST",)),
        ]

    # -- repos and issues --------------------------------------------------------------------

    async def get_repo(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        return Reply(200, repo.json()) if repo else error_reply(404)

    async def issues(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        if repo is None:
            return error_reply(404)
        if request.method == "POST":
            data = await read_json_object(request)
            if isinstance(data, Reply):
                return data
            if not data.get("title"):
                return validation_reply("Issue", "missing_field", "title")
            issue = self.state.new_issue(repo, str(data["title"]), data.get("body"))
            for name in data.get("labels") or []:
                issue["labels"].append(self.state.label(repo, str(name)))
            return Reply(201, issue)
        state = request.query_params.get("state", "open")
        found = [i for i in repo.issues if state == "all" or i["state"] == state]
        pulls_only = request.url.path.endswith("/pulls")
        if pulls_only:
            found = [i for i in found if "head" in i]
        return paginate_reply(request, found)

    async def issue(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        issue = repo.issue(int(request.path_params["number"])) if repo else None
        if repo is None or issue is None:
            return error_reply(404)
        if request.method == "PATCH":
            data = await read_json_object(request)
            if isinstance(data, Reply):
                return data
            if "state" in data and data["state"] not in ("open", "closed"):
                return validation_reply("Issue", "invalid", "state")
            for key in ("title", "body", "state"):
                if key in data:
                    issue[key] = data[key]
            if "labels" in data:
                issue["labels"] = [self.state.label(repo, str(n)) for n in data["labels"]]
            issue["updated_at"] = iso(self.state.clock())
        return Reply(200, issue)

    async def comments(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        number = int(request.path_params["number"])
        issue = repo.issue(number) if repo else None
        if repo is None or issue is None:
            return error_reply(404)
        if request.method == "GET":
            return paginate_reply(request, [c for c in repo.comments if c["_issue"] == number])
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        if not data.get("body"):
            return validation_reply("IssueComment", "missing_field", "body")
        cid = self.state.new_id()
        comment = {
            "id": cid,
            "node_id": f"IC_fake{cid}",
            "body": data["body"],
            "user": {"login": "fake-app[bot]", "id": 2, "type": "Bot"},
            "created_at": iso(self.state.clock()),
            "url": f"{API}/repos/{repo.full_name}/issues/comments/{cid}",
            "html_url": f"https://github.com/{repo.full_name}/issues/{number}#issuecomment-{cid}",
            "_issue": number,
        }
        repo.comments.append(comment)
        issue["comments"] += 1
        return Reply(201, comment)

    async def comment(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        cid = int(request.path_params["cid"])
        found = [c for c in repo.comments if c["id"] == cid] if repo else []
        if repo is None or not found:
            return error_reply(404)
        if request.method == "DELETE":
            repo.comments.remove(found[0])
            return Reply(204)
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        found[0]["body"] = data.get("body", found[0]["body"])
        return Reply(200, found[0])

    # -- labels ------------------------------------------------------------------------------

    async def create_label(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        if repo is None:
            return error_reply(404)
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        name = str(data.get("name") or "")
        if not name:
            return validation_reply("Label", "missing_field", "name")
        if name in repo.labels:
            return validation_reply("Label", "already_exists", "name")
        label = self.state.label(repo, name)
        label.update(color=data.get("color", "ededed"), description=data.get("description"))
        return Reply(201, label)

    async def issue_labels(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        issue = repo.issue(int(request.path_params["number"])) if repo else None
        if repo is None or issue is None:
            return error_reply(404)
        if request.method == "DELETE":
            name = request.path_params["name"]
            if not any(lb["name"] == name for lb in issue["labels"]):
                return error_reply(404, "Label does not exist")
            issue["labels"] = [lb for lb in issue["labels"] if lb["name"] != name]
            return Reply(200, issue["labels"])
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        names = [str(n) for n in data.get("labels") or []]
        if request.method == "PUT":
            issue["labels"] = []
        for name in names:
            if not any(lb["name"] == name for lb in issue["labels"]):
                issue["labels"].append(self.state.label(repo, name))
        return Reply(200, issue["labels"])

    # -- pulls and reviews -------------------------------------------------------------------

    async def pulls(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        if repo is None:
            return error_reply(404)
        if request.method == "GET":
            return await self.issues(request, credential)
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        for name in ("title", "head", "base"):
            if not data.get(name):
                return validation_reply("PullRequest", "missing_field", name)
        sha = hashlib.sha1(str(data["head"]).encode()).hexdigest()  # noqa: S324
        pull = self.state.new_issue(
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
        repo = self.state.repo_of(request)
        issue = repo.issue(int(request.path_params["number"])) if repo else None
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
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        event = data.get("event", "COMMENT")
        if event not in ("APPROVE", "REQUEST_CHANGES", "COMMENT"):
            return validation_reply("PullRequestReview", "invalid", "event")
        state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED"}.get(
            event, "COMMENTED"
        )
        review = {"id": self.state.new_id(), "state": state, "body": data.get("body") or ""}
        review["_pull"] = pull["number"]
        repo.reviews.append(review)
        return Reply(200, review)

    async def reviewers(self, request: Request, credential: Credential) -> Reply:
        found = self._pull(request)
        if found is None:
            return error_reply(404)
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        found[1]["requested_reviewers"] = [{"login": n} for n in data.get("reviewers") or []]
        return Reply(201, found[1])
