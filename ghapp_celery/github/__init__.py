"""Talking to GitHub: app authentication, installation tokens, rate limits and the client."""

from ghapp_celery.github._client_core import GitHubResponse, RetrySettings, api_urls
from ghapp_celery.github._client_session import GitHubSession
from ghapp_celery.github.auth import Clock, GitHubAppAuth
from ghapp_celery.github.cache import CacheEntry, MemoryCache, RedisCache, ResponseCache
from ghapp_celery.github.client import AsyncGitHubClient
from ghapp_celery.github.ratelimit import (
    RateLimit,
    is_rate_limited,
    is_secondary,
    rate_limit_info,
    retry_delay,
)
from ghapp_celery.github.registry import (
    aclose_sessions,
    client_for,
    configure_sessions,
    session_for,
    session_resource,
    sync_client_for,
)
from ghapp_celery.github.sync_client import GitHubClient
from ghapp_celery.github.tokens import InstallationAuthorization, parse_github_timestamp

__all__ = [
    "AsyncGitHubClient",
    "CacheEntry",
    "Clock",
    "GitHubAppAuth",
    "GitHubClient",
    "GitHubResponse",
    "GitHubSession",
    "InstallationAuthorization",
    "MemoryCache",
    "RateLimit",
    "RedisCache",
    "ResponseCache",
    "RetrySettings",
    "aclose_sessions",
    "api_urls",
    "client_for",
    "configure_sessions",
    "is_rate_limited",
    "is_secondary",
    "parse_github_timestamp",
    "rate_limit_info",
    "retry_delay",
    "session_for",
    "session_resource",
    "sync_client_for",
]
