"""The ``ghapp-celery`` command.

``ghapp-celery receive issues.opened`` posts a real, signed delivery to a running app, with
GitHub's headers, so a new user can watch a handler run without a GitHub App.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any

import httpx

from .config import Settings
from .webhooks import signed_request

__all__ = ["DEVELOPMENT_SECRET", "main", "sample_names", "sample_payload"]

#: The secret the quickstart uses when none is configured, so the two match out of the box.
DEVELOPMENT_SECRET = "development-secret"  # noqa: S105  (public on purpose: local only)

# Events whose deliveries carry no installation (GITHUB_FACTS §10).
_APP_LEVEL = {"ping", "meta", "security_advisory", "github_app_authorization"}


def sample_names() -> list[str]:
    """The bundled payloads, as ``event`` or ``event.action``."""
    files = resources.files("ghapp_celery.samples").iterdir()
    return sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json"))


def sample_payload(name: str, installation_id: int | None = None) -> tuple[str, dict[str, Any]]:
    """(event, payload) for a bundled sample; adds the installation a GitHub App would get."""
    if name not in sample_names():
        raise SystemExit(f"No sample {name!r}; choose one of: {', '.join(sample_names())}")
    text = resources.files("ghapp_celery.samples").joinpath(f"{name}.json").read_text("utf-8")
    payload: dict[str, Any] = json.loads(text)
    event = name.split(".", 1)[0]
    if installation_id is not None and event not in _APP_LEVEL:
        payload["installation"] = {"id": installation_id, "node_id": f"MDIz{installation_id}"}
    return event, payload


def _receive(args: argparse.Namespace) -> int:
    settings = Settings()
    configured = settings.webhook_secrets()
    secret = args.secret or (configured[0] if configured else DEVELOPMENT_SECRET)
    event, payload = sample_payload(args.name, args.installation_id)
    body, headers = signed_request(event, payload, secret=secret, app_id=args.app_id)
    url = args.url or f"http://127.0.0.1:8000{settings.webhook_path}"
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        print(f"Could not reach {url}: {type(exc).__name__}. Is the app running (make run)?")
        return 2
    print(f"POST {url}  X-GitHub-Event: {event}  X-GitHub-Delivery: {headers['X-GitHub-Delivery']}")
    print(f"-> {response.status_code} {response.text}")
    return 0 if response.is_success else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ghapp-celery", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    receive = commands.add_parser(
        "receive", help="post a real, signed sample delivery to a running app"
    )
    receive.add_argument("name", help=f"sample to send: {', '.join(sample_names())}")
    receive.add_argument("--url", help="webhook URL (default http://127.0.0.1:8000 + path)")
    receive.add_argument(
        "--secret",
        help=f"webhook secret (default GITHUBAPP_WEBHOOK_SECRET, else {DEVELOPMENT_SECRET!r})",
    )
    receive.add_argument("--installation-id", type=int, default=1)
    receive.add_argument("--app-id", type=int, default=None)
    commands.add_parser("samples", help="list the bundled sample payloads")
    args = parser.parse_args(argv)
    if args.command == "samples":
        print("\n".join(sample_names()))
        return 0
    return _receive(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
