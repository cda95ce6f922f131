"""A GitHub App with background handlers of every kind, for tests driving real workers.

The worker imports ``tests.bgapp:celery``; the test process calls ``build()`` itself after
setting the environment (GITHUBAPP_DATA_DIR, CELERY_BROKER_URL, ...). Handlers keep their
cross-attempt state in files under $GHAPP_TEST_STATE_DIR, which both processes can see.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from fastapi import FastAPI

from ghapp_celery import Event, GitHubApp, GitHubAppError, GitHubRateLimitError, RetryPolicy

FAST = RetryPolicy(max_retries=3, retry_backoff=0, retry_jitter=False)


def state_dir() -> Path:
    path = Path(os.environ.get("GHAPP_TEST_STATE_DIR", ".ghapp/test-state"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def bump(name: str) -> int:
    """Count an attempt in a file (one line per attempt) and return the new count."""
    path = state_dir() / f"{name}.attempts"
    with path.open("a") as handle:
        handle.write(f"{os.getpid()}\n")
    return len(path.read_text().splitlines())


async def opened(event: Event) -> str:
    await asyncio.sleep(0)
    (state_dir() / f"opened-{event.delivery_id}").write_text(str(event.payload["issue"]["number"]))
    return "ok"


def edited_sync() -> None:
    from tests import bgapp

    payload = bgapp.github_app.payload  # the old style works inside the worker too
    (state_dir() / "edited").write_text(str(payload["issue"]["number"]))


async def flaky(event: Event) -> None:
    if bump(f"flaky-{event.delivery_id}") <= 2:
        raise GitHubAppError("GitHub answered 502", status=502)


def client_error(event: Event) -> None:
    bump(f"client_error-{event.delivery_id}")
    raise GitHubAppError("GitHub answered 422", status=422)


def always_502(event: Event) -> None:
    bump(f"always_502-{event.delivery_id}")
    raise GitHubAppError("GitHub answered 502", status=502)


def rate_limited(event: Event) -> None:
    if bump(f"rate_limited-{event.delivery_id}") == 1:
        raise GitHubRateLimitError(status=403, retry_after=1)


async def slow_once(event: Event) -> None:
    """First attempt: long enough for a test to kill the worker mid-task."""
    if bump(f"slow_once-{event.delivery_id}") == 1:
        (state_dir() / f"slow_once-{event.delivery_id}.started").write_text(str(os.getpid()))
        await asyncio.sleep(60)


def blocks_past_its_lease(event: Event) -> None:
    """A plain def handler that blocks for several leases: it cannot be interrupted."""
    bump(f"blocks-{event.delivery_id}")
    time.sleep(5)


async def too_slow(event: Event) -> None:
    bump(f"too_slow-{event.delivery_id}")
    await asyncio.sleep(30)


async def thank(event: Event) -> int:
    """DESIGN section 1's handler: comment on the issue as the installation."""
    repo = event.payload["repository"]["full_name"]
    number = event.payload["issue"]["number"]
    response = await event.github.post(
        f"/repos/{repo}/issues/{number}/comments", json={"body": f"Thanks! ({event.action})"}
    )
    return int(response.data["id"])


def thank_sync(event: Event) -> int:
    repo = event.payload["repository"]["full_name"]
    number = event.payload["issue"]["number"]
    response = event.github_sync.post(
        f"/repos/{repo}/issues/{number}/comments", json={"body": f"Thanks! ({event.action})"}
    )
    return int(response.data["id"])


def noop(event: Event) -> None:
    return None


def build() -> GitHubApp:
    web = FastAPI()
    app = GitHubApp(web)
    app.on("issues.opened", background=True, retry=FAST)(opened)
    app.on("issues.edited", background=True, retry=FAST)(edited_sync)
    app.on("issues.labeled", background=True, retry=FAST)(flaky)
    app.on("issues.unlabeled", background=True, retry=FAST)(client_error)
    app.on("issues.closed", background=True, retry=RetryPolicy(max_retries=2, retry_backoff=0))(
        always_502
    )
    app.on("issues.reopened", background=True, retry=RetryPolicy(max_retries=0))(rate_limited)
    app.on("issues.assigned", background=True)(slow_once)  # GITHUBAPP_HANDLER_TIMEOUT
    app.on("issues.locked", background=True, timeout=0.5, retry=RetryPolicy(max_retries=0))(
        too_slow
    )
    app.on("issues.milestoned", background=True)(blocks_past_its_lease)
    app.on("issues.pinned", background=True, retry=FAST)(thank)  # event.github in a worker
    app.on("issues.unpinned")(thank)  # inline, in the web process's loop
    app.on("issues.demilestoned")(thank_sync)  # inline, blocking client in a thread
    app.on("push", background=True, queue="github.bulk")(noop)
    app.on("ping")(lambda: "pong")
    app.web = web  # type: ignore[attr-defined]
    return app


if os.environ.get("GHAPP_TEST_WORKER_READY_FILE"):
    from tests._workers import install_ready_marker

    install_ready_marker()

github_app = build()
celery = github_app.celery
