"""What FakeGitHub knows: the app, its installations and tokens, repositories, deliveries.

``FakeState`` is the data every endpoint group reads and changes, with the operations more than
one of them needs (seeding issues, labels, the installation object). It knows nothing of HTTP
routing, rate limits or faults: those are the server's (``_github.FakeGitHub``, which is a
FakeState). State is shared by the server thread and the test, behind ``_lock``; endpoints
change it only between awaits, so the one event loop keeps each change whole.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request

from ghapp_celery.testing._keys import public_key_pem
from ghapp_celery.testing._replies import account_json
from ghapp_celery.testing._types import Clock, IssuedToken, iso

__all__ = ["API", "FakeRepo", "FakeState", "GraphQLResolver"]

API = "https://api.github.com"

#: ``(query, variables, fake) -> GitHub's GraphQL answer``; see ``fake.graphql_resolver``.
GraphQLResolver = Callable[[str, dict[str, Any], "FakeState"], dict[str, Any]]


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

    def issue(self, number: int) -> dict[str, Any] | None:
        """Issue or pull request ``number`` (they share one sequence, as on GitHub)."""
        return self.issues[number - 1] if 1 <= number <= len(self.issues) else None


class FakeState:
    """The fake's data; FakeGitHub adds the HTTP pipeline on top."""

    def __init__(
        self,
        *,
        app_id: int,
        client_id: str,
        private_key_pem: str,
        clock: Clock,
        installations: int,
        token_ttl: int,
        token_format: Literal["classic", "stateless"],
        graphql_resolver: GraphQLResolver,
    ) -> None:
        self.app_id = app_id
        self.client_id = client_id
        self.slug = "fake-app"
        self.private_key_pem = private_key_pem
        self.public_key_pem = public_key_pem(private_key_pem)
        self.clock = clock
        self.token_ttl = token_ttl
        # GitHub's installation tokens: the classic 40 characters, or, rolled out from April
        # 2026, the stateless ``ghs_<app id>_<JWT>`` (hundreds of characters).
        if token_format not in ("classic", "stateless"):
            raise ValueError(f"token_format must be 'classic' or 'stateless', not {token_format!r}")
        self.token_format = token_format
        self.permissions = {"contents": "read", "issues": "write", "metadata": "read"}
        self.events = ["issues", "issue_comment", "pull_request", "push"]
        self.created = int(clock())
        self.installation_ids = [40_000_001 + n for n in range(installations)]
        self.token_requests: list[int] = []
        self.tokens: dict[str, IssuedToken] = {}
        self.repos: dict[str, FakeRepo] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.graphql_resolver = graphql_resolver
        self._lock = threading.Lock()
        self._ids = itertools.count(1_000_001)  # next() is atomic: no lock needed

    # -- what a test seeds and reads -------------------------------------------------------------

    def add_repo(self, full_name: str, *, issues: int = 0, pulls: int = 0) -> FakeRepo:
        """A repository with ``issues`` issues, then ``pulls`` pull requests."""
        with self._lock:
            repo = self.repos.get(full_name)
            if repo is None:
                repo = self.repos[full_name] = FakeRepo(full_name, 500_000 + len(self.repos))
        for n in range(issues):
            self.new_issue(repo, f"Issue {n + 1}", f"Body of issue {n + 1}")
        for n in range(pulls):
            sha = hashlib.sha1(f"{full_name}#{n}".encode()).hexdigest()  # noqa: S324
            self.new_issue(
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

    def token_is_valid(self, token: str) -> bool:
        """Whether GitHub would still accept ``token`` (issued, unrevoked, unexpired)."""
        with self._lock:
            issued = self.tokens.get(token)
        return issued is not None and not issued.revoked and self.clock() < issued.expires_at

    def token_request_count(self, installation_id: int | None = None) -> int:
        """How many installation tokens were asked for (for one installation, or all)."""
        with self._lock:
            ids = list(self.token_requests)
        return len(ids) if installation_id is None else ids.count(installation_id)

    # -- what the endpoint groups share ----------------------------------------------------------

    def new_id(self) -> int:
        return next(self._ids)

    def repo_of(self, request: Request) -> FakeRepo | None:
        """The repository a ``/repos/{owner}/{repo}/...`` request names, if the fake has it."""
        p = request.path_params
        return self.repos.get(f"{p['owner']}/{p['repo']}")

    def new_issue(
        self, repo: FakeRepo, title: str, body: str | None, **extra: Any
    ) -> dict[str, Any]:
        """Open an issue (a pull request when ``extra`` has ``head``) in ``repo``."""
        number = len(repo.issues) + 1
        now = iso(self.clock())
        issue = {
            "id": self.new_id(),
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

    def label(self, repo: FakeRepo, name: str) -> dict[str, Any]:
        """``repo``'s label ``name``, created on first use (as adding a label to an issue does)."""
        if name not in repo.labels:
            repo.labels[name] = {"id": self.new_id(), "name": name, "color": "ededed"}
        return repo.labels[name]

    def installation_json(self, installation_id: int) -> dict[str, Any]:
        """An ``installation`` object as ``GET /app/installations`` lists it."""
        n = self.installation_ids.index(installation_id) + 1
        account = account_json(f"fake-org-{n}", 9_000_000 + n, "Organization")
        login = account["login"]
        return {
            "id": installation_id,
            "account": account,
            "repository_selection": "all",
            "access_tokens_url": f"{API}/app/installations/{installation_id}/access_tokens",
            "repositories_url": f"{API}/installation/repositories",
            "html_url": f"https://github.com/organizations/{login}/settings/installations/"
            f"{installation_id}",
            "app_id": self.app_id,
            "app_slug": self.slug,
            "target_id": account["id"],
            "target_type": "Organization",
            "permissions": dict(self.permissions),
            "events": list(self.events),
            "created_at": iso(self.created),
            "updated_at": iso(self.created),
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": None,
            "suspended_at": None,
        }

    def app_json(self) -> dict[str, Any]:
        """The ``integration`` object ``GET /app`` returns."""
        return {
            "id": self.app_id,
            "slug": self.slug,
            "node_id": "A_kwDOFake",
            "client_id": self.client_id,
            "owner": account_json("fake-owner", 9_000_000, "Organization"),
            "name": "Fake App",
            "description": "A GitHub App served by FakeGitHub",
            "external_url": "https://example.com",
            "html_url": f"https://github.com/apps/{self.slug}",
            "created_at": iso(self.created),
            "updated_at": iso(self.created),
            "permissions": dict(self.permissions),
            "events": list(self.events),
            "installations_count": len(self.installation_ids),
        }
