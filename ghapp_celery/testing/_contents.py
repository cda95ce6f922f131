"""FakeGitHub's contents and search endpoints: a repository's files (read, created, updated
and deleted with the blob sha GitHub asks for) and issue search."""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.requests import Request

from ghapp_celery.testing._replies import (
    error_reply,
    paginate_reply,
    read_json_object,
    validation_reply,
)
from ghapp_celery.testing._state import FakeState
from ghapp_celery.testing._types import Credential, Endpoint, Reply

__all__ = ["ContentEndpoints"]


class ContentEndpoints:
    """``/repos/{owner}/{repo}/contents/{path}`` and ``/search/issues``."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def endpoints(self) -> list[Endpoint]:
        contents = "/repos/{owner}/{repo}/contents/{path:path}"
        return [
            Endpoint(contents, self.contents, ("GET", "PUT", "DELETE")),
            Endpoint("/search/issues", self.search_issues),
        ]

    # -- contents ----------------------------------------------------------------------------

    async def contents(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
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
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        if not data.get("message"):
            return validation_reply("Commit", "missing_field", "message")
        if current is not None and data.get("sha") != sha:
            reply = error_reply(409)
            reply.body["message"] = f"{path} does not match {data.get('sha')}"
            if data.get("sha"):
                return reply
            return validation_reply("Contents", "missing_field", "sha")
        if request.method == "DELETE":
            if current is None:
                return error_reply(404)
            del repo.files[path]
            return Reply(200, {"content": None, "commit": {"message": data["message"]}})
        try:
            raw = base64.b64decode(str(data.get("content", "")), validate=True)
        except ValueError:
            return validation_reply("Contents", "invalid", "content")
        repo.files[path] = raw
        new_sha = hashlib.sha1(raw).hexdigest()  # noqa: S324
        body = {"content": {"path": path, "sha": new_sha}, "commit": {"message": data["message"]}}
        return Reply(200 if current is not None else 201, body)

    # -- search ------------------------------------------------------------------------------

    async def search_issues(self, request: Request, credential: Credential) -> Reply:
        query = request.query_params.get("q", "")
        if not query:
            return validation_reply("Search", "missing", "q")
        match = re.search(r"repo:(\S+)", query)
        known = self.state.repos
        if match is None:
            repos = list(known.values())
        else:
            repos = [known[match.group(1)]] if match.group(1) in known else []
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
