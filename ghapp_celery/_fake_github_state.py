"""FakeGitHub's data helpers: seeding repositories and deliveries, reading budgets, and the
conditional-request (ETag / 304) rule every GET answer goes through."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ghapp_celery._fake_github_api import FakeRepo
from ghapp_celery._fake_github_parts import (
    Bucket,
    Credential,
    FakeClock,
    RecordedRequest,
    Reply,
    iso,
)

if TYPE_CHECKING:
    from ghapp_celery._fake_github_more import _More

__all__ = ["FakeStateMixin", "public", "resource_of"]


class FakeStateMixin:
    """Methods FakeGitHub gets from here; the attributes are FakeGitHub's."""

    _lock: threading.Lock
    _api: _More
    _buckets: dict[tuple[str, str], Bucket]
    clock: FakeClock
    repos: dict[str, FakeRepo]
    deliveries: list[dict[str, Any]]
    installation_ids: list[int]
    requests: list[RecordedRequest]
    not_modified: int

    def add_repo(self, full_name: str, *, issues: int = 0, pulls: int = 0) -> FakeRepo:
        """A repository with ``issues`` issues, then ``pulls`` pull requests."""
        with self._lock:
            repo = self.repos.get(full_name)
            if repo is None:
                repo = self.repos[full_name] = FakeRepo(full_name, 500_000 + len(self.repos))
        for n in range(issues):
            self._api.new_issue(repo, f"Issue {n + 1}", f"Body of issue {n + 1}")
        for n in range(pulls):
            sha = hashlib.sha1(f"{full_name}#{n}".encode()).hexdigest()  # noqa: S324
            self._api.new_issue(
                repo,
                f"Pull {n + 1}",
                None,
                head={"ref": f"feature-{n + 1}", "sha": sha},
                base={"ref": "main"},
                merged=False,
                requested_reviewers=[],
            )
        return repo

    def add_delivery(
        self,
        event: str,
        action: str | None = None,
        *,
        status_code: int = 200,
        guid: str | None = None,
        redelivery: bool = False,
    ) -> dict[str, Any]:
        """Record one delivery of the app's webhook (what ``GET /app/hook/deliveries`` lists)."""
        with self._lock:
            delivery = {
                "id": 10_000_000 + len(self.deliveries) + 1,
                "guid": guid or secrets.token_hex(16),
                "delivered_at": iso(self.clock()),
                "redelivery": redelivery,
                "duration": 0.27,
                "status": "OK" if status_code < 400 else "Invalid HTTP Response: 500",
                "status_code": status_code,
                "event": event,
                "action": action,
                "installation_id": self.installation_ids[0] if self.installation_ids else None,
                "repository_id": None,
                "throttled_at": None,
            }
            self.deliveries.append(delivery)
        return delivery

    def requests_to(self, path: str, method: str = "GET") -> list[RecordedRequest]:
        """The recorded requests for one path (below the API root)."""
        with self._lock:
            return [r for r in self.requests if r.path == path and r.method == method]

    def remaining(self, token_or_key: str, resource: str = "core") -> int | None:
        """What ``x-ratelimit-remaining`` would say now for a credential ("app", a token)."""
        with self._lock:
            bucket = self._buckets.get((token_or_key, resource))
        return None if bucket is None else bucket.limit - bucket.used

    def _conditional(
        self, request: Request, reply: Reply, bucket: Bucket, credential: Credential
    ) -> Reply:
        """Add an ETag to a GET's 200; answer 304 when ``If-None-Match`` still matches, and then
        give the request back to the budget when it was authorized (GitHub's rule)."""
        if request.method != "GET" or reply.status != 200 or reply.body is None:
            return reply
        digest = hashlib.sha256(json.dumps(public(reply.body), sort_keys=True).encode())
        etag = f'W/"{digest.hexdigest()[:32]}"'
        reply.headers.setdefault("etag", etag)
        wanted = request.headers.get("if-none-match", "")
        if etag not in {v.strip() for v in wanted.split(",")}:
            return reply
        with self._lock:
            self.not_modified += 1
            if credential.key != "anonymous":
                bucket.used -= 1
        return Reply(304, None, {"etag": etag})


def resource_of(path: str) -> str:
    if path == "/graphql" or path.endswith("/api/graphql"):
        return "graphql"
    if path.startswith("/search/"):
        return "search"
    return "core"


def public(body: Any) -> Any:
    """The body without the fake's bookkeeping keys (those starting with ``_``)."""
    if isinstance(body, dict):
        return {k: public(v) for k, v in body.items() if not str(k).startswith("_")}
    if isinstance(body, list):
        return [public(v) for v in body]
    return body
