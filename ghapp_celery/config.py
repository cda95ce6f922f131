"""Settings from ``GITHUBAPP_*`` environment variables (pydantic-settings).

Precedence, highest first: keyword arguments to ``GitHubApp(...)``, ``app.config`` entries
(fastapi-githubapp's ``load_env`` style), the environment, the defaults below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .exceptions import ConfigurationError

__all__ = [
    "CONFIG_FIELDS",
    "DEFAULT_BODY_BUDGET_BYTES",
    "DEFAULT_MAX_BODY_BYTES",
    "Settings",
    "as_text",
    "load_env_into",
    "resolve_settings",
    "secret_fields",
    "split_csv",
]

#: GitHub never delivers a payload larger than 25 MB (GITHUB_FACTS §10).
DEFAULT_MAX_BODY_BYTES = 25 * 1024 * 1024
#: Body bytes the web process holds at once: two of the largest bodies and change.
DEFAULT_BODY_BUDGET_BYTES = 64 * 1024 * 1024

_FALSE_WORDS = {"false", "0", "no", "off"}


def split_csv(value: Any) -> Any:
    """Turn ``"a, b"`` into ``["a", "b"]``; lists and None pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob ghapp_celery reads. Each field is ``GITHUBAPP_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="GITHUBAPP_", extra="ignore")

    # -- the GitHub App ------------------------------------------------------------------------
    id: str | None = Field(default=None, description="App id (or client id) used as JWT iss.")
    private_key: SecretStr | None = Field(default=None, description="PEM private key text.")
    private_key_path: Path | None = Field(default=None, description="File holding the PEM key.")
    url: str = Field(default="https://api.github.com", description="REST API base URL.")

    # -- webhooks ------------------------------------------------------------------------------
    webhook_secret: SecretStr | None = Field(
        default=None, description="Webhook secret; 'False' turns verification off."
    )
    webhook_secret_previous: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Older secrets still accepted (rotation), comma-separated.",
    )
    webhook_path: str = "/webhooks/github/"
    webhook_max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    webhook_allow_sha1: bool = Field(
        default=False, description="Accept the legacy X-Hub-Signature (sha1) header."
    )
    webhook_body_budget_bytes: int = Field(
        default=DEFAULT_BODY_BUDGET_BYTES,
        gt=0,
        description="Webhook body bytes the web process holds at once; past it, 503 "
        "intake_busy. Never less than webhook_max_body_bytes.",
    )
    webhook_deadline: float = Field(
        default=8.0,
        gt=0,
        description="Seconds within which a delivery is answered (GitHub gives up at 10 s): "
        "a store that has not committed by then gets a 503 store_timeout.",
    )
    record_handled_deliveries: bool = Field(
        default=True,
        description="Record deliveries answered without background runs (inline handlers, "
        "or none matched) in the store too, after their answer; False keeps only those "
        "with background runs.",
    )
    sync_handler_threads: int = Field(
        default=100, gt=0, description="Threads for blocking inline handlers."
    )
    schedule_threads: int = Field(
        default=2, gt=0, description="Threads recording and publishing background runs."
    )

    # -- GitHub API calls ----------------------------------------------------------------------
    rate_limit_retries: int = Field(default=2, ge=0)
    rate_limit_max_sleep: int = Field(default=60, ge=0)
    token_refresh_margin: int = Field(
        default=300, ge=0, description="Refresh installation tokens this many seconds early."
    )
    http_timeout: float = Field(default=10.0, gt=0)

    # -- background handlers: store, broker, worker ------------------------------------------
    data_dir: Path = Field(
        default=Path(".ghapp"), description="Where the embedded SQLite store and broker live."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the store; SQLite in data_dir when unset."
    )
    celery_config_module: str = Field(
        default="celeryconfig", description="Module Celery settings are read from, if present."
    )
    handler_timeout: float = Field(
        default=300.0, gt=0, description="Default timeout of a background handler (seconds)."
    )
    run_lease: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a started run is held without a heartbeat; the worker renews it "
        "every third of that while the handler runs, so a killed worker's runs rerun soon.",
    )
    outcome_write_timeout: float = Field(
        default=120.0,
        ge=0,
        description="Seconds a worker keeps retrying, with backoff and its lease renewed, to "
        "record a finished run's outcome while the store is unavailable (longer than a typical "
        "database failover), so a short outage does not run a finished handler again.",
    )
    sweep_interval: float = Field(default=30.0, gt=0, description="Seconds between sweeps.")
    sweep_unpublished_after: float = Field(
        default=30.0, ge=0, description="Republish runs recorded but unpublished this long."
    )
    sweep_queued_after: float = Field(
        default=900.0, gt=0, description="Republish runs queued but not started this long."
    )
    task_events: bool = Field(
        default=False,
        description="Send Celery task events (Flower, celery events); costs publishes per task.",
    )
    rabbitmq_queue_type: Literal["quorum", "classic"] = Field(
        default="quorum",
        description="On a RabbitMQ broker (amqp://), the type of the queues the package "
        "declares: 'quorum' (replicated, Celery 5.5+'s choice) or 'classic'.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="'json': the log handlers the package installs (stderr fallback, Celery's "
        "worker) write one JSON object per line, with the delivery and run fields.",
    )
    status_token: SecretStr | None = Field(
        default=None, description="Bearer token for the status API; the API is off without it."
    )
    status_prefix: str = "/webhooks/github/status"

    # -- Probes (docs/production.md#health-and-readiness) --------------------------------------
    health_path: str = Field(
        default="/healthz", description="Liveness probe route ('' for none): the process answers."
    )
    ready_path: str = Field(
        default="/readyz",
        description="Readiness probe route ('' for none): the store and the broker answer.",
    )

    # -- Metrics (Prometheus; docs/observability.md) -------------------------------------------
    metrics_enabled: bool = Field(
        default=False,
        description="Record Prometheus metrics and serve them (needs the [prometheus] extra).",
    )
    metrics_path: str = Field(default="/metrics", description="The web app's scrape path.")
    metrics_require_token: bool = Field(
        default=False,
        description="Ask scrapers for the status API's bearer token (GITHUBAPP_STATUS_TOKEN).",
    )
    metrics_worker_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port a Celery worker serves its metrics on (all its pool processes "
        "summed); no worker endpoint without it.",
    )
    metrics_worker_host: str = Field(
        default="0.0.0.0",  # noqa: S104  (an exporter is scraped from another host)
        description="Address the worker's metrics endpoint listens on.",
    )
    metrics_per_installation: bool = Field(
        default=False,
        description="Label the rate-limit gauges by installation too (one series per "
        "installation and resource).",
    )

    # -- OAuth (user login) --------------------------------------------------------------------
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_session_secret: SecretStr | None = None
    oauth_redirect_uri: str | None = None
    oauth_scopes: Annotated[list[str] | None, NoDecode] = None
    oauth_routes_prefix: str = "/auth/github"
    enable_oauth: bool | None = None

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("webhook_secret_previous", "oauth_scopes", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return split_csv(value)

    @property
    def verify_signatures(self) -> bool:
        """False only when the secret is the word 'False' (fastapi-githubapp's opt-out)."""
        secret = self.webhook_secret
        return not (secret is not None and secret.get_secret_value().lower() in _FALSE_WORDS)

    def webhook_secrets(self) -> list[bytes]:
        """Every accepted secret as bytes, the current one first; empty when none is set."""
        if not self.verify_signatures:
            return []
        values = [self.webhook_secret] if self.webhook_secret is not None else []
        values += self.webhook_secret_previous
        return [v.get_secret_value().encode() for v in values if v.get_secret_value()]

    def store_url(self) -> str:
        """The store's SQLAlchemy URL: ``database_url`` or a SQLite file in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'store.sqlite').resolve()}"

    def private_key_pem(self) -> str | None:
        """The PEM text from ``private_key`` or, failing that, ``private_key_path``."""
        if self.private_key is not None:
            # Environments often carry the key with literal "\n" sequences on one line.
            return self.private_key.get_secret_value().replace("\\n", "\n")
        if self.private_key_path is not None:
            try:
                return self.private_key_path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
                raise ConfigurationError(
                    f"GITHUBAPP_PRIVATE_KEY_PATH={self.private_key_path} cannot be read: {reason}"
                ) from None
        return None


# -- GitHubApp's keyword arguments and app.config, laid over the environment -------------------

#: ``app.config`` key -> Settings field (fastapi-githubapp's ``load_env`` names).
CONFIG_FIELDS = {
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


def as_text(value: Any) -> Any:
    """Bytes decoded (0.2.7 accepted keys and secrets as bytes); anything else unchanged."""
    return value.decode() if isinstance(value, bytes) else value


def secret_fields(secret: Any) -> dict[str, Any]:
    """Constructor ``github_app_secret`` -> settings: str/bytes, False (off), or a list."""
    if secret is False:
        return {"webhook_secret": "False"}
    if isinstance(secret, (list, tuple)):
        values = [as_text(s) for s in secret]
        return {"webhook_secret": values[0], "webhook_secret_previous": values[1:]}
    return {"webhook_secret": as_text(secret)}


def resolve_settings(
    config: Mapping[str, Any], overrides: Mapping[str, Any], base: Settings | None
) -> Settings:
    """The Settings of a GitHubApp: ``overrides`` (its keyword arguments) over ``config``
    (``app.config``) over ``base`` if given, else over the environment."""
    from_config = {
        field: ("False" if value is False else as_text(value))
        for key, field in CONFIG_FIELDS.items()
        if (value := config.get(key)) is not None
    }
    if "GITHUBAPP_ID" in config:
        from_config["id"] = str(config["GITHUBAPP_ID"])
    merged = {**from_config, **overrides}
    if base is None:
        return Settings(**merged)
    # Validate the overrides through Settings, then lay them over the given settings.
    validated = Settings(**merged).model_dump(include=set(merged))
    return base.model_copy(update=validated)


def load_env_into(config: MutableMapping[str, Any]) -> None:
    """Copy ``GITHUBAPP_*`` variables into ``config`` where not already set, typed as 0.2.7's
    ``load_env`` did (the id an int, the scopes a list, enable_oauth a bool)."""
    for key in CONFIG_FIELDS:
        if key in os.environ and key not in config:
            value: Any = os.environ[key]
            if key == "GITHUBAPP_ID":
                value = int(value) if value.isdigit() else value
            elif key == "GITHUBAPP_OAUTH_SCOPES":
                value = value.split(",")
            elif key == "GITHUBAPP_ENABLE_OAUTH":
                value = value.lower() in ("true", "1", "yes")
            config[key] = value
