"""GitHubApp: the object a user creates. It keeps fastapi-githubapp 0.2.7's public API.

It owns the handler registry, mounts the webhook route, and hands out GitHub credentials and
clients. Per-delivery state (``payload``, ``delivery_id``, ``event``) is read from a
contextvar, so concurrent deliveries never see each other's data.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, FastAPI, Request

from . import compat
from .config import Settings
from .context import current_delivery, set_current_delivery
from .exceptions import GitHubAppError
from .github.auth import GitHubAppAuth, InstallationAuthorization
from .github.ratelimit import is_rate_limited, rate_limit_info, retry_delay
from .intake import IntakePolicy, WebhookIntake
from .policy import RetryPolicy
from .routing import HandlerRegistry
from .webhooks import Delivery

if TYPE_CHECKING:
    from celery import Celery

    from .store import DeliveryStore, RunRecord
    from .tasks.scheduler import CeleryScheduler
    from .tasks.sweeper import SweepReport

__all__ = ["GitHubApp"]

LOG = logging.getLogger("ghapp_celery")
F = TypeVar("F", bound=Callable[..., Any])

# app.config key -> Settings field (fastapi-githubapp's load_env names).
_CONFIG_FIELDS = {
    "GITHUBAPP_ID": "id",
    "GITHUBAPP_PRIVATE_KEY": "private_key",
    "GITHUBAPP_WEBHOOK_SECRET": "webhook_secret",
    "GITHUBAPP_WEBHOOK_PATH": "webhook_path",
    "GITHUBAPP_URL": "url",
    "GITHUBAPP_OAUTH_CLIENT_ID": "oauth_client_id",
    "GITHUBAPP_OAUTH_CLIENT_SECRET": "oauth_client_secret",
    "GITHUBAPP_OAUTH_SESSION_SECRET": "oauth_session_secret",
    "GITHUBAPP_OAUTH_REDIRECT_URI": "oauth_redirect_uri",
    "GITHUBAPP_OAUTH_SCOPES": "oauth_scopes",
    "GITHUBAPP_ENABLE_OAUTH": "enable_oauth",
    "GITHUBAPP_OAUTH_ROUTES_PREFIX": "oauth_routes_prefix",
}


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _secret_fields(secret: Any) -> dict[str, Any]:
    """Constructor ``github_app_secret`` -> settings: str/bytes, False (off), or a list."""
    if secret is False:
        return {"webhook_secret": "False"}
    if isinstance(secret, (list, tuple)):
        values = [_text(s) for s in secret]
        return {"webhook_secret": values[0], "webhook_secret_previous": values[1:]}
    return {"webhook_secret": _text(secret)}


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
        rate_limit_retries: int | None = 2,
        rate_limit_max_sleep: int | None = 60,
        settings: Settings | None = None,
    ) -> None:
        given: dict[str, Any] = {
            "id": None if github_app_id is None else str(github_app_id),
            "private_key": _text(github_app_key),
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
            given.update(_secret_fields(github_app_secret))
        self._overrides = {k: v for k, v in given.items() if v is not None}
        self._base_settings = settings
        self._settings: Settings | None = None
        self.config: dict[str, Any] = {}
        self.registry = HandlerRegistry()
        self._auth: GitHubAppAuth | None = None
        self._lock = threading.Lock()
        self._router: APIRouter | None = None
        self._intake: WebhookIntake | None = None
        self._celery: Celery | None = None
        self._store: DeliveryStore | None = None
        self._scheduler: CeleryScheduler | None = None
        self._policy_cache: tuple[Settings, IntakePolicy] | None = None
        self._initialized = False
        if app is not None:
            self.init_app(app)

    # -- configuration -----------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._resolve_settings()
        return self._settings

    def _resolve_settings(self) -> Settings:
        from_config = {
            field: ("False" if value is False else _text(value))
            for key, field in _CONFIG_FIELDS.items()
            if (value := self.config.get(key)) is not None
        }
        if "GITHUBAPP_ID" in self.config:
            from_config["id"] = str(self.config["GITHUBAPP_ID"])
        merged = {**from_config, **self._overrides}
        if self._base_settings is None:
            return Settings(**merged)
        # Validate the overrides through Settings, then lay them over the given settings.
        validated = Settings(**merged).model_dump(include=set(merged))
        return self._base_settings.model_copy(update=validated)

    @property
    def id(self) -> str | None:
        return self.settings.id

    @property
    def key(self) -> str | None:
        return self.settings.private_key_pem()

    @property
    def secret(self) -> str | None:
        s = self.settings.webhook_secret
        return None if s is None else s.get_secret_value()

    @property
    def base_url(self) -> str:
        return self.settings.url.rstrip("/")

    @staticmethod
    def load_env(app: Any) -> None:
        """Copy ``GITHUBAPP_*`` variables into ``app.config`` where not already set (0.2.7)."""
        if not hasattr(app, "config"):
            app.config = {}
        for key in _CONFIG_FIELDS:
            if key in os.environ and key not in app.config:
                value: Any = os.environ[key]
                if key == "GITHUBAPP_ID":
                    value = int(value) if value.isdigit() else value
                elif key == "GITHUBAPP_OAUTH_SCOPES":
                    value = value.split(",")
                elif key == "GITHUBAPP_ENABLE_OAUTH":
                    value = value.lower() in ("true", "1", "yes")
                app.config[key] = value

    # -- mounting ----------------------------------------------------------------------------

    @property
    def router(self) -> APIRouter:
        """The router carrying the webhook route; mount it yourself or let init_app do it."""
        if self._router is None:
            self._router = APIRouter()
            intake = self.intake
            # A plain Starlette route: the endpoint reads the raw body itself (it must, to
            # check the signature), so FastAPI's parameter parsing would only add cost to
            # every delivery (measured: about 5% of the instructions per request).
            self._router.add_route(
                self.settings.webhook_path,
                intake.__call__,
                methods=["POST"],
                name="github_webhook",
                include_in_schema=False,
            )
        return self._router

    @property
    def intake(self) -> WebhookIntake:
        if self._intake is None:
            self._intake = WebhookIntake(
                self.registry,
                self._intake_policy,
                sync_threads=self.settings.sync_handler_threads,
                scheduler=lambda: self.scheduler,
            )
        return self._intake

    def _intake_policy(self) -> IntakePolicy:
        # Built once per settings object: it is read on every delivery.
        settings = self.settings
        cached = self._policy_cache
        if cached is not None and cached[0] is settings:
            return cached[1]
        policy = self._build_intake_policy(settings)
        self._policy_cache = (settings, policy)
        return policy

    @staticmethod
    def _build_intake_policy(s: Settings) -> IntakePolicy:
        return IntakePolicy(
            secrets=tuple(s.webhook_secrets()),
            verify=s.verify_signatures,
            allow_sha1=s.webhook_allow_sha1,
            max_body_bytes=s.webhook_max_body_bytes,
        )

    def init_app(self, app: FastAPI, *, route: str | None = None) -> None:
        """Mount the webhook route on ``app`` (once; later calls do nothing)."""
        if self._initialized:
            LOG.debug("GitHubApp.init_app called more than once; ignoring")
            return
        if not hasattr(app, "config"):
            app.config = {}  # type: ignore[attr-defined]
        self.config = app.config  # type: ignore[attr-defined]
        if route is not None:
            self._overrides["webhook_path"] = route
        self._settings = None  # re-read: app.config may carry load_env values
        self._warn_about_verification()
        app.include_router(self.router)
        self._mount_status_api(app)
        self._mount_oauth(app)
        self._install_lifespan(app)
        self._initialized = True

    def _mount_status_api(self, app: FastAPI) -> None:
        token = self.settings.status_token
        if token is None or not token.get_secret_value():
            return  # no token, no route: the status API is never open by accident
        from .status import build_status_router

        router = build_status_router(lambda: self.store, token.get_secret_value(), self.replay)
        app.include_router(router, prefix=self.settings.status_prefix.rstrip("/"))

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
            async with existing(asgi_app) as state:
                try:
                    yield state
                finally:
                    await self.aclose()

        app.router.lifespan_context = lifespan

    async def aclose(self) -> None:
        """Close the HTTP clients this app opened (called on the FastAPI app's shutdown)."""
        if self._auth is not None:
            await self._auth.aclose()
            self._auth.close()

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
                if self._celery is None:
                    _ = self.celery  # creating it registers every background handler, this one too
                else:
                    from .tasks.celery_app import declare_queues
                    from .tasks.handlers import register_handler_task

                    register_handler_task(self._celery, self, spec)
                    declare_queues(self._celery, self.registry)
            return func

        return decorator

    # -- background handlers: Celery, the store, the scheduler ------------------------------

    @property
    def celery(self) -> Celery:
        """The Celery app running this GitHubApp's background handlers.

        Point workers at it: ``celery -A myapp:celery worker -Q github.issues``.
        """
        if self._celery is None:
            with self._lock:
                if self._celery is None:
                    from .tasks.celery_app import make_celery
                    from .tasks.handlers import register_handler_task
                    from .tasks.loop import install_signal_handlers
                    from .tasks.sweeper import register_sweep_task

                    celery = make_celery(self.registry, self.settings)
                    for spec in self.registry.background():
                        register_handler_task(celery, self, spec)
                    register_sweep_task(celery, self.sweep, self.settings)
                    install_signal_handlers(celery)
                    self._celery = celery
        return self._celery

    @property
    def store(self) -> DeliveryStore:
        """The delivery store (SQLite in GITHUBAPP_DATA_DIR unless GITHUBAPP_DATABASE_URL)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from .store import DeliveryStore

                    self._store = DeliveryStore(self.settings.store_url())
        return self._store

    @property
    def scheduler(self) -> CeleryScheduler:
        if self._scheduler is None:
            from .tasks.scheduler import CeleryScheduler

            self._scheduler = CeleryScheduler(self.celery, self.store)
        return self._scheduler

    def replay(self, delivery_id: str) -> list[RunRecord]:
        """Run a delivery's failed and dead handlers again; returns the runs published."""
        runs = self.store.replay(delivery_id)
        record = self.store.get_delivery(delivery_id, with_payload=True)
        if record is None or record.payload is None or not runs:
            return []
        delivery = Delivery(
            id=record.id,
            event=record.event,
            payload=record.payload,
            action=record.action,
            installation_id=record.installation_id,
            hook_id=record.hook_id,
            target_type=record.target_type,
            target_id=record.target_id,
        )
        published = set(self.scheduler.publish(runs, delivery))
        return [run for run in runs if run.id in published]

    def sweep(self) -> SweepReport:
        """Republish runs that were never published or whose worker died (see tasks.sweeper)."""
        from .tasks.sweeper import sweep

        report = sweep(self.scheduler, self.settings)
        manager = self.oauth if self.settings.oauth_session_secret is not None else None
        if manager is not None:
            # Ended sessions' tokens and expired denylist entries: nothing else deletes them.
            report.oauth_rows_deleted = manager.store.purge()
        return report

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
        set_current_delivery(Delivery(id="manual", event="manual", payload=value))

    @property
    def delivery_id(self) -> str | None:
        delivery = current_delivery()
        return delivery.id if delivery else None

    @property
    def event(self) -> str | None:
        delivery = current_delivery()
        return delivery.event if delivery else None

    def _installation_id(self, installation_id: int | None) -> int:
        if installation_id is not None:
            return installation_id
        delivery = current_delivery()
        if delivery is None or delivery.installation_id is None:
            raise GitHubAppError(
                "Missing installation id; provide installation_id or call within a webhook "
                "delivery that has one",
                status=400,
            )
        return delivery.installation_id

    # -- GitHub credentials and clients ------------------------------------------------------

    @property
    def auth(self) -> GitHubAppAuth:
        """The app's credentials: JWTs and one installation-token cache for sync and async."""
        if self._auth is None:
            with self._lock:
                if self._auth is None:
                    s = self.settings
                    self._auth = GitHubAppAuth(
                        s.id,
                        s.private_key_pem(),
                        base_url=self.base_url,
                        refresh_margin=s.token_refresh_margin,
                        rate_limit_retries=s.rate_limit_retries,
                        rate_limit_max_sleep=s.rate_limit_max_sleep,
                        timeout=s.http_timeout,
                    )
        return self._auth

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
        delivery = current_delivery()
        if delivery is None or delivery.installation_id is None:
            return None
        cached = self.auth.cached_token(delivery.installation_id)
        return (cached or self.get_access_token(delivery.installation_id)).token

    def client(self, installation_id: int | None = None) -> Any:
        """A synchronous ghapi ``GhApi`` acting as the installation, on ``github_app_url``."""
        from ghapi.all import GhApi

        token = self.get_access_token(self._installation_id(installation_id)).token
        api = GhApi(token=token, gh_host=self.base_url, sync=True)  # type: ignore[no-untyped-call]
        if compat.rate_limit_handling_active():
            return compat.RateLimitedGhApi(api, self)
        return api

    def get_client(self, installation_id: int | None = None) -> Any:
        return self.client(installation_id)

    async def aclient(self, installation_id: int | None = None) -> Any:
        """The asynchronous ghapi client (ghapi 2.x's default), for ``async def`` handlers."""
        from ghapi.all import GhApi

        auth = await self.aget_access_token(self._installation_id(installation_id))
        return GhApi(token=auth.token, gh_host=self.base_url)  # type: ignore[no-untyped-call]

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
        return retry_delay(dict(response.headers), attempt, time.time())

    # -- OAuth sessions (full login flow: docs/oauth.md) -------------------------------------

    @property
    def oauth(self) -> Any:
        """The OAuth manager (0.2.7's ``github_app.oauth``); None when OAuth is off."""
        from .oauth.integration import manager_of

        return manager_of(self)

    def get_current_user(self, request: Request) -> dict[str, Any]:
        """FastAPI dependency: the live session's claims (Bearer header or cookie), else 401."""
        from .oauth.integration import current_user

        return current_user(self, request)

    def require_user(self, request: Request) -> dict[str, Any]:
        """``Depends(github_app.require_user)``: the same as get_current_user."""
        return self.get_current_user(request)

    def optional_user(self, request: Request) -> dict[str, Any] | None:
        """``Depends(github_app.optional_user)``: the session's claims, or None for a visitor."""
        from .oauth.integration import optional_user

        return optional_user(self, request)

    def user_github(self, user: dict[str, Any] | None) -> Any:
        """A GitHub client acting as the signed-in ``user`` (tokens refreshed as needed)."""
        from .oauth.integration import user_github

        return user_github(self, user)

    def on_login(self, func: F) -> F:
        """Call ``func(user, request)`` (sync or async) after each login; may raise to refuse."""
        from .oauth.integration import register_login

        register_login(self, func)
        return func

    def on_logout(self, func: F) -> F:
        """Call ``func(claims, request)`` (sync or async) after each logout."""
        from .oauth.integration import register_logout

        register_logout(self, func)
        return func

    def _mount_oauth(self, app: FastAPI) -> None:
        from .oauth.integration import mount

        mount(self, app)
