"""Every exception ghapp_celery raises, drawn in one place.

The tree::

    GitHubAppError                      (fastapi-githubapp's base name, kept)
    ├── ConfigurationError              the app is missing an id, a key, ...
    ├── GitHubAppValidationError        422 from GitHub (compat name)
    ├── GitHubAppBadCredentials         403 from GitHub (compat name)
    ├── GithubUnauthorized              401 from GitHub (compat name)
    ├── GithubAppUnkownObject           404 from GitHub (compat name, sic)
    ├── GitHubRateLimitError            primary or secondary rate limit (compat name)
    └── WebhookError                    a delivery we refuse; carries its HTTP status
        ├── InvalidSignature            401
        ├── PayloadTooLarge             413
        ├── MalformedPayload            400
        ├── MissingHeader               400
        └── UnsupportedContentType      415

fastapi-githubapp raised these names as unrelated ``Exception`` subclasses; making them share a
base lets ``except GitHubAppError`` catch every failure while old ``except`` clauses keep working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigurationError",
    "GitHubAppBadCredentials",
    "GitHubAppError",
    "GitHubAppValidationError",
    "GitHubRateLimitError",
    "GithubAppUnkownObject",
    "GithubUnauthorized",
    "InvalidSignature",
    "MalformedPayload",
    "MissingHeader",
    "PayloadTooLarge",
    "UnsupportedContentType",
    "WebhookError",
]


class GitHubAppError(Exception):
    """Base of every ghapp_celery error; ``message``, ``status`` and ``data`` as in 0.2.7."""

    default_message = "GitHub App error"

    def __init__(
        self, message: str | None = None, status: int | None = None, data: Any = None
    ) -> None:
        self.message = message if message is not None else self.default_message
        self.status = status
        self.data = data
        super().__init__(self.message)


class ConfigurationError(GitHubAppError):
    default_message = "GitHub App is not configured"


class GitHubAppValidationError(GitHubAppError):
    default_message = "GitHub App validation error"


class GitHubAppBadCredentials(GitHubAppError):
    default_message = "GitHub App bad credentials"


class GithubUnauthorized(GitHubAppError):
    default_message = "GitHub unauthorized"


class GithubAppUnkownObject(GitHubAppError):
    default_message = "GitHub object not found"


class GitHubRateLimitError(GitHubAppError):
    """GitHub refused a call for a rate limit; ``rate_limit_info`` holds the x-ratelimit-* values.

    ``retry_after`` is how many seconds GitHub asks us to wait (None when unknown), so a caller
    such as a Celery task can retry with a countdown instead of sleeping.
    """

    default_message = "GitHub rate limit exceeded"

    def __init__(
        self,
        message: str | None = None,
        status: int | None = None,
        data: Any = None,
        rate_limit_info: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status, data)
        self.rate_limit_info: dict[str, Any] = rate_limit_info or {}
        self.retry_after = retry_after


class WebhookError(GitHubAppError):
    """A webhook delivery we refuse. ``http_status`` is the answer; ``code`` a stable token."""

    http_status = 400
    code = "bad_request"
    default_message = "Bad webhook request"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, status=self.http_status)


class InvalidSignature(WebhookError):
    http_status = 401
    code = "invalid_signature"
    default_message = "Missing or invalid webhook signature"


class PayloadTooLarge(WebhookError):
    http_status = 413
    code = "payload_too_large"
    default_message = "Webhook body is larger than the configured limit"


class MalformedPayload(WebhookError):
    http_status = 400
    code = "malformed_payload"
    default_message = "Webhook body is not a JSON object"


class MissingHeader(WebhookError):
    http_status = 400
    code = "missing_header"
    default_message = "A required GitHub header is missing"


class UnsupportedContentType(WebhookError):
    http_status = 415
    code = "unsupported_content_type"
    default_message = "Content-Type must be application/json or application/x-www-form-urlencoded"
