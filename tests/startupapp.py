"""A GitHub App configured only by its process's environment, for the start-up checks and
``ghapp-celery check``: one inline and one background handler, served by
``uvicorn tests.startupapp:app`` and run by ``celery -A tests.startupapp:celery worker``."""

from __future__ import annotations

import os

from fastapi import FastAPI

from ghapp_celery import Event, GitHubApp

app = FastAPI()
github_app = GitHubApp(app)


@github_app.on("issues.opened", background=True)
async def opened(event: Event) -> None:
    return None


@github_app.on("ping")
def pong() -> str:
    return "pong"


celery = github_app.celery

if os.environ.get("GHAPP_TEST_WORKER_READY_FILE"):
    from tests._workers import install_ready_marker

    install_ready_marker()
