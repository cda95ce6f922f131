"""The webhook protocol, free of any framework: signatures, headers and body -> Delivery.

Everything here is a pure function of bytes and header values, so it is tested without a
server and reused by the FastAPI intake, the CLI and the test helpers alike.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs

from .exceptions import (
    InvalidHeader,
    InvalidPayloadField,
    InvalidSignature,
    MalformedPayload,
    MissingHeader,
    PayloadTooDeep,
    PayloadTooLarge,
    UnsupportedContentType,
    WebhookError,
)

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_ACTION_LENGTH",
    "MAX_HEADER_VALUE_LENGTH",
    "Delivery",
    "check_content_length",
    "decode_body",
    "handler_keys",
    "parse_delivery",
    "sign",
    "signed_request",
    "verify_signature",
    "webhook_headers",
]

#: Longest X-GitHub-Delivery, X-GitHub-Event and X-GitHub-Hook-Installation-Target-Type
#: accepted, and the longest ``action``: the store's columns hold 100 characters (GitHub's
#: delivery ids are 36-character UUIDs). One rule on every database: SQLite would keep a longer
#: value, PostgreSQL would refuse it and the delivery would get a 503 GitHub retries.
MAX_HEADER_VALUE_LENGTH = 100
MAX_ACTION_LENGTH = 100
#: Installation, hook and target ids are stored as BIGINT: they must fit a signed 64-bit integer.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
Algorithm = Literal["sha256", "sha1"]
_DIGESTS = {"sha256": hashlib.sha256, "sha1": hashlib.sha1}


def sign(body: bytes, secret: bytes | str, algorithm: Algorithm = "sha256") -> str:
    """The signature header value GitHub would send: ``"sha256=" + hex(HMAC(secret, body))``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return f"{algorithm}=" + hmac.new(key, body, _DIGESTS[algorithm]).hexdigest()


def _matches(body: bytes, header: str, secrets: Sequence[bytes], algorithm: Algorithm) -> bool:
    prefix = f"{algorithm}="
    if not header.startswith(prefix):
        return False
    received = header.encode("ascii", "replace")
    # Compare against every secret without stopping early, so timing reveals nothing about
    # which secret (if any) matched.
    found = False
    for secret in secrets:
        expected = sign(body, secret, algorithm).encode()
        found |= hmac.compare_digest(received, expected)
    return found


def verify_signature(
    body: bytes,
    *,
    secrets: Sequence[bytes],
    signature_256: str | None,
    signature_1: str | None = None,
    allow_sha1: bool = False,
) -> None:
    """Raise InvalidSignature unless a header carries a valid HMAC of ``body`` for a secret.

    ``secrets`` holds the current secret first and any older ones still accepted during a
    rotation. X-Hub-Signature-256 is authoritative when present; the legacy sha1 header is
    looked at only when ``allow_sha1`` is set and no sha256 header came.
    """
    if not secrets:
        raise ValueError("verify_signature needs at least one secret")
    if signature_256:
        if _matches(body, signature_256.strip(), secrets, "sha256"):
            return
        raise InvalidSignature("X-Hub-Signature-256 does not match the body")
    if signature_1 and allow_sha1:
        if _matches(body, signature_1.strip(), secrets, "sha1"):
            return
        raise InvalidSignature("X-Hub-Signature does not match the body")
    if signature_1:
        raise InvalidSignature("Only X-Hub-Signature (sha1) was sent; sha256 is required")
    raise InvalidSignature("Missing X-Hub-Signature-256 header")


def check_content_length(value: str | None, limit: int) -> None:
    """Refuse early, before reading the body, when the declared length is over ``limit``."""
    if value is None:
        return
    try:
        declared = int(value)
    except ValueError:
        raise MalformedPayload("Content-Length is not a number") from None
    if declared > limit:
        raise PayloadTooLarge(f"Body of {declared} bytes exceeds the limit of {limit} bytes")


