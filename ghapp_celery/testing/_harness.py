"""The pieces the pytest plugin's fixtures are made of, usable without pytest too: an app wired
to a FakeGitHub, a client that posts signed deliveries to it over real HTTP, a Celery worker in
a thread, and a view of the store that waits for runs to end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ghapp_celery.testing._github import FakeGitHub
from ghapp_celery.testing._serve import serve
from ghapp_celery.webhooks import signed_request

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ghapp_celery.app import GitHubApp
    from ghapp_celery.store import DeliveryRecord, RunRecord

__all__ = [
    "AppFactory",
    "Deliveries",
    "PostedDelivery",
    "WebhookClient",
    "background_worker",
    "serve_webhooks",
]


class AppFactory:
    """Builds GitHubApps wired to one FakeGitHub, each on a fresh FastAPI app, with their
    embedded broker and store under ``data_dir``."""

    def __init__(self, fake: FakeGitHub, secret: str, data_dir: Path) -> None:
        self.fake = fake
        self.secret = secret
        self.data_dir = data_dir
        self._webs: dict[int, tuple[GitHubApp, FastAPI]] = {}

    def __call__(
        self,
        web: FastAPI | None = None,
        *,
        setup: Callable[[GitHubApp], object] | None = None,
        **options: Any,
    ) -> GitHubApp:
        """A GitHubApp on ``web`` (a new FastAPI app by default); ``setup(github_app)`` runs
        before it is returned (register handlers there); ``options`` go to GitHubApp, over the
        fake's credentials and URL."""
        from fastapi import FastAPI

        from ghapp_celery.app import GitHubApp
        from ghapp_celery.config import Settings

        if self.fake.base_url is None:
            raise ValueError("serve the FakeGitHub before building an app on it")
        web = web if web is not None else FastAPI()
        settings = Settings(data_dir=self.data_dir / f"app-{len(self._webs)}")
        given: dict[str, Any] = {
            "github_app_id": self.fake.app_id,
            "github_app_key": self.fake.private_key_pem,
            "github_app_secret": self.secret,
            "github_app_url": self.fake.base_url,
            "settings": settings,
        }
        github_app = GitHubApp(web, **{**given, **options})
        if setup is not None:
            setup(github_app)
        self._webs[id(github_app)] = (github_app, web)
        return github_app

    def web_of(self, github_app: GitHubApp) -> FastAPI:
        """The FastAPI app ``github_app`` was built on."""
        found = self._webs.get(id(github_app))
        if found is None or found[0] is not github_app:
            raise LookupError(
                "this GitHubApp was not built by this factory: build it with ghapp_app_factory "
                "(pass your FastAPI app as web=), or override ghapp_webhooks"
            )
        return found[1]


@dataclass(frozen=True)
class PostedDelivery:
    """A delivery the WebhookClient sent, and what the app answered."""

    delivery_id: str
    response: httpx.Response

    @property
    def status_code(self) -> int:
        return self.response.status_code

    def json(self) -> Any:
        return self.response.json()


class WebhookClient:
    """Posts deliveries to an app over real HTTP, signed and with GitHub's headers."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        path: str = "/webhooks/github/",
        fake: FakeGitHub | None = None,
    ) -> None:
        self.url = url.rstrip("/") + path
        self.secret = secret
        self.fake = fake
        self.sent: list[PostedDelivery] = []

    def post(
        self,
        event: str,
        payload: dict[str, Any] | None = None,
        *,
        action: str | None = None,
        installation_id: int | None = None,
        delivery_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> PostedDelivery:
        """Send ``event``; the payload gets ``action`` and an ``installation`` (the fake's
        first one unless the payload or ``installation_id`` names another)."""
        body: dict[str, Any] = dict(payload or {})
        if action is not None:
            body["action"] = action
        if installation_id is None and self.fake is not None and self.fake.installation_ids:
            installation_id = self.fake.installation_ids[0]
        if installation_id is not None:
            body.setdefault("installation", {"id": installation_id})
        delivery_id = delivery_id or str(uuid.uuid4())
        content, sent = signed_request(event, body, secret=self.secret, delivery_id=delivery_id)
        sent.update(headers or {})
        response = httpx.post(self.url, content=content, headers=sent, timeout=30)
        posted = PostedDelivery(delivery_id, response)
        self.sent.append(posted)
        return posted


@contextmanager
def serve_webhooks(
    web: Any, secret: str, *, path: str = "/webhooks/github/", fake: FakeGitHub | None = None
) -> Iterator[WebhookClient]:
    """Serve ``web`` on loopback for the block and yield a WebhookClient posting to it."""
    with serve(web) as url:
        yield WebhookClient(url, secret, path=path, fake=fake)


class Deliveries:
    """What the store says about deliveries: the runs each queued and how each ended."""

    def __init__(self, github_app: GitHubApp) -> None:
        self.github_app = github_app

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        return self.github_app.store.get_delivery(delivery_id, with_payload=False)

    def runs(self, delivery_id: str) -> dict[str, RunRecord]:
        """The delivery's background runs by handler name (empty when it queued none)."""
        record = self.get(delivery_id)
        return {} if record is None else {run.handler: run for run in record.runs}

    def wait(self, delivery_id: str, timeout: float = 30.0) -> DeliveryRecord:
        """The delivery once every run it queued has ended (succeeded, failed or dead)."""
        deadline = time.monotonic() + timeout
        record = self.get(delivery_id)
        while time.monotonic() < deadline:
            if record is not None and all(run.state.finished for run in record.runs):
                return record
            time.sleep(0.05)
            record = self.get(delivery_id)
        raise AssertionError(f"delivery {delivery_id}'s runs did not end in {timeout} s: {record}")


@contextmanager
def background_worker(
    github_app: GitHubApp, *, concurrency: int = 4, shutdown_timeout: float = 30.0
) -> Iterator[Any]:
    """A Celery worker in a thread of this process, taking every queue ``github_app``'s
    handlers use (register them first), with the threads pool production uses."""
    from celery.contrib.testing.worker import start_worker

    celery = github_app.celery
    queues = [queue.name for queue in celery.conf.task_queues or ()]
    with start_worker(
        celery,
        pool="threads",
        concurrency=concurrency,
        perform_ping_check=False,  # the embedded broker has no remote control to ping with
        shutdown_timeout=shutdown_timeout,
        queues=queues or None,
    ) as worker:
        yield worker
