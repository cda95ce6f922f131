"""Session JWTs: HS256 with the session secret, as in fastapi-githubapp 0.2.7, plus a ``jti``.

Claims: ``sub`` (GitHub user id as a string), ``login``, ``iat``, ``exp``, ``jti`` (the
session id: the key of the stored GitHub tokens and of the logout denylist) and ``type``
("session", 0.2.7's marker). GitHub tokens never go into the JWT.

Verification accepts HS256 only (so ``alg: none`` and algorithm confusion fail), requires every
claim above with the type this module issues it with (pyjwt itself takes ``int(exp)``, so an
``exp`` of ``"9999999999"`` would pass it), and allows a few seconds of clock skew.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt

from ..exceptions import InvalidSession

__all__ = ["InvalidSession", "SessionManager"]

ALGORITHM = "HS256"
_REQUIRED = ["sub", "login", "iat", "exp", "jti"]
_LEEWAY_SECONDS = 5


def _numeric_date(value: Any) -> bool:
    """A JSON number (RFC 7519 NumericDate): not a string, not a boolean, finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _well_typed(claims: dict[str, Any]) -> bool:
    return (
        claims.get("type") == "session"
        and all(isinstance(claims.get(name), str) for name in ("sub", "login", "jti"))
        and _numeric_date(claims.get("iat"))
        and _numeric_date(claims.get("exp"))
    )


class SessionManager:
    """Issue and verify session JWTs (fastapi-githubapp's ``SessionManager``, extended)."""

    def __init__(
        self,
        secret_key: str,
        *,
        lifetime: int = 86_400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret_key = secret_key
        self.algorithm = ALGORITHM
        self.lifetime = lifetime
        self._clock = clock

    def create_session_token(
        self, user: dict[str, Any], *, expires_in_seconds: int | None = None
    ) -> str:
        """0.2.7's signature: a signed session for ``user`` (needs ``id`` and ``login``)."""
        return self.issue(user, expires_in_seconds=expires_in_seconds)[0]

    def issue(
        self, user: dict[str, Any], *, expires_in_seconds: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A new session: its JWT and its claims."""
        now = int(self._clock())
        lifetime = self.lifetime if expires_in_seconds is None else expires_in_seconds
        claims: dict[str, Any] = {
            "sub": str(user.get("id")),
            "login": user.get("login"),
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(24),
            "type": "session",
        }
        return jwt.encode(claims, self.secret_key, algorithm=ALGORITHM), claims

    def verify_session_token(self, token: str) -> dict[str, Any]:
        """The claims of a valid session; raises InvalidSession otherwise."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret_key,
                algorithms=[ALGORITHM],
                options={"require": _REQUIRED},
                leeway=_LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidSession("Session expired") from None
        except jwt.PyJWTError:
            raise InvalidSession("Invalid session token") from None
        if not _well_typed(claims):
            raise InvalidSession("Invalid session token")
        return claims