def decode_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Decode a JSON or form-encoded (``payload=<json>``) body into the payload object."""
    return decode_body_text(body, content_type)[0]


def decode_body_text(body: bytes, content_type: str | None) -> tuple[dict[str, Any], str | None]:
    """``decode_body``, and the body as text when it is a JSON body in UTF-8 (None for a
    form-encoded one): the payload is compressed from that text for the store and the broker
    instead of being serialised again (``Delivery.payload_json``)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    text: str | None = None
    if media_type == "application/x-www-form-urlencoded":
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        if "payload" not in form:
            raise MalformedPayload("Form-encoded body has no 'payload' field")
        raw: str | bytes = form["payload"][0]
    elif media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        try:
            raw = text = body.decode("utf-8")
        except UnicodeDecodeError:
            raw = body  # json.loads still reads UTF-16 and UTF-32
    else:
        raise UnsupportedContentType()
    try:
        payload = json.loads(raw)
    except RecursionError:
        # Nested past the interpreter's recursion limit (about 1,000 levels; GitHub's own
        # payloads nest 7). The parser's own guard is the limit: checking a lower one exactly
        # would walk every payload, costing a quarter of json.loads on the hot path.
        raise PayloadTooDeep("Payload is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayload("Body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise MalformedPayload("Webhook payload must be a JSON object")
    return payload, text


def handler_keys(event: str, action: str | None) -> tuple[str, ...]:
    """The handler keys a delivery of ``event``/``action`` matches, in dispatch order."""
    return (event, f"{event}.{action}") if action else (event,)


def _lowercase_lookup(headers: Mapping[str, str]) -> Mapping[str, str]:
    """A mapping answering lower-case names. Case-insensitive header types (Starlette's,
    httpx's: any non-dict Mapping here) already do; a plain dict is lowered once."""
    if isinstance(headers, dict):
        return {k.lower(): v for k, v in headers.items()}
    return headers


def _int64_or_none(value: Any, name: str, error: type[WebhookError]) -> int | None:
    """``value`` as an integer; None when absent or not a number (ignored, as it always was);
    ``error`` when it is a number that does not fit a signed 64-bit integer (the store's
    BIGINT: SQLite would fail with a 500, PostgreSQL with a 503 GitHub retries)."""
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except OverflowError:  # a float infinity
        raise error(f"{name} must fit a signed 64-bit integer") from None
    except (TypeError, ValueError):
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            raise error(f"{name} must fit a signed 64-bit integer") from None  # too many digits
        return None
    if not INT64_MIN <= number <= INT64_MAX:
        raise error(f"{name} must fit a signed 64-bit integer")
    return number


def _text(value: str, name: str, limit: int, error: type[WebhookError]) -> str:
    """``value`` unless the store could not keep it alike on every database: longer than
    ``limit`` characters, or other than printable ASCII (PostgreSQL refuses NUL and text that
    is not valid UTF-8)."""
    if len(value) > limit:
        raise error(f"{name} is longer than {limit} characters")
    if not (value.isascii() and value.isprintable()):
        raise error(f"{name} must be printable ASCII")
    return value


# Compression runs on the webhook's hot path. On the 79 fixture payloads zlib level 1 gives
# 5.8x against level 6's 6.6x, in 20% less time; the gap in time widens on large payloads.
PAYLOAD_ZLIB_LEVEL = 1


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery as GitHub sent it.

    ``id`` is X-GitHub-Delivery: GitHub keeps it on redelivery, so it identifies the event.
    ``installation_id`` is None for app-level events such as ``ping`` or ``meta``.
    """

    id: str
    event: str
    payload: dict[str, Any]
    action: str | None = None
    installation_id: int | None = None
    hook_id: int | None = None
    target_type: str | None = None
    target_id: int | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: The payload's JSON text as received, when the body was JSON: ``payload_zlib`` compresses
    #: this text instead of serialising ``payload`` again.
    payload_json: str | None = field(default=None, repr=False, compare=False)

    @property
    def payload_zlib(self) -> bytes:
        """The payload's JSON (the text as received when known), zlib-compressed once: the
        store keeps these bytes and a task message carries them, so a delivery is compressed
        once and a message is a fifth of the payload's size (cheaper to encode, send, hold
        unacknowledged in Redis and decode)."""
        # Cached by hand: functools.cached_property holds one lock per class on Python 3.11,
        # which would make the scheduler threads compress one delivery at a time.
        packed: bytes | None = self.__dict__.get("_payload_zlib")
        if packed is None:
            text = self.payload_json
            if text is None:
                text = json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False)
            packed = zlib.compress(text.encode(), PAYLOAD_ZLIB_LEVEL)
            self.__dict__["_payload_zlib"] = packed  # frozen: not through __setattr__
        return packed

    def header_fields(self) -> dict[str, Any]:
        """What the headers (and the installation) say of this delivery, by field name: the
        columns the store records and the fields a task message carries, from one list."""
        return {
            "id": self.id,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "hook_id": self.hook_id,
            "target_type": self.target_type,
            "target_id": self.target_id,
        }

    @property
    def keys(self) -> tuple[str, ...]:
        """Handler keys this delivery matches, in dispatch order: event, event.action."""
        return handler_keys(self.event, self.action)

    @property
    def name(self) -> str:
        """``event.action`` or just ``event``: how logs and metrics name the delivery."""
        return f"{self.event}.{self.action}" if self.action else self.event


def parse_delivery(
    headers: Mapping[str, str],
    payload: dict[str, Any],
    *,
    require_delivery_id: bool = False,
    payload_json: str | None = None,
) -> Delivery:
    """Build a Delivery from GitHub's headers (any case) and the decoded payload."""
    headers = _lowercase_lookup(headers)
    limit = MAX_HEADER_VALUE_LENGTH
    event = (headers.get("x-github-event") or "").strip()
    if not event:
        raise MissingHeader("Missing X-GitHub-Event header")
    _text(event, "X-GitHub-Event", limit, InvalidHeader)
    delivery_id = (headers.get("x-github-delivery") or "").strip()
    if not delivery_id:
        if require_delivery_id:
            raise MissingHeader("Missing X-GitHub-Delivery header")
        # Hand-made test deliveries (curl) often lack the id; give them one so they can
        # still be recorded and traced.
        delivery_id = f"local-{uuid.uuid4()}"
    _text(delivery_id, "X-GitHub-Delivery", limit, InvalidHeader)
    action = payload.get("action")
    if isinstance(action, str) and action:
        _text(action, "action", MAX_ACTION_LENGTH, InvalidPayloadField)
    else:
        action = None
    installation = payload.get("installation")
    installation_id = (
        _int64_or_none(installation.get("id"), "installation.id", InvalidPayloadField)
        if isinstance(installation, dict)
        else None
    )
    target_type = headers.get("x-github-hook-installation-target-type")
    if target_type is not None:
        _text(target_type, "X-GitHub-Hook-Installation-Target-Type", limit, InvalidHeader)
    return Delivery(
        id=delivery_id,
        event=event,
        payload=payload,
        action=action,
        installation_id=installation_id,
        hook_id=_int64_or_none(headers.get("x-github-hook-id"), "X-GitHub-Hook-ID", InvalidHeader),
        target_type=target_type,
        target_id=_int64_or_none(
            headers.get("x-github-hook-installation-target-id"),
            "X-GitHub-Hook-Installation-Target-ID",
            InvalidHeader,
        ),
        payload_json=payload_json,
    )


def webhook_headers(
    event: str,
    body: bytes,
    *,
    secret: bytes | str | None = None,
    delivery_id: str | None = None,
    hook_id: int = 1,
    app_id: int | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    """The headers GitHub sends with a delivery of ``body`` (GITHUB_FACTS §9), signed."""
    headers = {
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/ghapp-celery",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": str(hook_id),
    }
    if app_id is not None:
        headers["X-GitHub-Hook-Installation-Target-Type"] = "integration"
        headers["X-GitHub-Hook-Installation-Target-ID"] = str(app_id)
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
        headers["X-Hub-Signature"] = sign(body, secret, "sha1")
    return headers


def signed_request(
    event: str,
    payload: dict[str, Any],
    *,
    secret: bytes | str | None,
    delivery_id: str | None = None,
    app_id: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The compact JSON body GitHub sends for ``payload`` and its headers, signed."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, webhook_headers(event, body, secret=secret, delivery_id=delivery_id, app_id=app_id)
