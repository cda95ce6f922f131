"""The one error the OAuth routes answer with: a status, a short code and a sentence.

Answers are JSON ``{"detail": <sentence>, "error": <code>}``: ``detail`` keeps the shape of
fastapi-githubapp 0.2.7's errors, ``error`` is stable for programs. Neither ever holds a token,
an exception's text or anything echoed from the request beyond a sanitised GitHub error code.
"""

from __future__ import annotations

from fastapi import HTTPException

from ..exceptions import LoginError

__all__ = ["LoginError", "safe_code", "unauthorized"]


def safe_code(value: str | None, default: str = "oauth_error") -> str:
    """An OAuth error code fit to echo: short, letters, digits and underscores only."""
    if value and len(value) <= 64 and value.replace("_", "").isalnum() and value.isascii():
        return value
    return default


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})
