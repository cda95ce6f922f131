"""The public surface, pinned: what each public package exports is its ``__all__``, and
``__all__`` is this list. A change to the surface changes this file, on purpose, in review;
a name added to a module without its ``__all__`` (or the reverse) fails here."""

from __future__ import annotations

import importlib
import inspect

import pytest

# ghapp_celery's own __all__ is pinned by tests/test_app_compat.py (the 0.2.7 names with ours);
# the sub-packages' are pinned here.
SURFACE: dict[str, list[str]] = {
    "ghapp_celery.testing": [
        "ACCESS_TTL",
        "AppFactory",
        "AuthKind",
        "Clock",
        "Credential",
        "Deliveries",
        "Endpoint",
        "FakeClock",
        "FakeGitHub",
        "FakeOAuth",
        "FakeRepo",
        "FakeUser",
        "GraphQLResolver",
        "Handler",
        "IssuedToken",
        "PostedDelivery",
        "REFRESH_TTL",
        "RecordedRequest",
        "Reply",
        "WebhookClient",
        "background_worker",
        "default_resolver",
        "make_delivery",
        "make_event",
        "make_private_key",
        "public_key_pem",
        "serve",
        "serve_webhooks",
        "sign",
        "signed_request",
        "webhook_headers",
    ],
    # fastapi-githubapp 0.2.7's githubapp.core, name for name (tests/test_compat_core_mirror.py)
    "ghapp_celery.compat": [
        "GhApi",
        "GitHubApp",
        "GitHubAppBadCredentials",
        "GitHubAppError",
        "GitHubAppValidationError",
        "GitHubRateLimitError",
        "GithubAppUnkownObject",
        "GithubUnauthorized",
        "InstallationAuthorization",
        "RateLimitedGhApi",
        "STATUS_FUNC_CALLED",
        "STATUS_NO_FUNC_CALLED",
        "async_ghapi_client",
        "ghapi_client",
        "rate_limit_handling_active",
        "retry_with_rate_limit",
        "with_rate_limit_handling",
    ],
    "ghapp_celery.store": [
        "DEFAULT_URL",
        "DeliveryNotFound",
        "DeliveryRecord",
        "DeliveryState",
        "DeliveryStore",
        "Page",
        "RunPlan",
        "RunRecord",
        "RunState",
        "StoreUnavailable",
        "decode_cursor",
        "delivery_state",
    ],
    "ghapp_celery.github": [
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
    ],
    "ghapp_celery.intake": [
        "BodyBudget",
        "IntakePolicy",
        "STATUS_DUPLICATE",
        "STATUS_FUNC_CALLED",
        "STATUS_NO_FUNC_CALLED",
        "STATUS_QUEUED",
        "WebhookIntake",
        "webhook_router",
    ],
    "ghapp_celery.oauth": [
        "GitHubOAuthFlow",
        "GitHubTokens",
        "HoldsOAuth",
        "InvalidSession",
        "OAuthConfig",
        "OAuthFlowError",
        "OAuthIntegration",
        "OAuthManager",
        "OAuthSettings",
        "RefreshingUserCredentials",
        "SessionManager",
        "StateSealer",
        "TokenCipher",
        "configure_oauth",
        "manager_of",
    ],
}


@pytest.mark.parametrize("name", sorted(SURFACE))
def test_all_is_the_pinned_surface(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == SURFACE[name]
    assert len(set(module.__all__)) == len(module.__all__), "a name listed twice"


PUBLIC_PACKAGES = sorted(["ghapp_celery", *SURFACE])


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    missing = [attr for attr in module.__all__ if not hasattr(module, attr)]
    assert missing == []


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_every_public_class_or_function_defined_here_is_in_all(name: str) -> None:
    module = importlib.import_module(name)
    defined = [
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == name
    ]
    assert sorted(set(defined) - set(module.__all__)) == []
