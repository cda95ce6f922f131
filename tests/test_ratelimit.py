"""The pure rate-limit rules: header parsing, primary vs secondary, and how long to wait."""

from __future__ import annotations

import pytest

from ghapp_celery.github.ratelimit import (
    RateLimit,
    is_rate_limited,
    is_secondary,
    rate_limit_info,
    retry_delay,
)

NOW = 1_700_000_000.0

# As GitHub sends them (GITHUB_FACTS §3), in the mixed case some proxies produce.
HEADERS = {
    "X-RateLimit-Limit": "5000",
    "x-ratelimit-remaining": "4987",
    "X-RATELIMIT-USED": "13",
    "x-ratelimit-reset": "1700003600",
    "x-ratelimit-resource": "core",
}
EMPTY = {
    "x-ratelimit-limit": "5000",
    "x-ratelimit-remaining": "0",
    "x-ratelimit-reset": "1700000042",
}
SECONDARY_BODY = '{"message": "You have exceeded a secondary rate limit. Please wait."}'


def test_from_headers_reads_every_field_case_insensitively() -> None:
    limit = RateLimit.from_headers(HEADERS)
    assert limit == RateLimit(
        limit=5000, remaining=4987, used=13, reset=1700003600, resource="core"
    )
    assert limit is not None and not limit.exhausted
    assert limit.seconds_until_reset(NOW) == 3600


def test_from_headers_without_the_core_fields_is_none() -> None:
    assert RateLimit.from_headers({}) is None
    assert RateLimit.from_headers({"x-ratelimit-limit": "60", "x-ratelimit-reset": "1"}) is None
    assert RateLimit.from_headers({**HEADERS, "x-ratelimit-remaining": "lots"}) is None


def test_from_headers_tolerates_missing_used_and_resource() -> None:
    # Older captures (gidgethub samples) carry only limit/remaining/reset.
    limit = RateLimit.from_headers(EMPTY)
    assert limit == RateLimit(limit=5000, remaining=0, used=None, reset=1700000042, resource=None)
    assert limit is not None and limit.exhausted
    assert limit.seconds_until_reset(NOW + 100) == 0


def test_rate_limit_info_keeps_the_raw_strings() -> None:
    info = rate_limit_info({**HEADERS, "Retry-After": "30"})
    assert info == {
        "limit": "5000",
        "remaining": "4987",
        "reset": "1700003600",
        "used": "13",
        "resource": "core",
        "retry_after": "30",
    }
    assert rate_limit_info({}) == dict.fromkeys(info)


@pytest.mark.parametrize(
    ("status", "headers", "body", "limited", "secondary"),
    [
        (429, {}, "", True, True),
        (429, EMPTY, "", True, False),
        (403, EMPTY, '{"message": "API rate limit exceeded for installation ID 1."}', True, False),
        (403, {**HEADERS, "retry-after": "60"}, "", True, True),
        (403, HEADERS, SECONDARY_BODY, True, True),
        (403, EMPTY, SECONDARY_BODY, True, True),
        (403, HEADERS, '{"message": "Resource not accessible by integration"}', False, False),
        (200, EMPTY, "", False, False),
        (404, {"retry-after": "5"}, "", False, False),
        (401, EMPTY, SECONDARY_BODY, False, False),
    ],
)
def test_primary_and_secondary_classification(
    status: int, headers: dict[str, str], body: str, limited: bool, secondary: bool
) -> None:
    assert is_rate_limited(status, headers, body) is limited
    assert is_secondary(status, headers, body) is secondary


def test_retry_after_comes_first() -> None:
    assert retry_delay({**EMPTY, "Retry-After": "7"}, attempt=3, now=NOW) == 7


def test_primary_waits_until_the_reset() -> None:
    assert retry_delay(EMPTY, attempt=0, now=NOW) == 42
    assert retry_delay(EMPTY, attempt=0, now=NOW + 0.5) == 41.5
    # A reset already in the past means "retry now", never a negative sleep.
    assert retry_delay(EMPTY, attempt=0, now=NOW + 1000) == 0


def test_otherwise_one_minute_then_exponential() -> None:
    delays = [retry_delay(HEADERS, attempt=n, now=NOW) for n in range(4)]
    assert delays == [60, 120, 240, 480]


@pytest.mark.parametrize("bogus", ["soon", "-5", "nan", "inf", ""])
def test_unusable_retry_after_falls_back(bogus: str) -> None:
    assert retry_delay({"retry-after": bogus}, attempt=1, now=NOW) == 120
    assert retry_delay({**EMPTY, "retry-after": bogus}, attempt=1, now=NOW) == 42
