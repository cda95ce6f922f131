"""What a GitHubApp's configuration lacks, found before the first delivery needs it.

- ``check_startup(app)``: run when the app is served (``StartupCheck``, the ASGI lifespan) and
  when one of its workers starts (``tasks.celery_app.connect_startup_check``). A configuration
  that cannot work raises ConfigurationError, whose one line the server or worker prints
  before it exits. Nothing is connected: a database or broker that is down at start-up may be
  back by the first delivery, and the intake answers 503 meanwhile.
- ``report(app)``: every part (GitHub credentials, webhook secret, store, Celery settings,
  broker, routes) as ``Finding`` rows, connecting to the store and the broker; what
  ``ghapp-celery check`` prints.

No credentials at all is not an error: an app that only answers webhooks needs none, and
fastapi-githubapp 0.2.7 tests build apps without them. Credentials given the 0.2.7 way (the
``github_app_id=``/``github_app_key=`` arguments or ``app.config``) that cannot sign are only
logged at start-up: 0.2.7 accepted them there, and its tests pass placeholders and mock the
GitHub calls. The same values from ghapp_celery's own settings (the environment, a key file,
``settings=``) refuse the start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .exceptions import ConfigurationError, GitHubAppError

if TYPE_CHECKING:
    from .app import GitHubApp

__all__ = ["Finding", "StartupCheck", "check_startup", "report", "with_cause"]

LOG = logging.getLogger("ghapp_celery")

State = Literal["ok", "missing", "warning", "error"]
_CREDENTIAL_KEYS = ("GITHUBAPP_ID", "GITHUBAPP_PRIVATE_KEY")
_NO_CREDENTIALS = (
    "GITHUBAPP_ID and GITHUBAPP_PRIVATE_KEY (or GITHUBAPP_PRIVATE_KEY_PATH) are not set: "
    "handlers can answer webhooks but not call GitHub as the app"
)


@dataclass(frozen=True)
class Finding:
    """One line of the report: a part of the configuration, its state and what to know."""

    part: str
    state: State
    detail: str


def with_cause(exc: BaseException) -> str:
    """``exc``'s message and the first line of what caused it (a driver's "connection
    refused"), without SQLAlchemy's "(psycopg.OperationalError) " prefix. Statements' values
    never show (make_engine's hide_parameters), and drivers do not echo passwords."""
    cause = exc.__cause__
    reason = str(cause).strip().splitlines()[0] if cause and str(cause).strip() else ""
    reason = re.sub(r"^\([\w.]+\) ", "", reason)
    return f"{exc}: {reason}" if reason else str(exc)


def _given_the_027_way(app: GitHubApp) -> bool:
    # init_app copies the keyword arguments into app.config; without a FastAPI app they stay
    # in the app's own record of what was passed.
    given = app._given  # the constructor's arguments, as passed
    return any(given.get(k) is not None or app.config.get(k) is not None for k in _CREDENTIAL_KEYS)


def _uses_broker(app: GitHubApp) -> bool:
    return bool(app.registry.background())


def _uses_store(app: GitHubApp) -> bool:
    token = app.settings.status_token
    return _uses_broker(app) or bool(token and token.get_secret_value())


def _credentials(app: GitHubApp) -> Finding:
    try:
        configured = app.credentials.check()
    except ConfigurationError as exc:
        return Finding("credentials", "error", str(exc))
    if not configured:
        return Finding("credentials", "missing", _NO_CREDENTIALS)
    return Finding("credentials", "ok", f"app id {app.settings.id}, a valid RSA private key")


def _webhook_secret(app: GitHubApp) -> Finding:
    settings = app.settings
    if not settings.verify_signatures:
        return Finding("webhook secret", "warning", "verification is OFF (secret 'False')")
    secrets = settings.webhook_secrets()
    if not secrets:
        return Finding(
            "webhook secret",
            "missing",
            "GITHUBAPP_WEBHOOK_SECRET is not set: unsigned deliveries are accepted",
        )
    return Finding("webhook secret", "ok", f"set ({len(secrets)} accepted)")


def _celery_settings(app: GitHubApp) -> Finding:
    from .tasks.celery_app import config_module_problem

    problem = config_module_problem(app.settings)
    if problem:
        return Finding("celery settings", "error", problem)
    return Finding("celery settings", "ok", f"module {app.settings.celery_config_module!r}")


def _store(app: GitHubApp, *, connect: bool) -> Finding:
    if not _uses_store(app):
        return Finding("store", "ok", "not used (no background handler, no status API)")
    try:
        store = app.store
    except ConfigurationError as exc:
        return Finding("store", "error", str(exc))
    where = store.location
    if store.missing_file() is not None:
        return Finding("store", "ok", f"{where}: not created yet (the app creates it)")
    if not connect:
        return Finding("store", "ok", where)
    try:
        revision = store.current_revision()
    except GitHubAppError as exc:  # StoreUnavailable
        return Finding("store", "error", f"{where}: {with_cause(exc)}")
    return Finding("store", "ok", f"{where} (schema revision {revision or 'none yet'})")


def _broker(app: GitHubApp, *, connect: bool) -> Finding:
    if not _uses_broker(app):
        return Finding("broker", "ok", "not used (no background handler)")
    from .tasks.celery_app import broker_location, broker_problem, broker_unreachable

    celery = app.celery
    problem = broker_problem(celery) or (broker_unreachable(celery) if connect else None)
    if problem:
        return Finding("broker", "error", problem)
    return Finding("broker", "ok", broker_location(celery))


def _routes(app: GitHubApp) -> list[Finding]:
    specs = list(app.registry)
    if not specs:
        return [Finding("routes", "missing", "no handler is registered")]
    rows = []
    for spec in specs:
        where = f"background, queue {spec.queue}" if spec.background else "inline"
        rows.append(Finding("route", "ok", f"{spec.key} -> {spec.qualified_name} ({where})"))
    return rows


def report(app: GitHubApp, *, connect: bool = True) -> list[Finding]:
    """Every part of ``app``'s configuration; ``connect``: reach the store and the broker."""
    findings = [_credentials(app), _webhook_secret(app)]
    if _uses_broker(app):
        findings.append(_celery_settings(app))
    findings += [_store(app, connect=connect), _broker(app, connect=connect), *_routes(app)]
    return findings


#: What a readiness check says of a part: it answered, it did not, or the app does not use it.
PartState = Literal["ok", "unavailable", "not used"]


def readiness(app: GitHubApp, *, timeout: float = 2.0) -> dict[str, PartState]:
    """Whether the store and the broker answer now (``GET /readyz``): one round trip to each
    part the app uses. Why a part failed goes to the log, never into the answer."""
    found: dict[str, PartState] = {"store": "not used", "broker": "not used"}
    if _uses_store(app):
        try:
            app.store.ping()
            found["store"] = "ok"
        except Exception as exc:
            LOG.warning("Readiness: the store does not answer: %s", with_cause(exc))
            found["store"] = "unavailable"
    if _uses_broker(app):
        from .tasks.celery_app import broker_unreachable

        try:
            problem = broker_unreachable(app.celery, timeout=timeout)
        except Exception as exc:
            problem = with_cause(exc)
        if problem is not None:
            LOG.warning("Readiness: %s", problem)
        found["broker"] = "ok" if problem is None else "unavailable"
    return found


def check_startup(app: GitHubApp) -> None:
    """Raise ConfigurationError when ``app`` cannot work as configured (see the module
    docstring); log what it can work without."""
    credentials = _credentials(app)
    errors: list[str] = []
    if credentials.state == "missing":
        LOG.warning(credentials.detail)
    elif credentials.state == "error" and _given_the_027_way(app):
        LOG.warning("%s (starting anyway: given as 0.2.7 allowed)", credentials.detail)
    elif credentials.state == "error":
        errors.append(credentials.detail)
    parts = [_store(app, connect=False)]
    if _uses_broker(app):
        settings = _celery_settings(app)
        parts.append(settings)
        # The broker URL may come from the settings module that is missing: not judged here.
        if settings.state == "ok":
            parts.append(_broker(app, connect=False))
    errors += [finding.detail for finding in parts if finding.state == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more: run ghapp-celery check)" if len(errors) > 1 else ""
        raise ConfigurationError(errors[0] + more)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Scope]]
Send = Callable[[Scope], Awaitable[None]]


class StartupCheck:
    """ASGI middleware running ``check`` when the server starts the app (lifespan startup).

    A middleware rather than the app's lifespan context: Starlette answers a failing lifespan
    with its whole traceback as the message servers print. This one sends the error's one
    line as ``lifespan.startup.failed`` (uvicorn prints it, then "Application startup
    failed") and raises it, so ``with TestClient(app)`` raises the ConfigurationError.
    Other requests pass straight through (measured: about 0.3 us a request, against the
    hundreds of microseconds a delivery costs).
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], check: Callable[[], None]
    ) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        try:
            self.check()
        except ConfigurationError as exc:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.failed", "message": f"ghapp_celery: {exc}"})
            raise
        await self.app(scope, receive, send)
