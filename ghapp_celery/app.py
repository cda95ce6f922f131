"""GitHubApp: the object a user creates. It keeps fastapi-githubapp 0.2.7's public API.

It owns the handler registry, mounts the webhook route, and hands out GitHub credentials and
clients. Per-delivery state (``payload``, ``delivery_id``, ``event``) is read from a
contextvar, so concurrent deliveries never see each other's data.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, FastAPI

from ._app_background import BackgroundMixin
from ._app_credentials import CredentialsMixin
from ._app_oauth import OAuthMixin
from .config import Settings
from .context import current_delivery, set_current_delivery
from .exceptions import GitHubAppError
from .intake import IntakePolicy, WebhookIntake
from .policy import RetryPolicy
from .routing import HandlerRegistry
from .webhooks import Delivery

if TYPE_CHECKING:
    from celery import Celery

    from .github.auth import GitHubAppAuth
    from .store import DeliveryStore
    from .tasks.scheduler import CeleryScheduler

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


class GitHubApp(BackgroundMixin, CredentialsMixin, OAuthMixin):
    """Receive GitHub webhooks on a FastAPI app and act as a GitHub App.

    The GitHub credentials and clients (``_app_credentials``), the background side
    (``_app_background``) and OAuth (``_app_oauth``) live in mixins of their own modules.

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
                schedule_threads=self.settings.schedule_threads,
                scheduler=lambda: self.scheduler,
                auth=lambda: self.auth,
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
            deadline=s.webhook_deadline,
            body_budget_bytes=s.webhook_body_budget_bytes,
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
        from .intake.status import build_status_router

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
        """Close the HTTP clients and threads this app opened (called on the FastAPI app's
        shutdown)."""
        if self._intake is not None:
            self._intake.close()
        if self._auth is not None:
            from .github import aclose_sessions

            await aclose_sessions(self._auth)
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
