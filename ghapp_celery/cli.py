"""The ghapp-celery command: try, inspect and operate a GitHub App built on ghapp_celery.

- ``receive issues.opened [--wait]``: post a real, signed sample delivery to a running app,
  with GitHub's headers; ``--wait`` follows its background runs in the store until they end.
- ``check``: the app's whole configuration (credentials, store, broker, routes), what is missing.
- ``routes``: event -> handler -> Celery task -> queue, for ``celery worker -Q``.
- ``db upgrade``: migrate the store. ``sweep``: republish runs that must run but aren't.
- ``deliveries list|show|replay``: what was received, what ran, and running failed runs again.

Commands that need the app take ``--app module:attribute`` (or ``GITHUBAPP_APP``), e.g.
``--app examples.quickstart:github_app``. What a command cannot do (an unreachable store or
broker, an app it cannot import, a configuration error) is one line on stderr and a non-zero
exit, never a traceback. Times are ISO 8601, as the status API writes them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import httpx

from .config import Settings
from .exceptions import GitHubAppError, StoreUnavailable
from .webhooks import signed_request

if TYPE_CHECKING:
    from .app import GitHubApp
    from .store import DeliveryRecord, DeliveryStore

__all__ = ["DEVELOPMENT_SECRET", "load_app", "main", "sample_names", "sample_payload"]

#: The secret the quickstart uses when none is configured, so the two match out of the box.
DEVELOPMENT_SECRET = "development-secret"  # noqa: S105  (public on purpose: local only)

# Events whose deliveries carry no installation (GITHUB_FACTS §10).
_APP_LEVEL = {"ping", "meta", "security_advisory", "github_app_authorization"}
_FINAL_STATES = {"succeeded", "failed", "dead"}


def _int64(text: str) -> int:
    """An argparse type: an integer a signed 64-bit column can hold (installation ids)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text[:40]!r}") from None
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError("out of range for a 64-bit integer")
    return value


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


def load_app(spec: str | None) -> GitHubApp:
    """Import ``module:attribute`` and return the GitHubApp it names."""
    from .app import GitHubApp

    spec = spec or os.environ.get("GITHUBAPP_APP")
    if not spec or ":" not in spec:
        raise SystemExit("Name the app: --app module:attribute (or set GITHUBAPP_APP)")
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"Cannot import {module_name} for --app {spec}: {exc}") from None
    except GitHubAppError:
        raise  # a configuration error: main prints it
    except Exception as exc:  # the user's module failed; its traceback is python's to show
        raise SystemExit(
            f"Importing {module_name} failed: {type(exc).__name__}: {exc} "
            f"(python -c 'import {module_name}' shows where)"
        ) from None
    try:
        app = getattr(module, attribute)
    except AttributeError:
        raise SystemExit(f"{module_name} has no attribute {attribute!r} (--app {spec})") from None
    if not isinstance(app, GitHubApp):
        raise SystemExit(f"{spec} is a {type(app).__name__}, not a GitHubApp")
    return app


def _existing(store: DeliveryStore) -> DeliveryStore:
    """``store``, unless it is a SQLite file that does not exist: reading it would create an
    empty store here, where the app (elsewhere) never looks."""
    missing = store.missing_file()
    if missing is not None:
        raise SystemExit(
            f"No delivery store at {missing}: run this in the app's directory, or set "
            "GITHUBAPP_DATA_DIR or GITHUBAPP_DATABASE_URL to the app's"
        )
    return store


def _store() -> DeliveryStore:
    from .store import DeliveryStore

    return _existing(DeliveryStore(Settings().store_url()))


def _state(text: str) -> str:
    """An argparse type: a delivery state, refused as the status API refuses it."""
    from .store import DeliveryState  # here: only a --state needs the store package

    states = [state.value for state in DeliveryState]
    if text not in states:
        choices = ", ".join(repr(state) for state in states)
        raise argparse.ArgumentTypeError(f"invalid state {text[:40]!r}: one of {choices}")
    return text


def _background_app(spec: str | None) -> GitHubApp:
    """The app, for a command that publishes to its broker: its Celery settings importable
    and its broker reachable, else one line."""
    from .tasks.celery_app import broker_unreachable, config_module_problem

    github_app = load_app(spec)
    problem = config_module_problem(github_app.settings) or broker_unreachable(github_app.celery)
    if problem:
        raise SystemExit(problem)
    _existing(github_app.store)
    return github_app


def _follow(delivery_id: str, timeout: float) -> int:
    """Print each run's state changes until every run has ended (or ``timeout`` passes)."""
    store = _store()
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = store.get_delivery(delivery_id, with_payload=False)
        runs = record.runs if record else ()
        for run in runs:
            if seen.get(run.id) != run.state.value:
                seen[run.id] = run.state.value
                print(f"  run {run.id} {run.handler}: {run.state.value}")
        if runs and all(run.state.value in _FINAL_STATES for run in runs):
            return 0 if all(run.state.value == "succeeded" for run in runs) else 1
        time.sleep(0.2)
    print(f"  gave up after {timeout:.0f} s: is a worker running?")
    return 1


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
    delivery_id = headers["X-GitHub-Delivery"]
    print(f"POST {url}  X-GitHub-Event: {event}  X-GitHub-Delivery: {delivery_id}")
    print(f"-> {response.status_code} {response.text}")
    if not response.is_success:
        return 1
    if args.wait and response.status_code == 202:
        return _follow(delivery_id, args.timeout)
    return 0


