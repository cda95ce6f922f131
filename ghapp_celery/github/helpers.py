"""Thin helpers for what GitHub Apps call most, shared by the async and the blocking client.

Each helper is one REST call (or one paginated listing) and returns GitHub's decoded JSON. On
``AsyncGitHubClient`` a helper is awaited (``await gh.create_comment(...)``) and a listing is an
async iterator (``async for issue in gh.list_issues(...)``); on ``GitHubClient`` the same names
return the value and a plain iterator. ``repo`` is always ``"owner/name"``.
"""

from __future__ import annotations

import base64
from typing import Any, Generic, TypeVar
from urllib.parse import quote

__all__ = ["GitHubHelpers"]

R = TypeVar("R")  # a call's result: Awaitable[Any] on the async client, Any on the blocking one
It = TypeVar("It")  # a listing: AsyncIterator[Any] or Iterator[Any]


def _repo(repo: str) -> str:
    owner, sep, name = repo.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise ValueError(f"repo must be 'owner/name', got {repo!r}")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def _path(path: str) -> str:
    return quote(path.lstrip("/"), safe="/")


def _clean(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


class GitHubHelpers(Generic[R, It]):
    """The helper methods; subclasses supply ``_call`` and ``_list``."""

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> R:
        raise NotImplementedError

    def _list(
        self, url: str, params: dict[str, Any] | None = None, *, max_items: int | None = None
    ) -> It:
        raise NotImplementedError

    # -- issues and comments -----------------------------------------------------------------

    def get_issue(self, repo: str, number: int) -> R:
        """``GET /repos/{repo}/issues/{number}``."""
        return self._call("GET", f"{_repo(repo)}/issues/{int(number)}")

    def list_issues(
        self, repo: str, *, state: str = "open", max_items: int | None = None, **params: Any
    ) -> It:
        """Every issue (and pull request, as GitHub lists them) of ``repo``, page by page."""
        return self._list(f"{_repo(repo)}/issues", {"state": state, **params}, max_items=max_items)

    def create_issue(self, repo: str, title: str, body: str | None = None, **fields: Any) -> R:
        """``POST /repos/{repo}/issues``; ``fields``: labels, assignees, milestone, ..."""
        payload = _clean(title=title, body=body, **fields)
        return self._call("POST", f"{_repo(repo)}/issues", json=payload)

    def update_issue(self, repo: str, number: int, **fields: Any) -> R:
        """``PATCH`` an issue: ``state="closed"``, ``title=``, ``labels=``, ..."""
        return self._call("PATCH", f"{_repo(repo)}/issues/{int(number)}", json=fields)

    def create_comment(self, repo: str, number: int, body: str) -> R:
        """Comment on an issue or a pull request's conversation."""
        url = f"{_repo(repo)}/issues/{int(number)}/comments"
        return self._call("POST", url, json={"body": body})

    def list_comments(self, repo: str, number: int, *, max_items: int | None = None) -> It:
        return self._list(f"{_repo(repo)}/issues/{int(number)}/comments", max_items=max_items)

    def update_comment(self, repo: str, comment_id: int, body: str) -> R:
        url = f"{_repo(repo)}/issues/comments/{int(comment_id)}"
        return self._call("PATCH", url, json={"body": body})

    def delete_comment(self, repo: str, comment_id: int) -> R:
        return self._call("DELETE", f"{_repo(repo)}/issues/comments/{int(comment_id)}")

    # -- labels ------------------------------------------------------------------------------

    def add_labels(self, repo: str, number: int, labels: list[str]) -> R:
        """Add labels to an issue or pull request; returns all its labels."""
        url = f"{_repo(repo)}/issues/{int(number)}/labels"
        return self._call("POST", url, json={"labels": list(labels)})

    def set_labels(self, repo: str, number: int, labels: list[str]) -> R:
        """Replace every label of an issue or pull request."""
        url = f"{_repo(repo)}/issues/{int(number)}/labels"
        return self._call("PUT", url, json={"labels": list(labels)})

    def remove_label(self, repo: str, number: int, label: str) -> R:
        url = f"{_repo(repo)}/issues/{int(number)}/labels/{quote(label, safe='')}"
        return self._call("DELETE", url)

    def create_label(
        self, repo: str, name: str, color: str = "ededed", description: str | None = None
    ) -> R:
        payload = _clean(name=name, color=color.lstrip("#"), description=description)
        return self._call("POST", f"{_repo(repo)}/labels", json=payload)

    # -- pull requests and reviews -----------------------------------------------------------

    def get_pull(self, repo: str, number: int) -> R:
        return self._call("GET", f"{_repo(repo)}/pulls/{int(number)}")

    def list_pulls(
        self, repo: str, *, state: str = "open", max_items: int | None = None, **params: Any
    ) -> It:
        return self._list(f"{_repo(repo)}/pulls", {"state": state, **params}, max_items=max_items)

    def list_pull_files(self, repo: str, number: int, *, max_items: int | None = None) -> It:
        return self._list(f"{_repo(repo)}/pulls/{int(number)}/files", max_items=max_items)

    def create_pull(
        self, repo: str, title: str, head: str, base: str, body: str | None = None, **f: Any
    ) -> R:
        payload = _clean(title=title, head=head, base=base, body=body, **f)
        return self._call("POST", f"{_repo(repo)}/pulls", json=payload)

    def merge_pull(self, repo: str, number: int, *, merge_method: str = "merge", **f: Any) -> R:
        """``PUT .../merge``; ``merge_method`` is ``merge``, ``squash`` or ``rebase``."""
        url = f"{_repo(repo)}/pulls/{int(number)}/merge"
        return self._call("PUT", url, json={"merge_method": merge_method, **f})

    def create_review(
        self,
        repo: str,
        number: int,
        *,
        event: str = "COMMENT",
        body: str | None = None,
        comments: list[dict[str, Any]] | None = None,
    ) -> R:
        """A review: ``event`` is ``APPROVE``, ``REQUEST_CHANGES`` or ``COMMENT``."""
        payload = _clean(event=event, body=body, comments=comments)
        return self._call("POST", f"{_repo(repo)}/pulls/{int(number)}/reviews", json=payload)

    def list_reviews(self, repo: str, number: int, *, max_items: int | None = None) -> It:
        return self._list(f"{_repo(repo)}/pulls/{int(number)}/reviews", max_items=max_items)

    def request_reviewers(
        self,
        repo: str,
        number: int,
        reviewers: list[str],
        team_reviewers: list[str] | None = None,
    ) -> R:
        url = f"{_repo(repo)}/pulls/{int(number)}/requested_reviewers"
        payload = {"reviewers": list(reviewers), "team_reviewers": list(team_reviewers or [])}
        return self._call("POST", url, json=payload)

    # -- checks and statuses -----------------------------------------------------------------

    def create_check_run(self, repo: str, name: str, head_sha: str, **fields: Any) -> R:
        """``POST .../check-runs``; ``fields``: status, conclusion, output, details_url, ..."""
        payload = {"name": name, "head_sha": head_sha, **fields}
        return self._call("POST", f"{_repo(repo)}/check-runs", json=payload)

    def update_check_run(self, repo: str, check_run_id: int, **fields: Any) -> R:
        url = f"{_repo(repo)}/check-runs/{int(check_run_id)}"
        return self._call("PATCH", url, json=fields)

    def list_check_runs(self, repo: str, ref: str, *, max_items: int | None = None) -> It:
        """The check runs of a commit (``ref`` is a SHA, branch or tag)."""
        url = f"{_repo(repo)}/commits/{_path(ref)}/check-runs"
        return self._list(url, max_items=max_items)

    def create_check_suite(self, repo: str, head_sha: str) -> R:
        return self._call("POST", f"{_repo(repo)}/check-suites", json={"head_sha": head_sha})

    def rerequest_check_suite(self, repo: str, check_suite_id: int) -> R:
        url = f"{_repo(repo)}/check-suites/{int(check_suite_id)}/rerequest"
        return self._call("POST", url)

    def create_status(
        self,
        repo: str,
        sha: str,
        state: str,
        *,
        context: str = "default",
        description: str | None = None,
        target_url: str | None = None,
    ) -> R:
        """A commit status: ``state`` is ``error``, ``failure``, ``pending`` or ``success``."""
        payload = _clean(
            state=state, context=context, description=description, target_url=target_url
        )
        return self._call("POST", f"{_repo(repo)}/statuses/{_path(sha)}", json=payload)

    def get_combined_status(self, repo: str, ref: str) -> R:
        return self._call("GET", f"{_repo(repo)}/commits/{_path(ref)}/status")

    # -- repository contents -----------------------------------------------------------------

    def get_contents(self, repo: str, path: str, ref: str | None = None) -> R:
        """A file (with base64 ``content``) or a directory listing."""
        params = _clean(ref=ref)
        return self._call("GET", f"{_repo(repo)}/contents/{_path(path)}", params=params or None)

    def create_or_update_file(
        self,
        repo: str,
        path: str,
        content: str | bytes,
        message: str,
        *,
        sha: str | None = None,
        branch: str | None = None,
    ) -> R:
        """Commit a file; ``sha`` (the current blob's) is required to replace one."""
        raw = content.encode() if isinstance(content, str) else content
        payload = _clean(
            message=message,
            content=base64.b64encode(raw).decode("ascii"),
            sha=sha,
            branch=branch,
        )
        return self._call("PUT", f"{_repo(repo)}/contents/{_path(path)}", json=payload)

    def delete_file(
        self, repo: str, path: str, message: str, sha: str, *, branch: str | None = None
    ) -> R:
        payload = _clean(message=message, sha=sha, branch=branch)
        return self._call("DELETE", f"{_repo(repo)}/contents/{_path(path)}", json=payload)

    # -- installations -----------------------------------------------------------------------

    def list_installation_repositories(self, *, max_items: int | None = None) -> It:
        """The repositories the installation can reach (installation token)."""
        return self._list("/installation/repositories", max_items=max_items)

    def list_installations(self, *, max_items: int | None = None) -> It:
        """Every installation of the app (app JWT: ``AsyncGitHubClient.as_app``)."""
        return self._list("/app/installations", max_items=max_items)

    def get_installation(self, installation_id: int) -> R:
        return self._call("GET", f"/app/installations/{int(installation_id)}")

    def get_repo_installation(self, repo: str) -> R:
        """The app's installation on ``repo`` (app JWT)."""
        return self._call("GET", f"{_repo(repo)}/installation")

    # -- the app's webhook deliveries --------------------------------------------------------

    def list_deliveries(self, *, status: str | None = None, max_items: int | None = None) -> It:
        """Recent deliveries of the app's webhook, newest first (app JWT). ``status`` is
        ``success`` or ``failure``. GitHub pages these with a cursor in the Link header."""
        return self._list("/app/hook/deliveries", _clean(status=status), max_items=max_items)

    def get_delivery(self, delivery_id: int) -> R:
        return self._call("GET", f"/app/hook/deliveries/{int(delivery_id)}")

    def redeliver(self, delivery_id: int) -> R:
        """Ask GitHub to send a delivery again (202; the redelivery keeps its GUID)."""
        return self._call("POST", f"/app/hook/deliveries/{int(delivery_id)}/attempts")
