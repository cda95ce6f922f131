"""ghapp_celery: GitHub Apps on FastAPI and Celery.

A drop-in for fastapi-githubapp 0.2.7: ``from ghapp_celery import GitHubApp``.
"""

from __future__ import annotations

import logging

from .app import GitHubApp
from .compat import RateLimitedGhApi, with_rate_limit_handling
from .config import Settings
from .context import Event
from .exceptions import (
    ConfigurationError,
    GitHubAppBadCredentials,
    GitHubAppError,
    GithubAppUnkownObject,
    GitHubAppValidationError,
    GitHubRateLimitError,
    GithubUnauthorized,
    InvalidSignature,
    MalformedPayload,
    MissingHeader,
    PayloadTooLarge,
    UnsupportedContentType,
    WebhookError,
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
    "ConfigurationError",
    "Delivery",
    "Event",
    "GitHubApp",
    "GitHubAppAuth",
    "GitHubAppBadCredentials",
    "GitHubAppError",
    "GitHubAppValidationError",
    "GitHubRateLimitError",
    "GithubAppUnkownObject",
    "GithubUnauthorized",
    "InstallationAuthorization",
    "InvalidSignature",
    "MalformedPayload",
    "MissingHeader",
    "PayloadTooLarge",
    "RateLimitedGhApi",
    "RetryPolicy",
    "Settings",
    "UnsupportedContentType",
    "WebhookError",
    "__version__",
    "with_rate_limit_handling",
]

# A library logs nowhere until the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
