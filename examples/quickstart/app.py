"""The quickstart app. `make run` serves it with a worker; `ghapp-celery receive` feeds it.

- web:    uvicorn examples.quickstart.app:app
- worker: celery -A examples.quickstart.app:celery worker -Q github.issues,github.default -P threads

With nothing configured it uses the embedded SQLite broker and store in ./.ghapp and a
development webhook secret, so signed sample deliveries work out of the box.
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from ghapp_celery import Event, GitHubApp, RetryPolicy
from ghapp_celery.cli import DEVELOPMENT_SECRET

# A real app sets GITHUBAPP_WEBHOOK_SECRET to the secret on the GitHub App's settings page.
os.environ.setdefault("GITHUBAPP_WEBHOOK_SECRET", DEVELOPMENT_SECRET)

app = FastAPI(title="ghapp_celery quickstart")
github_app = GitHubApp(app)
celery = github_app.celery
LOG = logging.getLogger("quickstart")


@github_app.on("issues.opened", background=True, retry=RetryPolicy(max_retries=5))
async def welcome(event: Event) -> str:
    """A background handler: a Celery task on the queue github.issues, run by the worker."""
    issue = event.payload["issue"]
    LOG.info("issue #%s opened in %s: %s", issue["number"], event.repository, issue["title"])
    return f"welcomed issue #{issue['number']}"


@github_app.on("ping")
def pong() -> str:
    """An inline handler, fastapi-githubapp style: no arguments, read github_app.payload."""
    return str(github_app.payload["zen"])


@app.get("/")
def index() -> dict[str, str]:
    return {"webhook": github_app.settings.webhook_path}
