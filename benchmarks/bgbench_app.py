"""The GitHub App that ``benchmarks/background.py`` drives: web process and workers alike.

Everything comes from the environment the benchmark sets (GITHUBAPP_*, CELERY_BROKER_URL):

* ``issues.opened`` is a background handler: a no-op (``BGBENCH_HANDLER=noop``) or one awaiting
  a GitHub call on FakeGitHub (``BGBENCH_HANDLER=fetch``): an installation token from the
  app's cache, then ``GET /installation/repositories`` through one ``httpx.AsyncClient`` per
  worker process, kept on the worker's event loop.
* ``issues.edited`` is an inline no-op ``def`` handler, the compat path: the same app's
  baseline for the acknowledgement scenario.

Workers run ``celery -A benchmarks.bgbench_app:celery worker`` from the repository root.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from fastapi import FastAPI

from ghapp_celery import Event, GitHubApp
from ghapp_celery.tasks.loop import worker_loop

HANDLER = os.environ.get("BGBENCH_HANDLER", "noop")
HTTP_RESOURCE = "bgbench.http"

web = FastAPI()
github_app = GitHubApp(web)


async def noop(event: Event) -> None:
    pass


async def fetch(event: Event) -> None:
    assert event.installation_id is not None
    token = (await github_app.aget_access_token(event.installation_id)).token
    client: httpx.AsyncClient = worker_loop.resource(HTTP_RESOURCE)
    response = await client.get(
        "/installation/repositories",
        headers={"Authorization": f"token {token}", "Accept": "application/vnd.github+json"},
    )
    response.raise_for_status()


def inline_noop() -> None:
    return None


def _http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=github_app.base_url,
        headers={"User-Agent": "ghapp-celery-bgbench"},
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
        timeout=30,
    )


async def _close_http(client: Any) -> None:
    await client.aclose()


worker_loop.register_resource(HTTP_RESOURCE, _http_client, _close_http)

github_app.on("issues.opened", background=True)(fetch if HANDLER == "fetch" else noop)
github_app.on("issues.edited")(inline_noop)

if os.environ.get("GHAPP_TEST_WORKER_READY_FILE"):
    # The worker announces readiness through a file (tests/_workers.py's CeleryWorker).
    from tests._workers import install_ready_marker

    install_ready_marker()

celery = github_app.celery