def _routes(args: argparse.Namespace) -> int:
    github_app = load_app(args.app)
    from .tasks.celery_app import config_module_problem, queue_of

    problem = config_module_problem(github_app.settings)
    if problem:  # its task_routes may move handlers to other queues
        raise SystemExit(problem)

    rows = [("EVENT", "HANDLER", "TASK", "QUEUE")]
    for spec in github_app.registry:
        if spec.background:
            queue = queue_of(github_app.celery, spec.task_name)
            rows.append((spec.key, spec.qualified_name, spec.task_name, queue))
        else:
            rows.append((spec.key, spec.qualified_name, "(inline)", "-"))
    _table(rows)
    return 0


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def _check(args: argparse.Namespace) -> int:
    from ._config_checks import report

    findings = report(load_app(args.app))
    _table([(f.part, f.state, f.detail) for f in findings])
    return 1 if any(f.state == "error" for f in findings) else 0


def _deliveries(args: argparse.Namespace) -> int:
    if args.deliveries_command == "replay":
        runs = _background_app(args.app).replay(args.delivery_id)
        print(f"Republished {len(runs)} run(s) of delivery {args.delivery_id}")
        for run in runs:
            print(f"  run {run.id} {run.handler} -> {run.queue}")
        return 0
    store = _store()
    if args.deliveries_command == "show":
        record = store.get_delivery(args.delivery_id, with_payload=args.payload)
        if record is None:
            print(f"No delivery {args.delivery_id}")
            return 1
        print(json.dumps(_as_json(record), indent=2))
        return 0
    page = store.list_deliveries(
        event=args.event, state=args.state, installation_id=args.installation, limit=args.limit
    )
    now = datetime.now(UTC)
    for item in page.items:
        states = ", ".join(
            f"{r.handler.split(':')[-1]}={r.state.value}"
            + (
                " (lease expired: its worker died; the sweeper re-queues it)"
                if r.lease_expired(now)
                else ""
            )
            for r in item.runs
        )
        name = f"{item.event}.{item.action}" if item.action else item.event
        print(f"{item.received_at.isoformat()} {item.id} {name} [{item.state}] {states}")
    return 0


def _as_json(record: DeliveryRecord) -> dict[str, Any]:
    """What the status API answers for this delivery (ISO 8601 times, the runs' views)."""
    from fastapi.encoders import jsonable_encoder

    data: dict[str, Any] = jsonable_encoder(record.view(datetime.now(UTC)))
    return data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ghapp-celery", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    receive = commands.add_parser("receive", help="post a real, signed sample delivery")
    receive.add_argument("name", help=f"sample to send: {', '.join(sample_names())}")
    receive.add_argument("--url", help="webhook URL (default http://127.0.0.1:8000 + path)")
    receive.add_argument(
        "--secret",
        help=f"webhook secret (default GITHUBAPP_WEBHOOK_SECRET, else {DEVELOPMENT_SECRET!r})",
    )
    receive.add_argument("--installation-id", type=_int64, default=1)
    receive.add_argument("--app-id", type=int, default=None)
    receive.add_argument("--wait", action="store_true", help="follow the background runs")
    receive.add_argument("--timeout", type=float, default=60.0)
    commands.add_parser("samples", help="list the bundled sample payloads")

    routes = commands.add_parser("routes", help="event -> handler -> task -> queue")
    routes.add_argument("--app", help="module:attribute of the GitHubApp")
    check = commands.add_parser(
        "check", help="the app's credentials, store, broker and routes, and what is missing"
    )
    check.add_argument("--app", help="module:attribute of the GitHubApp")

    db = commands.add_parser("db", help="the delivery store")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="migrate the store to the latest schema")

    sweep = commands.add_parser("sweep", help="republish runs that must run but aren't")
    sweep.add_argument("--app", help="module:attribute of the GitHubApp")

    deliveries = commands.add_parser("deliveries", help="recorded deliveries and their runs")
    sub = deliveries.add_subparsers(dest="deliveries_command", required=True)
    listing = sub.add_parser("list", help="newest first")
    listing.add_argument("--event")
    listing.add_argument("--state", type=_state, help="a delivery state, e.g. failed")
    listing.add_argument("--installation", type=_int64)
    listing.add_argument("--limit", type=int, default=20)
    show = sub.add_parser("show", help="one delivery with its runs")
    show.add_argument("delivery_id")
    show.add_argument("--payload", action="store_true", help="include the payload")
    replay = sub.add_parser("replay", help="run a delivery's failed and dead handlers again")
    replay.add_argument("delivery_id")
    replay.add_argument("--app", help="module:attribute of the GitHubApp")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The command speaks for itself, in one line when it fails: the library's warnings while
    # it loads the app (no webhook secret, no credentials, ...) would come before that line
    # and bury it. `ghapp-celery check` reports each of them as a finding instead. Errors
    # still show.
    library = logging.getLogger("ghapp_celery")
    level = library.level
    library.setLevel(max(level, logging.ERROR))
    try:
        return _run(args)
    except GitHubAppError as exc:  # ConfigurationError, StoreUnavailable, ...
        print(f"ghapp-celery: {_one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        library.setLevel(level)


def _one_line(exc: GitHubAppError) -> str:
    from ._config_checks import with_cause

    return with_cause(exc) if isinstance(exc, StoreUnavailable) else str(exc)


def _run(args: argparse.Namespace) -> int:
    if args.command == "samples":
        print("\n".join(sample_names()))
        return 0
    if args.command == "receive":
        return _receive(args)
    if args.command == "routes":
        return _routes(args)
    if args.command == "check":
        return _check(args)
    if args.command == "db":
        from .store import DeliveryStore

        store = DeliveryStore(Settings().store_url())  # creating it is the point
        store.upgrade()
        print(f"Store at revision {store.current_revision()}")
        return 0
    if args.command == "sweep":
        print(json.dumps(_background_app(args.app).sweep().as_dict()))
        return 0
    return _deliveries(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
