"""Keys derived from one secret, and the two sealed things the flow keeps outside memory.

- ``TokenCipher``: Fernet (AES-128-CBC + HMAC-SHA256) around GitHub tokens before they reach
  the store, so a copy of the database alone yields no usable token.
- ``StateSealer``: the login's state, PKCE verifier and redirect target, sealed in a Fernet
  token carried by a short-lived HttpOnly cookie; Fernet's timestamp gives the expiry.

Each purpose gets its own key, derived with HKDF-SHA256 from the configured secret, so the
session-JWT key never encrypts anything and a leak of one derived key exposes nothing else.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["LoginState", "StateSealer", "TokenCipher", "derive_key"]

_TOKEN_INFO = b"ghapp_celery oauth token encryption v1"
_STATE_INFO = b"ghapp_celery oauth state cookie v1"


def derive_key(secret: str, info: bytes) -> bytes:
    """A Fernet key for one purpose (``info``) from any secret string."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode()))


class TokenCipher:
    """Encrypt and decrypt GitHub tokens for the store."""

    def __init__(self, secret: str) -> None:
        self._fernet = Fernet(derive_key(secret, _TOKEN_INFO))

    def encrypt(self, token: str) -> bytes:
        return self._fernet.encrypt(token.encode())

    def decrypt(self, blob: bytes) -> str | None:
        """The token, or None when the blob was sealed with another key or altered."""
        try:
            return self._fernet.decrypt(blob).decode()
        except InvalidToken:
            return None


@dataclass(frozen=True)
class LoginState:
    """What /login remembers for /callback, inside the state cookie."""

    state: str
    code_verifier: str
    redirect_to: str | None
    redirect_uri: str | None


class StateSealer:
    """Seal a LoginState into a cookie value, and open it again within ``ttl`` seconds."""

    def __init__(self, secret: str, ttl: int) -> None:
        self._fernet = Fernet(derive_key(secret, _STATE_INFO))
        self.ttl = ttl

    def seal(self, login: LoginState) -> str:
        body = {
            "s": login.state,
            "v": login.code_verifier,
            "r": login.redirect_to,
            "u": login.redirect_uri,
        }
        return self._fernet.encrypt(json.dumps(body, separators=(",", ":")).encode()).decode()

    def open(self, value: str) -> LoginState | None:
        """The LoginState, or None when the cookie is forged, altered or older than ``ttl``."""
        try:
            raw: Any = json.loads(self._fernet.decrypt(value.encode(), ttl=self.ttl))
        except (InvalidToken, ValueError):
            return None
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in "sv"):
            return None
        redirect_to, redirect_uri = raw.get("r"), raw.get("u")
        return LoginState(
            state=raw["s"],
            code_verifier=raw["v"],
            redirect_to=redirect_to if isinstance(redirect_to, str) else None,
            redirect_uri=redirect_uri if isinstance(redirect_uri, str) else None,
        )
