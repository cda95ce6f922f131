"""The GitHub App that ``benchmarks/background.py`` drives: web process and workers alike.

Everything comes from the environment the benchmark sets (GITHUBAPP_*, CELERY_BROKER_URL):

* ``issues.opened`` is a background handler: a no-op (``BGBENCH_HANDLER=noop``) or one awaiting
  a GitHub call on FakeGitHub (``BGBENCH_HANDLER=fetch``): ``GET /installation/repositories``
  through ``event.github``, the installation's client on the worker process's event loop.
* ``issues.edited`` is an inline no-op ``def`` handler, the compat path: the same app's
  baseline for the acknowledgement scenario.

Workers run ``celery -A benchmarks.bgbench_app:celery worker`` from the repository root.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from ghapp_celery import Event, GitHubApp

HANDLER = os.environ.get("BGBENCH_HANDLER", "noop")

web = FastAPI()
github_app = GitHubApp(web)


async def noop(event: Event) -> None:
    pass


async def fetch(event: Event) -> None:
    # What a user writes: the installation's client, shared by the worker process's runs
    # (one token for all, pools of 10 connections behind one httpx.AsyncClient).
    await event.github.get("/installation/repositories")


def inline_noop() -> None:
    return None


github_app.on("issues.opened", background=True)(fetch if HANDLER == "fetch" else noop)
github_app.on("issues.edited")(inline_noop)

if os.environ.get("GHAPP_TEST_WORKER_READY_FILE"):
    # The worker announces readiness through a file (tests/_workers.py's CeleryWorker).
    from tests._workers import install_ready_marker

    install_ready_marker()

celery = github_app.celery
