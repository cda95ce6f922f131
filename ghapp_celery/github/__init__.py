"""Talking to GitHub: app authentication, installation tokens and rate limits."""

from ghapp_celery.github.auth import Clock, GitHubAppAuth
from ghapp_celery.github.ratelimit import (
    RateLimit,
    is_rate_limited,
    is_secondary,
    rate_limit_info,
    retry_delay,
)
from ghapp_celery.github.tokens import InstallationAuthorization, parse_github_timestamp

__all__ = [
    "Clock",
    "GitHubAppAuth",
    "InstallationAuthorization",
    "RateLimit",
    "is_rate_limited",
    "is_secondary",
    "parse_github_timestamp",
    "rate_limit_info",
    "retry_delay",
]
