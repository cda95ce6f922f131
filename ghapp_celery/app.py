"""GitHubApp: the object a user creates. It keeps fastapi-githubapp 0.2.7's public API.

It owns the handler registry, mounts the webhook route, and holds its parts as typed
collaborators. Every lazy part, the resolved settings and the intake's policy among them, is a
``ghapp_celery._lazy.Lazy`` created on first use under the app's one lock:

- ``credentials``: the app's GitHub credentials and token cache (``github.credentials``);
- ``background``: the Celery app, the scheduler, replay and the sweeper over the app's
  delivery store (``tasks.runtime``), built only when a background handler first needs it;
- ``store``: the delivery store, built on first read (the status API reads it alone);
- ``intake``: the webhook route's ``WebhookIntake``;
- ``oauth_integration``: GitHub login for the app's users (``oauth.integration``).

Each fastapi-githubapp 0.2.7 method and property is a delegation to one of them.
Per-delivery state (``payload``, ``delivery_id``, ``event``) is read from a contextvar, so
concurrent deliveries never see each other's data.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, FastAPI, Request

from . import compat
from ._config_checks import StartupCheck, check_startup, readiness
from ._fallback_log import FallbackStderrHandler
from ._lazy import Lazy
from .config import Settings, as_text, load_env_into, resolve_settings, secret_fields
from .context import current_delivery, set_current_delivery
from .exceptions import GitHubAppError
from .github.auth import GitHubAppAuth, InstallationAuthorization
from .github.credentials import AppCredentials
from .github.ratelimit import is_rate_limited, rate_limit_info, retry_delay
from .intake import IntakePolicy, WebhookIntake, webhook_router
from .intake.health import mount_health
from .observability import tracing
from .observability.fastapi_spans import leave_webhook_to_ours
from .observability.logs import apply_log_format
from .policy import RetryPolicy
from .routing import HandlerRegistry
from .webhooks import Delivery, parse_delivery

if TYPE_CHECKING:
    from celery import Celery

    from .github import AsyncGitHubClient
    from .oauth.integration import OAuthIntegration
    from .oauth.manager import OAuthManager
    from .store import DeliveryStore, RunRecord
    from .tasks.runtime import BackgroundRuntime
    from .tasks.scheduler import CeleryScheduler
    from .tasks.sweeper import SweepReport

__all__ = ["GitHubApp"]

LOG = logging.getLogger("ghapp_celery")
F = TypeVar("F", bound=Callable[..., Any])


def _current_installation() -> int | None:
    """The installation id of the delivery being handled (request or worker), if any."""
    delivery = current_delivery()
    return None if delivery is None else delivery.installation_id


class GitHubApp:
    """Receive GitHub webhooks on a FastAPI app and act as a GitHub App.

    ``GitHubApp(app)`` reads ``GITHUBAPP_*`` from the environment (and ``app.config``);
    keyword arguments win over both.
    """

    def __init__(
        self,
        app: FastAPI | None = None,
        *,
        github_app_id: int | str | None = None,
        github_app_key: bytes | str | None = None,
        github_app_secret: bytes | str | list[str] | bool | None = None,
        github_app_url: str | None = None,
        github_app_route: str | None = None,
        oauth_client_id: str | None = None,
        oauth_client_secret: str | None = None,
        oauth_redirect_uri: str | None = None,
        oauth_scopes: list[str] | None = None,
        oauth_routes_prefix: str | None = None,
        enable_oauth: bool | None = None,
        oauth_session_secret: str | None = None,
        rate_limit_retries: int | None = None,
        rate_limit_max_sleep: int | None = None,
        settings: Settings | None = None,
    ) -> None:
        given: dict[str, Any] = {
            "id": None if github_app_id is None else str(github_app_id),
            "private_key": as_text(github_app_key),
            "url": github_app_url,
            "webhook_path": github_app_route,
            "oauth_client_id": oauth_client_id,
            "oauth_client_secret": oauth_client_secret,
            "oauth_redirect_uri": oauth_redirect_uri,
            "oauth_scopes": oauth_scopes,
            "oauth_routes_prefix": oauth_routes_prefix,
            "enable_oauth": enable_oauth,
            "oauth_session_secret": oauth_session_secret,
            "rate_limit_retries": None
            if rate_limit_retries is None
            else max(0, rate_limit_retries),
            "rate_limit_max_sleep": rate_limit_max_sleep or None,
        }
        if github_app_secret is not None:
            given.update(secret_fields(github_app_secret))
        # What was passed, as passed: 0.2.7's .id/.key/.secret read it back unchanged (an int
        # id, a bytes key), and init_app writes it into app.config as 0.2.7 did.
        self._given: dict[str, Any] = {
            "GITHUBAPP_ID": github_app_id,
            "GITHUBAPP_PRIVATE_KEY": github_app_key,
            "GITHUBAPP_WEBHOOK_SECRET": github_app_secret,
        }
        self._overrides = {k: v for k, v in given.items() if v is not None}
        self._base_settings = settings
        self.config: dict[str, Any] = {}
        self.registry = HandlerRegistry()
        # The one lock of every lazy part. Re-entrant: a part's factory may read a sibling
        # (the router reads the intake; the scheduler, the Celery app and the store).
        self._lock = lock = threading.RLock()
        # Reset by init_app, which lays app.config (load_env's values) under the keywords.
        self._settings = Lazy(self._resolve_settings, lock)
        self._policy = Lazy(self._create_intake_policy, lock)
        self.credentials = AppCredentials(lambda: self.settings, lock, _current_installation)
        self._background: Lazy[BackgroundRuntime] = Lazy(self._create_background, lock)
        self._store: Lazy[DeliveryStore] = Lazy(self._create_store, lock)
        self._oauth: Lazy[OAuthIntegration] = Lazy(self._create_oauth, lock)
        self._intake = Lazy(self._create_intake, lock)
        self._router = Lazy(self._create_router, lock)
        self._initialized = False
        if app is not None:
            self.init_app(app)

    # -- configuration -----------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings.get()

    def _resolve_settings(self) -> Settings:
        settings = resolve_settings(self.config, self._overrides, self._base_settings)
        # Before anything logs with these settings: GITHUBAPP_LOG_FORMAT for the package's
        # own handlers (observability/logs.py).
        fallback = [h for h in LOG.handlers if isinstance(h, FallbackStderrHandler)]
        apply_log_format(settings.log_format, *fallback)
        return settings

    @property
    def id(self) -> int | str | None:
        """The app id: what was passed as ``github_app_id``, else the configured one."""
        given = self._given["GITHUBAPP_ID"]
        return self.settings.id if given is None else given

    @property
    def key(self) -> bytes | str | None:
        """The private key: what was passed as ``github_app_key``, else the configured PEM."""
        given = self._given["GITHUBAPP_PRIVATE_KEY"]
        return self.settings.private_key_pem() if given is None else given

    @property
    def secret(self) -> Any:
        """The webhook secret: what was passed as ``github_app_secret``, else the configured."""
        given = self._given["GITHUBAPP_WEBHOOK_SECRET"]
        if given is not None:
            return given
        s = self.settings.webhook_secret
        return None if s is None else s.get_secret_value()

    @property
    def base_url(self) -> str:
        return self.credentials.base_url

    @staticmethod
    def load_env(app: Any) -> None:
        """Copy ``GITHUBAPP_*`` variables into ``app.config`` where not already set (0.2.7)."""
        if not hasattr(app, "config"):
            app.config = {}
        load_env_into(app.config)

    # -- the parts --------------------------------------------------------------------------

    @property
    def background(self) -> BackgroundRuntime:
        """The background side: Celery app, delivery store, scheduler, replay and sweep."""
        return self._background.get()

    def _create_background(self) -> BackgroundRuntime:
        # Imported here: the tasks package loads kombu, which an inline-only app never needs.
        from .tasks.runtime import BackgroundRuntime

        return BackgroundRuntime(
            self.registry,
            settings=lambda: self.settings,
            auth=lambda: self.auth,
            store=self._store.get,
            purge_oauth=self._purge_oauth,
            lock=self._lock,
            check_startup=lambda: check_startup(self),
        )

    def _create_store(self) -> DeliveryStore:
        # The app's part, which the background runtime is given: reading the store alone (the
        # status API) loads SQLAlchemy, not the tasks package and kombu.
        from .store import DeliveryStore

        return DeliveryStore(self.settings.store_url())

    @property
    def oauth_integration(self) -> OAuthIntegration:
        """GitHub login for the app's users: options, hooks and the OAuthManager."""
        return self._oauth.get()

    def _create_oauth(self) -> OAuthIntegration:
        from .oauth.integration import OAuthIntegration

        return OAuthIntegration(lambda: self.settings, lambda: self.auth, self._lock)

    def _purge_oauth(self) -> int | None:
        # Only an app with OAuth sessions keeps rows to purge; others never load OAuth here.
        if self.settings.oauth_session_secret is None:
            return None
        return self.oauth_integration.purge()

    @property
    def intake(self) -> WebhookIntake:
        return self._intake.get()

    def _create_intake(self) -> WebhookIntake:
        return WebhookIntake(
            self.registry,
            self._intake_policy,
            sync_threads=self.settings.sync_handler_threads,
            schedule_threads=self.settings.schedule_threads,
            scheduler=lambda: self.scheduler,
            auth=lambda: self.auth,
            store=lambda: self.store,
        )

    @property
    def router(self) -> APIRouter:
        """The router carrying the webhook route; mount it yourself or let init_app do it."""
        return self._router.get()

    def _create_router(self) -> APIRouter:
        return webhook_router(self.settings.webhook_path, self.intake.__call__)

    def _intake_policy(self) -> IntakePolicy:
        # Read on every delivery: built once from the settings, again after init_app.
        return self._policy.get()

    def _create_intake_policy(self) -> IntakePolicy:
        return IntakePolicy.from_settings(self.settings)

    # -- mounting ----------------------------------------------------------------------------

    def init_app(self, app: FastAPI, *, route: str | None = None) -> None:
        """Mount the webhook route on ``app`` (once; later calls do nothing)."""
        if self._initialized:
            LOG.debug("GitHubApp.init_app called more than once; ignoring")
            return
        if not hasattr(app, "config"):
            app.config = {}  # type: ignore[attr-defined]
        self.config = app.config  # type: ignore[attr-defined]
        # As 0.2.7: the constructor's credentials go into app.config (they win over it anyway).
        self.config.update({key: value for key, value in self._given.items() if value is not None})
        if route is not None:
            self._overrides["webhook_path"] = route
        # Re-read both: app.config may carry load_env values.
        self._settings.reset()
        self._policy.reset()
        self._warn_about_verification()
        app.include_router(self.router)
        leave_webhook_to_ours(app, self.settings.webhook_path)  # one server span per delivery
        if app.middleware_stack is None:  # Starlette takes no middleware once serving
            app.add_middleware(StartupCheck, check=lambda: check_startup(self))
        self._mount_status_api(app)
        self._mount_metrics(app)
        mount_health(
            app,
            health_path=self.settings.health_path,
            ready_path=self.settings.ready_path,
            check=lambda: readiness(self),
        )
        self.oauth_integration.mount(app, self.get_current_user)
        self._install_lifespan(app)
        self._initialized = True

    def _mount_status_api(self, app: FastAPI) -> None:
        token = self.settings.status_token
        if token is None or not token.get_secret_value():
            return  # no token, no route: the status API is never open by accident
        from .intake.status import build_status_router

        router = build_status_router(lambda: self.store, token.get_secret_value(), self.replay)
        app.include_router(router, prefix=self.settings.status_prefix.rstrip("/"))

    def _mount_metrics(self, app: FastAPI) -> None:
        if not self.settings.metrics_enabled:
            return  # and prometheus_client is never imported
        from .intake.metrics_route import mount_metrics, store_reading

        def read_store() -> Any:
            # At scrape time: handlers registered after init_app count too.
            queues = {self.scheduler.queue(s.task_name) for s in self.registry.background()}
            return store_reading(self.store, queues)

        mount_metrics(app, self.settings, read_store)

    def _warn_about_verification(self) -> None:
        s = self.settings
        if not s.verify_signatures:
            LOG.warning("Webhook signature verification is OFF (GITHUBAPP_WEBHOOK_SECRET=False)")
        elif not s.webhook_secrets():
            LOG.warning(
                "No webhook secret is set: unsigned deliveries are accepted. "
                "Set GITHUBAPP_WEBHOOK_SECRET to the secret configured on the GitHub App."
            )

    def _install_lifespan(self, app: FastAPI) -> None:
        existing = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
            tracing.setup("web")  # uses a provider installed by now (FastAPI's, the user's)
            async with existing(asgi_app) as state:
                try:
                    yield state
                finally:
                    await self.aclose()

        app.router.lifespan_context = lifespan

    async def aclose(self) -> None:
        """Close the HTTP clients and threads this app opened (called on the FastAPI app's
        shutdown)."""
        intake = self._intake.peek()
        if intake is not None:
            # Off the event loop: closing writes the handled deliveries still queued.
            await asyncio.to_thread(intake.close)
        if tracing.enabled:  # the batched spans would be lost with the process
            await asyncio.to_thread(tracing.flush)
        await self.credentials.aclose()

    # -- handlers ----------------------------------------------------------------------------

    def on(
        self,
        event_action: str,
        *,
        background: bool = False,
        queue: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function for ``event``, ``event.action`` or ``*``.

        ``background=True`` makes it a Celery task on the queue ``github.<event>`` (or
        ``queue``), retried per ``retry`` and stopped after ``timeout`` seconds; the webhook is
        answered 202 as soon as the run is recorded and queued.
        """

        def decorator(func: F) -> F:
            spec = self.registry.add(
                event_action,
                func,
                background=background,
                queue=queue,
                retry=retry,
                timeout=timeout,
            )
            if background:
                self.background.add_handler(spec)
            return func

        return decorator

    @property
    def _hook_mappings(self) -> dict[str, list[Callable[..., Any]]]:
        return self.registry.mapping()

    # -- the current delivery (contextvars) --------------------------------------------------

    def _delivery(self) -> Delivery:
        delivery = current_delivery()
        if delivery is None:
            raise GitHubAppError("Not inside a webhook delivery: no payload", status=400)
        return delivery

    @property
    def payload(self) -> dict[str, Any]:
        return self._delivery().payload

    @payload.setter
    def payload(self, value: dict[str, Any]) -> None:
        # Scripts and tests set a payload by hand; it applies to the current context only.
        # Parsed as a webhook's is, so its installation is what client()/get_client() use
        # without an id, as in 0.2.7.
        headers = {"X-GitHub-Event": "manual", "X-GitHub-Delivery": "manual"}
        set_current_delivery(parse_delivery(headers, value))

    @property
    def delivery_id(self) -> str | None:
        delivery = current_delivery()
        return delivery.id if delivery else None

    @property
    def event(self) -> str | None:
        delivery = current_delivery()
        return delivery.event if delivery else None

    # -- the background side (BackgroundRuntime) ---------------------------------------------

    @property
    def celery(self) -> Celery:
        """The Celery app running this GitHubApp's background handlers.

        Point workers at it: ``celery -A myapp:celery worker -Q github.issues``.
        """
        return self.background.celery

    @property
    def store(self) -> DeliveryStore:
        """The delivery store (SQLite in GITHUBAPP_DATA_DIR unless GITHUBAPP_DATABASE_URL)."""
        return self._store.get()

    @property
    def scheduler(self) -> CeleryScheduler:
        return self.background.scheduler

    def replay(self, delivery_id: str) -> list[RunRecord]:
        """Run a delivery's failed and dead handlers again; returns the runs published."""
        return self.background.replay(delivery_id)

    def sweep(self) -> SweepReport:
        """Republish runs that were never published or whose worker died (see tasks.sweeper)."""
        return self.background.sweep()

    # -- GitHub credentials and clients (AppCredentials), 0.2.7's names ----------------------

    @property
    def auth(self) -> GitHubAppAuth:
        """The app's credentials: JWTs and one installation-token cache for sync and async."""
        return self.credentials.auth

    def _create_jwt(self, expiration: int = 60) -> str:
        return self.auth.create_jwt(expiration)

    def get_access_token(
        self, installation_id: int, user_id: int | None = None
    ) -> InstallationAuthorization:
        return self.auth.get_access_token(installation_id, user_id)

    async def aget_access_token(
        self, installation_id: int, user_id: int | None = None
    ) -> InstallationAuthorization:
        return await self.auth.aget_access_token(installation_id, user_id)

    def list_installations(self, per_page: int = 30, page: int = 1) -> list[dict[str, Any]]:
        return self.auth.list_installations(per_page=per_page, page=page)

    async def alist_installations(self, per_page: int = 30, page: int = 1) -> list[dict[str, Any]]:
        return await self.auth.alist_installations(per_page=per_page, page=page)

    @property
    def installation_token(self) -> str | None:
        """The current delivery's installation token (cached; minted on first use)."""
        return self.credentials.installation_token()

    def client(self, installation_id: int | None = None) -> Any:
        """A synchronous ghapi ``GhApi`` acting as the installation, on ``github_app_url``."""
        token = self.get_access_token(self.credentials.installation_id(installation_id)).token
        return compat.ghapi_client(token, self.base_url, self)

    def get_client(self, installation_id: int | None = None) -> Any:
        return self.client(installation_id)

    async def aclient(self, installation_id: int | None = None) -> Any:
        """The asynchronous ghapi client (ghapi 2.x's default), for ``async def`` handlers."""
        auth = await self.aget_access_token(self.credentials.installation_id(installation_id))
        return compat.async_ghapi_client(auth.token, self.base_url)

    def retry_with_rate_limit(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        s = self.settings
        return compat.retry_with_rate_limit(
            func, *args, retries=s.rate_limit_retries, max_sleep=s.rate_limit_max_sleep, **kwargs
        )

    # 0.2.7's private helpers, kept because tests in the wild call them.
    def _is_rate_limited(self, response: Any) -> bool:
        return is_rate_limited(response.status_code, dict(response.headers))

    def _extract_rate_limit_info(self, response: Any) -> dict[str, Any]:
        return rate_limit_info(dict(response.headers))

    def _calculate_retry_delay(self, response: Any, attempt: int) -> float:
        max_sleep = self.settings.rate_limit_max_sleep
        return retry_delay(dict(response.headers), attempt, time.time(), max_backoff=max_sleep)

    # -- GitHub login (OAuthIntegration) -----------------------------------------------------

    @property
    def oauth(self) -> OAuthManager | None:
        """The OAuth manager (0.2.7's ``github_app.oauth``); None when OAuth is off."""
        return self.oauth_integration.manager

    def get_current_user(self, request: Request) -> dict[str, Any]:
        """FastAPI dependency: the live session's claims (Bearer header or cookie), else 401."""
        return self.oauth_integration.current_user(request)

    def require_user(self, request: Request) -> dict[str, Any]:
        """``Depends(github_app.require_user)``: the same as get_current_user."""
        return self.get_current_user(request)

    def optional_user(self, request: Request) -> dict[str, Any] | None:
        """``Depends(github_app.optional_user)``: the session's claims, or None for a visitor."""
        return self.oauth_integration.optional_user(request)

    def user_github(self, user: dict[str, Any] | None) -> AsyncGitHubClient:
        """A GitHub client acting as the signed-in ``user`` (tokens refreshed as needed)."""
        return self.oauth_integration.user_github(user)

    def on_login(self, func: F) -> F:
        """Call ``func(user, request)`` (sync or async) after each login; may raise to refuse."""
        self.oauth_integration.on_login(func)
        return func

    def on_logout(self, func: F) -> F:
        """Call ``func(claims, request)`` (sync or async) after each logout."""
        self.oauth_integration.on_logout(func)
        return func
