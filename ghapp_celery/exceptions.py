"""Every exception ghapp_celery raises, drawn in one place.

The tree::

    GitHubAppError                      (fastapi-githubapp's base name, kept)
    ├── ConfigurationError              the app is missing an id, a key, ...
    ├── GitHubAppValidationError        422 from GitHub (compat name)
    ├── GitHubAppBadCredentials         403 from GitHub (compat name)
    ├── GithubUnauthorized              401 from GitHub (compat name)
    ├── GithubAppUnkownObject           404 from GitHub (compat name, sic)
    ├── GitHubRateLimitError            primary or secondary rate limit (compat name)
    ├── GitHubError                     what the GitHub client (github/client.py) raises
    │   ├── HTTPError                   a non-2xx answer: status, message, documentation_url,
    │   │   │                           request_id, headers
    │   │   ├── Unauthorized            401  (also a GithubUnauthorized)
    │   │   ├── Forbidden               403  (also a GitHubAppBadCredentials)
    │   │   ├── NotFound                404  (also a GithubAppUnkownObject)
    │   │   ├── ValidationFailed        422, with GitHub's ``errors`` list (also a
    │   │   │                                GitHubAppValidationError)
    │   │   ├── RateLimited             primary limit; ``reset_at`` (also a GitHubRateLimitError)
    │   │   │   └── SecondaryRateLimited  secondary limit; ``retry_after`` (a RateLimited too)
    │   │   └── ServerError             5xx (status >= 500, so Celery retries it)
    │   ├── GitHubConnectionError       no answer: connection refused/reset (a ConnectionError)
    │   │   └── GitHubTimeout           no answer in time (also a TimeoutError)
    │   └── GraphQLError                a GraphQL answer whose body carries ``errors``
    ├── WebhookError                    a delivery we refuse; carries its HTTP status
    │   ├── InvalidSignature            401
    │   ├── PayloadTooLarge             413
    │   ├── BodyTimeout                 408  the body did not arrive within the deadline
    │   ├── IntakeBusy                  503  too many body bytes in flight (Retry-After)
    │   ├── MalformedPayload            400
    │   │   ├── PayloadTooDeep          400  JSON nested past the parser's recursion limit
    │   │   └── InvalidPayloadField     400  a payload value the store cannot hold
    │   ├── MissingHeader               400
    │   ├── InvalidHeader               400  a header value the store cannot hold
    │   └── UnsupportedContentType      415
    ├── ScheduleTimeout                 the intake could not record a delivery within its
    │                                   deadline (answered 503; also a TimeoutError)
    ├── StatusError                     a non-2xx answer of the status API: status, code, detail
    ├── StoreError                      the delivery store (``ghapp_celery.store``)
    │   ├── StoreUnavailable            the database could not be reached or refused
    │   └── DeliveryNotFound            no such delivery (also a KeyError)
    ├── HandlerTimeout                  a coroutine handler outran its timeout (retried)
    └── GitHubOAuthError                GitHub login (``ghapp_celery.oauth``)
        ├── LoginError                  what an OAuth route answers: status, error, detail
        ├── OAuthFlowError              GitHub's token endpoint said no or was unreachable
        └── InvalidSession              a session token missing, forged, expired, ...

fastapi-githubapp raised these names as unrelated ``Exception`` subclasses; making them share a
base lets ``except GitHubAppError`` catch every failure while old ``except`` clauses keep working.
The store's, the status API's, the intake's scheduling and the OAuth errors are defined here
too and re-exported where they used to live (``ghapp_celery.store.errors``,
``ghapp_celery.oauth``, ``ghapp_celery.tasks``, ...), so those import paths keep working.
This module imports nothing but the standard library.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BodyTimeout",
    "ConfigurationError",
    "DeliveryNotFound",
    "Forbidden",
    "GitHubAppBadCredentials",
    "GitHubAppError",
    "GitHubAppValidationError",
    "GitHubConnectionError",
    "GitHubError",
    "GitHubOAuthError",
    "GitHubRateLimitError",
    "GitHubTimeout",
    "GithubAppUnkownObject",
    "GithubUnauthorized",
    "GraphQLError",
    "HTTPError",
    "HandlerTimeout",
    "IntakeBusy",
    "InvalidHeader",
    "InvalidPayloadField",
    "InvalidSession",
    "InvalidSignature",
    "LoginError",
    "MalformedPayload",
    "MissingHeader",
    "NotFound",
    "OAuthFlowError",
    "PayloadTooDeep",
    "PayloadTooLarge",
    "RateLimited",
    "ScheduleTimeout",
    "SecondaryRateLimited",
    "ServerError",
    "StatusError",
    "StoreError",
    "StoreUnavailable",
    "Unauthorized",
    "UnsupportedContentType",
    "ValidationFailed",
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


class GitHubError(GitHubAppError):
    """Base of everything the GitHub client raises."""

    default_message = "GitHub call failed"


class HTTPError(GitHubError):
    """GitHub answered with a non-2xx status.

    ``message`` and ``documentation_url`` come from GitHub's error body, ``request_id`` from the
    ``x-github-request-id`` header (quote it to GitHub Support), ``data`` is the decoded body.
    Neither the message nor any attribute ever carries the token that made the call.
    """

    default_message = "GitHub answered with an error"

    def __init__(
        self,
        message: str | None = None,
        status: int | None = None,
        data: Any = None,
        *,
        documentation_url: str | None = None,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        GitHubAppError.__init__(self, message, status, data)
        self.documentation_url = documentation_url
        self.request_id = request_id
        self.headers: dict[str, str] = dict(headers or {})
        self.method = method
        self.url = url

    def __str__(self) -> str:
        where = f" ({self.method} {self.url})" if self.method and self.url else ""
        return f"{self.status}: {self.message}{where}"


class Unauthorized(HTTPError, GithubUnauthorized):
    """401: the credentials were refused (an expired or revoked token, a bad JWT)."""


class Forbidden(HTTPError, GitHubAppBadCredentials):
    """403 that is not a rate limit: e.g. "Resource not accessible by integration"."""


class NotFound(HTTPError, GithubAppUnkownObject):
    """404: no such object, or a private one the credentials cannot see."""


class ValidationFailed(HTTPError, GitHubAppValidationError):
    """422: GitHub rejected the request's content; ``errors`` is GitHub's list of problems."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        data = self.data
        found = data.get("errors") if isinstance(data, dict) else None
        return [e if isinstance(e, dict) else {"message": str(e)} for e in found or []]


