"""FakeGitHub's check and status endpoints: check runs and suites, commit statuses and the
combined status of a ref."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ghapp_celery.testing._replies import (
    error_reply,
    paginate_reply,
    read_json_object,
    validation_reply,
)
from ghapp_celery.testing._state import FakeState
from ghapp_celery.testing._types import Credential, Endpoint, Reply, iso

__all__ = ["CheckEndpoints"]

CHECK_STATUSES = frozenset({"queued", "in_progress", "completed", "waiting", "requested"})
STATUS_STATES = frozenset({"error", "failure", "pending", "success"})


class CheckEndpoints:
    """``/repos/{owner}/{repo}/check-runs``, ``check-suites``, ``statuses`` and a ref's status."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def endpoints(self) -> list[Endpoint]:
        repo = "/repos/{owner}/{repo}"
        return [
            Endpoint(f"{repo}/check-runs", self.create_check_run, ("POST",)),
            Endpoint(f"{repo}/check-runs/{{run_id:int}}", self.update_check_run, ("PATCH",)),
            Endpoint(f"{repo}/commits/{{ref}}/check-runs", self.list_check_runs),
            Endpoint(f"{repo}/check-suites", self.create_check_suite, ("POST",)),
            Endpoint(
                f"{repo}/check-suites/{{suite_id:int}}/rerequest", self.rerequest_suite, ("POST",)
            ),
            Endpoint(f"{repo}/statuses/{{sha}}", self.create_status, ("POST",)),
            Endpoint(f"{repo}/commits/{{ref}}/status", self.combined_status),
        ]

    # -- checks ------------------------------------------------------------------------------

    async def create_check_run(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        if repo is None:
            return error_reply(404)
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        for name in ("name", "head_sha"):
            if not data.get(name):
                return validation_reply("CheckRun", "missing_field", name)
        status = data.get("status", "queued")
        if status not in CHECK_STATUSES:
            return validation_reply("CheckRun", "invalid", "status")
        if status == "completed" and not data.get("conclusion"):
            return validation_reply("CheckRun", "missing_field", "conclusion")
        run = {"id": self.state.new_id(), "status": status, "conclusion": data.get("conclusion")}
        run.update({k: v for k, v in data.items() if k not in run})
        run["started_at"] = iso(self.state.clock())
        repo.check_runs.append(run)
        return Reply(201, run)

    async def update_check_run(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        run_id = int(request.path_params["run_id"])
        found = [r for r in repo.check_runs if r["id"] == run_id] if repo else []
        if not found:
            return error_reply(404)
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        if "status" in data and data["status"] not in CHECK_STATUSES:
            return validation_reply("CheckRun", "invalid", "status")
        found[0].update(data)
        return Reply(200, found[0])

    async def list_check_runs(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        if repo is None:
            return error_reply(404)
        ref = request.path_params["ref"]
        runs = [r for r in repo.check_runs if r["head_sha"] == ref]
        return paginate_reply(request, runs, wrap="check_runs")

    async def create_check_suite(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        if repo is None:
            return error_reply(404)
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        if not data.get("head_sha"):
            return validation_reply("CheckSuite", "missing_field", "head_sha")
        suite = {"id": self.state.new_id(), "head_sha": data["head_sha"], "status": "queued"}
        repo.check_suites.append(suite)
        return Reply(201, suite)

    async def rerequest_suite(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        suite_id = int(request.path_params["suite_id"])
        if repo is None or not any(s["id"] == suite_id for s in repo.check_suites):
            return error_reply(404)
        return Reply(201, {})

    # -- statuses ----------------------------------------------------------------------------

    async def create_status(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
        if repo is None:
            return error_reply(404)
        data = await read_json_object(request)
        if isinstance(data, Reply):
            return data
        if data.get("state") not in STATUS_STATES:
            return validation_reply("Status", "invalid", "state")
        status = {
            "id": self.state.new_id(),
            "state": data["state"],
            "context": data.get("context", "default"),
            "description": data.get("description"),
            "target_url": data.get("target_url"),
            "sha": request.path_params["sha"],
            "created_at": iso(self.state.clock()),
        }
        repo.statuses.append(status)
        return Reply(201, status)

    async def combined_status(self, request: Request, credential: Credential) -> Reply:
        repo = self.state.repo_of(request)
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
