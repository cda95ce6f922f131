"""FakeGitHub's checks, statuses, contents, search and app-webhook-delivery endpoints, the
GraphQL endpoint, and ``register_api`` wiring every endpoint into a FakeGitHub."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ghapp_celery._fake_github_api import _Api, _body, _validation, paginate_reply
from ghapp_celery._fake_github_parts import Credential, Reply, error_reply, int_param, iso

if TYPE_CHECKING:
    from ghapp_celery._fake_github import FakeGitHub

__all__ = ["register_api"]

CHECK_STATUSES = frozenset({"queued", "in_progress", "completed", "waiting", "requested"})
STATUS_STATES = frozenset({"error", "failure", "pending", "success"})
GRAPHQL_DOCS = "https://docs.github.com/graphql"


class _More(_Api):
    # -- checks ------------------------------------------------------------------------------

    async def create_check_run(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        if repo is None:
            return error_reply(404)
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        for name in ("name", "head_sha"):
            if not data.get(name):
                return _validation("CheckRun", "missing_field", name)
        status = data.get("status", "queued")
        if status not in CHECK_STATUSES:
            return _validation("CheckRun", "invalid", "status")
        if status == "completed" and not data.get("conclusion"):
            return _validation("CheckRun", "missing_field", "conclusion")
        run = {"id": self._id(), "status": status, "conclusion": data.get("conclusion")}
        run.update({k: v for k, v in data.items() if k not in run})
        run["started_at"] = iso(self.fake.clock())
        repo.check_runs.append(run)
        return Reply(201, run)

    async def update_check_run(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        run_id = int(request.path_params["run_id"])
        found = [r for r in repo.check_runs if r["id"] == run_id] if repo else []
        if not found:
            return error_reply(404)
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        if "status" in data and data["status"] not in CHECK_STATUSES:
            return _validation("CheckRun", "invalid", "status")
        found[0].update(data)
        return Reply(200, found[0])

    async def list_check_runs(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        if repo is None:
            return error_reply(404)
        ref = request.path_params["ref"]
        runs = [r for r in repo.check_runs if r["head_sha"] == ref]
        return paginate_reply(request, runs, wrap="check_runs")

    async def create_check_suite(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        if repo is None:
            return error_reply(404)
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        if not data.get("head_sha"):
            return _validation("CheckSuite", "missing_field", "head_sha")
        suite = {"id": self._id(), "head_sha": data["head_sha"], "status": "queued"}
        repo.check_suites.append(suite)
        return Reply(201, suite)

    async def rerequest_suite(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        suite_id = int(request.path_params["suite_id"])
        if repo is None or not any(s["id"] == suite_id for s in repo.check_suites):
            return error_reply(404)
        return Reply(201, {})

    # -- statuses ----------------------------------------------------------------------------

    async def create_status(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        if repo is None:
            return error_reply(404)
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        if data.get("state") not in STATUS_STATES:
            return _validation("Status", "invalid", "state")
        status = {
            "id": self._id(),
            "state": data["state"],
            "context": data.get("context", "default"),
            "description": data.get("description"),
            "target_url": data.get("target_url"),
            "sha": request.path_params["sha"],
            "created_at": iso(self.fake.clock()),
        }
        repo.statuses.append(status)
        return Reply(201, status)

    async def combined_status(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        if repo is None:
            return error_reply(404)
        ref = request.path_params["ref"]
        latest: dict[str, dict[str, Any]] = {}
        for status in repo.statuses:
            if status["sha"] == ref:
                latest[status["context"]] = status
        states = {s["state"] for s in latest.values()}
        if states & {"error", "failure"}:
            state = "failure"
        elif not latest or "pending" in states:
            state = "pending"
        else:
            state = "success"
        body = {"state": state, "sha": ref, "total_count": len(latest)}
        body["statuses"] = list(latest.values())
        return Reply(200, body)

    # -- contents ----------------------------------------------------------------------------

    async def contents(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        if repo is None:
            return error_reply(404)
        path = request.path_params["path"].strip("/")
        current = repo.files.get(path)
        sha = hashlib.sha1(current).hexdigest() if current is not None else None  # noqa: S324
        if request.method == "GET":
            if current is None:
                return error_reply(404)
            body = {
                "type": "file",
                "encoding": "base64",
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "size": len(current),
                "sha": sha,
                "content": base64.encodebytes(current).decode(),
            }
            return Reply(200, body)
        data = await _body(request)
        if isinstance(data, Reply):
            return data
        if not data.get("message"):
            return _validation("Commit", "missing_field", "message")
        if current is not None and data.get("sha") != sha:
            reply = error_reply(409)
            reply.body["message"] = f"{path} does not match {data.get('sha')}"
            return reply if data.get("sha") else _validation("Contents", "missing_field", "sha")
        if request.method == "DELETE":
            if current is None:
                return error_reply(404)
            del repo.files[path]
            return Reply(200, {"content": None, "commit": {"message": data["message"]}})
        try:
            raw = base64.b64decode(str(data.get("content", "")), validate=True)
        except ValueError:
            return _validation("Contents", "invalid", "content")
        repo.files[path] = raw
        new_sha = hashlib.sha1(raw).hexdigest()  # noqa: S324
        body = {"content": {"path": path, "sha": new_sha}, "commit": {"message": data["message"]}}
        return Reply(200 if current is not None else 201, body)

    # -- search ------------------------------------------------------------------------------

    async def search_issues(self, request: Request, credential: Credential) -> Reply:
        query = request.query_params.get("q", "")
        if not query:
            return _validation("Search", "missing", "q")
        match = re.search(r"repo:(\S+)", query)
        repos = (
            [self.fake.repos[match.group(1)]] if match and match.group(1) in self.fake.repos else []
        )
        if match is None:
            repos = list(self.fake.repos.values())
        words = [w for w in query.split() if ":" not in w]
        found = [
            issue
            for repo in repos
            for issue in repo.issues
            if all(w.lower() in issue["title"].lower() for w in words)
        ]
        reply = paginate_reply(request, found, wrap="items")
        reply.body["incomplete_results"] = False
        return reply

    # -- installation ------------------------------------------------------------------------

    async def repo_installation(self, request: Request, credential: Credential) -> Reply:
        repo = self.repo(request)
        if repo is None:
            return error_reply(404)
        return Reply(200, self.fake._installation(self.fake.installation_ids[0]))

    async def installation_repositories(self, request: Request, credential: Credential) -> Reply:
        repos = [r.json() for r in self.fake.repos.values()]
        reply = paginate_reply(request, repos, wrap="repositories")
        reply.body["repository_selection"] = "all"
        return reply

    # -- the app's webhook deliveries --------------------------------------------------------

    async def deliveries(self, request: Request, credential: Credential) -> Reply:
        per_page = min(100, max(1, int_param(request, "per_page", 30)))
        cursor = request.query_params.get("cursor")
        status = request.query_params.get("status")
        if status not in (None, "success", "failure"):
            return _validation("Delivery", "invalid", "status")
        items = sorted(self.fake.deliveries, key=lambda d: -int(d["id"]))
        if status == "success":
            items = [d for d in items if 200 <= d["status_code"] < 400]
        elif status == "failure":
            items = [d for d in items if d["status_code"] >= 400]
        start = 0
        if cursor:
            start = next((i for i, d in enumerate(items) if str(d["id"]) == cursor), len(items))
        page = items[start : start + per_page]
        reply = Reply(200, [{k: v for k, v in d.items() if k != "request"} for d in page])
        if start + per_page < len(items):
            nxt = request.url.include_query_params(
                per_page=per_page, cursor=str(items[start + per_page]["id"])
            )
            reply.headers["link"] = f'<{nxt}>; rel="next"'
        return reply

    async def delivery(self, request: Request, credential: Credential) -> Reply:
        did = int(request.path_params["delivery_id"])
        found = [d for d in self.fake.deliveries if d["id"] == did]
        return Reply(200, found[0]) if found else error_reply(404)

    async def redeliver(self, request: Request, credential: Credential) -> Reply:
        did = int(request.path_params["delivery_id"])
        found = [d for d in self.fake.deliveries if d["id"] == did]
        if not found:
            return error_reply(404)
        self.fake.add_delivery(found[0]["event"], guid=found[0]["guid"], redelivery=True)
        return Reply(202, {})

    # -- GraphQL -----------------------------------------------------------------------------

    async def graphql(self, request: Request, credential: Credential) -> Reply:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return error_reply(400, "Problems parsing JSON", GRAPHQL_DOCS)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return error_reply(400, "Problems parsing JSON", GRAPHQL_DOCS)
        variables = body.get("variables") or {}
        answer = self.fake.graphql_resolver(body["query"], variables, self.fake)
        return Reply(200, answer)


def register_api(fake: FakeGitHub) -> _More:
    """Add every endpoint above to ``fake`` (through its auth, fault and rate-limit pipeline)."""
    api = _More(fake)
    repo = "/repos/{owner}/{repo}"
    routes: list[tuple[str, Any, tuple[str, ...], str]] = [
        (repo, api.get_repo, ("GET",), "token"),
        (f"{repo}/issues", api.issues, ("GET", "POST"), "token"),
        (f"{repo}/issues/{{number:int}}", api.issue, ("GET", "PATCH"), "token"),
        (f"{repo}/issues/{{number:int}}/comments", api.comments, ("GET", "POST"), "token"),
        (f"{repo}/issues/comments/{{cid:int}}", api.comment, ("PATCH", "DELETE"), "token"),
        (f"{repo}/issues/{{number:int}}/labels", api.issue_labels, ("POST", "PUT"), "token"),
        (f"{repo}/issues/{{number:int}}/labels/{{name}}", api.issue_labels, ("DELETE",), "token"),
        (f"{repo}/labels", api.create_label, ("POST",), "token"),
        (f"{repo}/pulls", api.pulls, ("GET", "POST"), "token"),
        (f"{repo}/pulls/{{number:int}}", api.pull, ("GET",), "token"),
        (f"{repo}/pulls/{{number:int}}/merge", api.merge, ("PUT",), "token"),
        (f"{repo}/pulls/{{number:int}}/files", api.files, ("GET",), "token"),
        (f"{repo}/pulls/{{number:int}}/reviews", api.reviews, ("GET", "POST"), "token"),
        (f"{repo}/pulls/{{number:int}}/requested_reviewers", api.reviewers, ("POST",), "token"),
        (f"{repo}/check-runs", api.create_check_run, ("POST",), "token"),
        (f"{repo}/check-runs/{{run_id:int}}", api.update_check_run, ("PATCH",), "token"),
        (f"{repo}/commits/{{ref}}/check-runs", api.list_check_runs, ("GET",), "token"),
        (f"{repo}/check-suites", api.create_check_suite, ("POST",), "token"),
        (
            f"{repo}/check-suites/{{suite_id:int}}/rerequest",
            api.rerequest_suite,
            ("POST",),
            "token",
        ),
        (f"{repo}/statuses/{{sha}}", api.create_status, ("POST",), "token"),
        (f"{repo}/commits/{{ref}}/status", api.combined_status, ("GET",), "token"),
        (f"{repo}/contents/{{path:path}}", api.contents, ("GET", "PUT", "DELETE"), "token"),
        (f"{repo}/installation", api.repo_installation, ("GET",), "jwt"),
        ("/search/issues", api.search_issues, ("GET",), "token"),
        ("/app/hook/deliveries", api.deliveries, ("GET",), "jwt"),
        ("/app/hook/deliveries/{delivery_id:int}", api.delivery, ("GET",), "jwt"),
        ("/app/hook/deliveries/{delivery_id:int}/attempts", api.redeliver, ("POST",), "jwt"),
        ("/graphql", api.graphql, ("POST",), "token"),
    ]
    for path, handler, methods, auth in routes:
        fake.add_route(path, handler, auth=auth, methods=methods)  # type: ignore[arg-type]
    return api
