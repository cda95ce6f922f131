"""ghapp_celery: GitHub Apps on FastAPI and Celery.

A drop-in for fastapi-githubapp 0.2.7: ``from ghapp_celery import GitHubApp``.
"""

from __future__ import annotations

import logging

from . import compat
from ._fallback_log import install_fallback_handler
from .app import GitHubApp
from .compat import RateLimitedGhApi, with_rate_limit_handling
from .config import Settings
from .context import Event
from .exceptions import (  # every name of the one tree
    BodyTimeout,
    ConfigurationError,
    DeliveryNotFound,
    Forbidden,
    GitHubAppBadCredentials,
    GitHubAppError,
    GithubAppUnkownObject,
    GitHubAppValidationError,
    GitHubConnectionError,
    GitHubError,
    GitHubOAuthError,
    GitHubRateLimitError,
    GitHubTimeout,
    GithubUnauthorized,
    GraphQLError,
    HandlerTimeout,
    HTTPError,
    IntakeBusy,
    InvalidHeader,
    InvalidPayloadField,
    InvalidSession,
    InvalidSignature,
    LoginError,
    MalformedPayload,
    MissingHeader,
    NotFound,
    OAuthFlowError,
    PayloadTooDeep,
    PayloadTooLarge,
    RateLimited,
    ScheduleTimeout,
    SecondaryRateLimited,
    ServerError,
    StatusError,
    StoreError,
    StoreUnavailable,
    Unauthorized,
    UnsupportedContentType,
    ValidationFailed,
    WebhookError,
)
from .github import (
    AsyncGitHubClient,
    GitHubClient,
    GitHubResponse,
    GitHubSession,
    MemoryCache,
    RedisCache,
)
from .github.auth import GitHubAppAuth, InstallationAuthorization
from .intake import STATUS_DUPLICATE, STATUS_FUNC_CALLED, STATUS_NO_FUNC_CALLED, STATUS_QUEUED
from .policy import RetryPolicy
from .webhooks import Delivery

__version__ = "0.1.0"

__all__ = [
    "STATUS_DUPLICATE",
    "STATUS_FUNC_CALLED",
    "STATUS_NO_FUNC_CALLED",
    "STATUS_QUEUED",
    "AsyncGitHubClient",
    "BodyTimeout",
    "ConfigurationError",
    "Delivery",
    "DeliveryNotFound",
    "Event",
    "Forbidden",
    "GitHubApp",
    "GitHubAppAuth",
    "GitHubAppBadCredentials",
    "GitHubAppError",
    "GitHubAppValidationError",
    "GitHubClient",
    "GitHubConnectionError",
    "GitHubError",
    "GitHubOAuthError",
    "GitHubRateLimitError",
    "GitHubResponse",
    "GitHubSession",
    "GitHubTimeout",
    "GithubAppUnkownObject",
    "GithubUnauthorized",
    "GraphQLError",
    "HTTPError",
    "HandlerTimeout",
    "InstallationAuthorization",
    "IntakeBusy",
    "InvalidHeader",
    "InvalidPayloadField",
    "InvalidSession",
    "InvalidSignature",
    "LoginError",
    "MalformedPayload",
    "MemoryCache",
    "MissingHeader",
    "NotFound",
    "OAuthFlowError",
    "PayloadTooDeep",
    "PayloadTooLarge",
    "RateLimited",
    "RateLimitedGhApi",
    "RedisCache",
    "RetryPolicy",
    "ScheduleTimeout",
    "SecondaryRateLimited",
    "ServerError",
    "Settings",
    "StatusError",
    "StoreError",
    "StoreUnavailable",
    "Unauthorized",
    "UnsupportedContentType",
    "ValidationFailed",
    "WebhookError",
    "__version__",
    "with_rate_limit_handling",
]

# compat mirrors 0.2.7's githubapp.core, GitHubApp included; it sits below app, so the class is
# set there from here, where both are loaded.
compat.GitHubApp = GitHubApp  # type: ignore[misc]  # mypy sees compat's TYPE_CHECKING import

# Warnings and errors reach stderr until the application configures logging, then only its
# handlers write them (ghapp_celery/_fallback_log.py says why; docs/configuration.md#logging).
install_fallback_handler(logging.getLogger(__name__))
