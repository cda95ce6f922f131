"""The parts of FakeGitHub that are data: keys, the clock, GitHub's constants and JSON shapes."""

from __future__ import annotations

import functools
import string
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request

__all__ = [
    "Credential",
    "FakeClock",
    "IssuedToken",
    "RecordedRequest",
    "Reply",
    "app_json",
    "installation_json",
    "iso",
    "make_private_key",
    "public_key_pem",
]

DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})
JWT_DECODE_ERROR = "A JSON web token could not be decoded"
EXP_TOO_FAR = "'Expiration time' claim ('exp') is too far in the future"
EXP_PASSED = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at "
    "which the assertion expires"
)
IAT_INVALID = (
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was "
    "issued"
)
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {request_id}."
)
ERROR_MESSAGES = {401: "Bad credentials", 422: "Validation Failed", 500: "Server Error"}
#: Leeway for the JWT's ``exp`` beyond GitHub's 10 minutes, for a client clock a bit ahead.
JWT_EXP_SKEW = 30
RATE_WINDOW = 3600
TOKEN_ALPHABET = string.ascii_letters + string.digits
PERMISSION_LEVELS = frozenset({"read", "write", "admin"})

AuthKind = Literal["jwt", "token", "none"]


@functools.cache
def make_private_key(slot: int = 0) -> str:
    """An RSA-2048 private key in PEM; one per ``slot``, generated once per process (slow)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(private_key_pem: str) -> str:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def iso(epoch: float) -> str:
    """GitHub's timestamp format: ``2016-07-11T22:14:10Z``."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeClock:
    """A settable clock, shared by FakeGitHub and the client under test."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def set(self, t: float) -> None:
        with self._lock:
            self._now = t


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # below the API root (the prefix stripped)
    query: str
    headers: dict[str, str]  # lower-case names; Authorization as "<scheme> <redacted>"
    body: bytes = b""


@dataclass
class IssuedToken:
    token: str
    installation_id: int
    expires_at: float
    revoked: bool = False


@dataclass(frozen=True)
class Credential:
    kind: AuthKind
    key: str  # the rate-limit bucket: "app", a token, or "anonymous"
    installation_id: int | None = None


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request, Credential], Awaitable[Reply]]


@dataclass
class Fault:
    status: int
    times: int
    path_prefix: str | None
    headers: dict[str, str]
    body: Any


@dataclass
class Bucket:
    limit: int
    reset: int
    used: int = 0
    resource: str = "core"


def error_reply(status: int, message: str | None = None, docs: str = DOCS) -> Reply:
    text = message or ERROR_MESSAGES.get(status) or HTTPStatus(status).phrase
    return Reply(status, {"message": text, "documentation_url": docs})


def account_json(login: str, account_id: int, kind: str) -> dict[str, Any]:
    return {
        "login": login,
        "id": account_id,
        "node_id": f"O_fake{account_id}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{account_id}?v=4",
        "url": f"https://api.github.com/users/{login}",
        "html_url": f"https://github.com/{login}",
        "type": kind,
        "site_admin": False,
    }


def int_param(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


def request_id() -> str:
    return uuid.uuid4().hex[:20].upper()


def installation_json(
    *,
    installation_id: int,
    n: int,
    app_id: int,
    slug: str,
    created: int,
    permissions: dict[str, str],
    events: list[str],
) -> dict[str, Any]:
    """An ``installation`` object as ``GET /app/installations`` lists it."""
    account = account_json(f"fake-org-{n}", 9_000_000 + n, "Organization")
    login = account["login"]
    return {
        "id": installation_id,
        "account": account,
        "repository_selection": "all",
        "access_tokens_url": f"https://api.github.com/app/installations/{installation_id}"
        "/access_tokens",
        "repositories_url": "https://api.github.com/installation/repositories",
        "html_url": f"https://github.com/organizations/{login}/settings/installations/"
        f"{installation_id}",
        "app_id": app_id,
        "app_slug": slug,
        "target_id": account["id"],
        "target_type": "Organization",
        "permissions": dict(permissions),
        "events": list(events),
        "created_at": iso(created),
        "updated_at": iso(created),
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": None,
    }


def app_json(
    *,
    app_id: int,
    client_id: str,
    slug: str,
    created: int,
    permissions: dict[str, str],
    events: list[str],
    installations_count: int,
) -> dict[str, Any]:
    """The ``integration`` object ``GET /app`` returns."""
    return {
        "id": app_id,
        "slug": slug,
        "node_id": "A_kwDOFake",
        "client_id": client_id,
        "owner": account_json("fake-owner", 9_000_000, "Organization"),
        "name": "Fake App",
        "description": "A GitHub App served by FakeGitHub",
        "external_url": "https://example.com",
        "html_url": f"https://github.com/apps/{slug}",
        "created_at": iso(created),
        "updated_at": iso(created),
        "permissions": dict(permissions),
        "events": list(events),
        "installations_count": installations_count,
    }


def check_app_jwt(token: str, public_key: str, now: float, issuers: tuple[str, ...]) -> str | None:
    """None when GitHub would accept this app JWT at ``now``; else GitHub's 401 message."""
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_iss": False,
                "verify_aud": False,
            },
        )
    except jwt.PyJWTError:
        return JWT_DECODE_ERROR
    exp, iat, iss = claims.get("exp"), claims.get("iat"), claims.get("iss")
    if not isinstance(iat, int) or iat > now + 60:
        return IAT_INVALID
    if not isinstance(exp, int) or exp <= now:
        return EXP_PASSED
    if exp > now + 600 + JWT_EXP_SKEW:
        return EXP_TOO_FAR
    if iss not in issuers:
        return JWT_DECODE_ERROR
    return None
