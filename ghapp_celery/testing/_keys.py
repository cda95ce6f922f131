"""Keys and tokens: the app's RSA keys, GitHub's rules for an app JWT (with its 401 messages),
and random tokens in GitHub's classic shape."""

from __future__ import annotations

import functools
import secrets
import string

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "JWT_DECODE_ERROR",
    "check_app_jwt",
    "make_private_key",
    "public_key_pem",
    "random_token",
]

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
TOKEN_ALPHABET = string.ascii_letters + string.digits
#: Leeway for the JWT's ``exp`` beyond GitHub's 10 minutes, for a client clock a bit ahead.
JWT_EXP_SKEW = 30


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
    """The public half of ``private_key_pem``, in PEM (what GitHub keeps for the app)."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def random_token(prefix: str, length: int) -> str:
    """``prefix`` and ``length`` random letters and digits: GitHub's classic token shape."""
    return prefix + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(length))


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
