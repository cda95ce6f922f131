"""The quickstart app: `make run` serves it, `ghapp-celery receive issues.opened` feeds it.

Run it yourself with ``uvicorn examples.quickstart:app``. Without a GitHub App configured it
uses a development webhook secret, so signed sample deliveries work out of the box.
"""

from __future__ import annotations

import argparse
import logging
import os

from fastapi import FastAPI

from ghapp_celery import Event, GitHubApp
from ghapp_celery.cli import DEVELOPMENT_SECRET

# A development secret so `make run` works with nothing configured; a real app sets
# GITHUBAPP_WEBHOOK_SECRET to the secret entered on the GitHub App's settings page.
os.environ.setdefault("GITHUBAPP_WEBHOOK_SECRET", DEVELOPMENT_SECRET)

app = FastAPI(title="ghapp_celery quickstart")
github_app = GitHubApp(app)
LOG = logging.getLogger("quickstart")


@github_app.on("issues.opened")
async def welcome(event: Event) -> str:
    """New style: the handler receives the Event."""
    issue = event.payload["issue"]
    LOG.info("issue #%s opened in %s: %s", issue["number"], event.repository, issue["title"])
    return f"welcomed issue #{issue['number']}"


@github_app.on("ping")
def pong() -> str:
    """fastapi-githubapp style: no arguments, read github_app.payload."""
    return str(github_app.payload["zen"])


@app.get("/")
def index() -> dict[str, str]:
    return {"webhook": github_app.settings.webhook_path}


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the quickstart app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    url = f"http://{args.host}:{args.port}{github_app.settings.webhook_path}"
    print(
        f"\nServing the quickstart app; webhooks go to {url}\n"
        "Send a real, signed delivery from another terminal:\n"
        f"    .venv/bin/ghapp-celery receive issues.opened --url {url}\n"
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