class ServerError(HTTPError):
    """5xx: GitHub failed; ``status`` >= 500, so a Celery task retries it with backoff."""


class RateLimited(HTTPError, GitHubRateLimitError):
    """The primary rate limit is used up until ``reset_at`` (UTC epoch seconds).

    ``retry_after`` is the seconds from when it was raised until the reset, so the Celery retry
    policy (which counts every GitHubRateLimitError as a rate limit) retries with that countdown.
    ``resource`` is GitHub's bucket (``core``, ``search``, ``graphql``, ...). Raised before
    sending when the client already knows the bucket is empty (``status`` is then None).
    """

    default_message = "GitHub rate limit exceeded"

    def __init__(
        self,
        message: str | None = None,
        status: int | None = None,
        data: Any = None,
        *,
        retry_after: float | None = None,
        reset_at: float | None = None,
        resource: str | None = None,
        rate_limit_info: dict[str, Any] | None = None,
        documentation_url: str | None = None,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        HTTPError.__init__(
            self,
            message,
            status,
            data,
            documentation_url=documentation_url,
            request_id=request_id,
            headers=headers,
            method=method,
            url=url,
        )
        self.rate_limit_info: dict[str, Any] = rate_limit_info or {}
        self.retry_after = retry_after
        self.reset_at = reset_at
        self.resource = resource


class SecondaryRateLimited(RateLimited):
    """A secondary limit (too many concurrent or content-creating requests, too fast).

    ``retry_after`` follows GitHub's rules: its ``retry-after`` header, else at least 60 s,
    doubling on each further hit. ``except RateLimited`` catches it too.
    """

    default_message = "GitHub secondary rate limit exceeded"


class GitHubConnectionError(GitHubError, ConnectionError):
    """No answer from GitHub: the connection failed or broke. Retried as transient."""

    default_message = "Could not reach GitHub"


class GitHubTimeout(GitHubConnectionError, TimeoutError):
    """No answer from GitHub within the timeout. Retried as transient."""

    default_message = "GitHub did not answer in time"


class GraphQLError(GitHubError):
    """A GraphQL answer (HTTP 200) whose body carries ``errors``; ``data`` is any partial data."""

    default_message = "GitHub GraphQL query failed"

    def __init__(
        self, errors: list[dict[str, Any]], data: Any = None, status: int | None = 200
    ) -> None:
        messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
        super().__init__("; ".join(messages) or self.default_message, status, data)
        self.errors = errors

    @property
    def types(self) -> list[str]:
        """GitHub's error ``type`` values (``NOT_FOUND``, ``RATE_LIMITED``, ...)."""
        return [str(e["type"]) for e in self.errors if isinstance(e, dict) and "type" in e]


class WebhookError(GitHubAppError):
    """A webhook delivery we refuse. ``http_status`` is the answer; ``code`` a stable token."""

    http_status = 400
    code = "bad_request"
    default_message = "Bad webhook request"
    #: Seconds for a Retry-After header on the answer; None sends none.
    retry_after: int | None = None

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


class BodyTimeout(WebhookError):
    http_status = 408
    code = "body_timeout"
    default_message = "The body did not arrive within the deadline"


class IntakeBusy(WebhookError):
    """The bodies held at once reached the budget (GITHUBAPP_WEBHOOK_BODY_BUDGET_BYTES)."""

    http_status = 503
    code = "intake_busy"
    default_message = "Too many webhook bodies are being received at once; retry later"
    retry_after = 5


class MalformedPayload(WebhookError):
    http_status = 400
    code = "malformed_payload"
    default_message = "Webhook body is not a JSON object"


class PayloadTooDeep(MalformedPayload):
    code = "payload_too_deep"
    default_message = "Webhook payload is nested too deeply"


class InvalidPayloadField(MalformedPayload):
    """A payload value the delivery is recorded by is out of range or not text the store can
    keep (``installation.id``, ``action``): refused alike on every database."""

    code = "invalid_payload_field"
    default_message = "A webhook payload field has a value that cannot be accepted"


class InvalidHeader(WebhookError):
    """A GitHub header value is out of range, too long or holds control characters."""

    http_status = 400
    code = "invalid_header"
    default_message = "A GitHub header has a value that cannot be accepted"


class MissingHeader(WebhookError):
    http_status = 400
    code = "missing_header"
    default_message = "A required GitHub header is missing"


class UnsupportedContentType(WebhookError):
    http_status = 415
    code = "unsupported_content_type"
    default_message = "Content-Type must be application/json or application/x-www-form-urlencoded"


# -- the intake and the status API ------------------------------------------------------------


class ScheduleTimeout(GitHubAppError, TimeoutError):
    """The delivery was not recorded within the request's deadline. Had a scheduler thread
    taken it already, it may still be recorded (and published) when the store comes back;
    one still waiting in the queue is dropped."""

    default_message = "The delivery was not recorded within the deadline"


class StatusError(GitHubAppError):
    """An answer of the status API other than 2xx, in the webhook route's shape:
    ``{"status": "ERROR", "error": code, "description": ...}``."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail, status)
        self.status: int = status
        self.code, self.detail, self.headers = code, detail, headers

    def body(self) -> dict[str, str]:
        return {"status": "ERROR", "error": self.code, "description": self.detail}


# -- the delivery store -----------------------------------------------------------------------


class StoreError(GitHubAppError):
    """Base of the delivery store's errors."""

    default_message = "Delivery store error"


class StoreUnavailable(StoreError):
    """The database could not be reached or refused the operation.

    The message is deliberately generic: database errors often quote the URL (with its
    password) or the SQL, and this message ends up in HTTP answers and logs. The original
    exception is chained as ``__cause__`` for whoever needs the detail.
    """

    default_message = "The delivery store is unavailable"


class DeliveryNotFound(StoreError, KeyError):
    """No delivery with that id is stored. A KeyError too, so ``except KeyError`` works."""

    default_message = "Delivery not found"

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message, adding quotes.
        return self.message


# -- handlers in the worker -------------------------------------------------------------------


class HandlerTimeout(GitHubAppError):
    """A coroutine handler ran longer than its timeout and was cancelled (retried as
    transient by the retry policy)."""

    default_message = "Handler timed out"


# -- GitHub login (OAuth) ---------------------------------------------------------------------


class GitHubOAuthError(GitHubAppError):
    """Base of the GitHub login errors (``ghapp_celery.oauth``)."""

    default_message = "GitHub login failed"


class LoginError(GitHubOAuthError):
    """What an OAuth route answers: ``status``, a short ``error`` code and a ``detail``
    sentence. Neither ever holds a token or an exception's text."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(error, status)
        self.status: int = status
        self.error = error
        self.detail = detail

    def body(self) -> dict[str, str]:
        return {"detail": self.detail, "error": self.error}


class OAuthFlowError(GitHubOAuthError):
    """The token endpoint said no (``rejected``) or could not be used (not ``rejected``).

    ``error`` is GitHub's error code (``bad_verification_code``, ``bad_refresh_token``, ...)
    or one of ours (``unreachable``, ``invalid_token_response``); never a token or a body.
    """

    def __init__(self, error: str, *, rejected: bool) -> None:
        super().__init__(error)
        self.error = error
        self.rejected = rejected


class InvalidSession(GitHubOAuthError):
    """The session token is missing, malformed, forged, expired or of the wrong type."""

    default_message = "Invalid session"
