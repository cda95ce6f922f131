"""Webhook signatures against published vectors (tests/fixtures/signature_vectors.json)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from ghapp_celery.exceptions import InvalidSignature
from ghapp_celery.webhooks import sign, verify_signature
from tests.payloads import FIXTURES

_DATA: dict[str, Any] = json.loads((FIXTURES / "signature_vectors.json").read_text("utf-8"))
VECTORS: list[dict[str, Any]] = _DATA["vectors"]
MALFORMED: list[dict[str, Any]] = _DATA["malformed_header_cases"]


def _body(vector: dict[str, Any]) -> bytes:
    # The hex is the authority on the exact bytes; the string form must agree with it, or the
    # vector file itself is broken and every result below would be meaningless.
    body = bytes.fromhex(vector["payload_utf8_hex"])
    assert body == vector["payload"].encode("utf-8")
    return body


def test_vector_file_is_complete() -> None:
    assert len(VECTORS) == 22
    assert {v["algorithm"] for v in VECTORS} == {"sha256", "sha1", "sha512"}
    assert any(not v["should_verify"] for v in VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    body, secret, expected = _body(vector), vector["secret"], vector["expected_signature"]
    algorithm = vector["algorithm"]

    if algorithm == "sha512":
        # go-github accepts sha512=, GitHub never sends it, and we accept only what GitHub
        # sends. Prove the vector is sound, so the refusal below is policy, not a bug.
        digest = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
        assert expected == f"sha512={digest}"
        with pytest.raises(InvalidSignature):
            verify_signature(body, secrets=[secret.encode()], signature_256=expected)
        return

    if algorithm == "sha256":
        kwargs: dict[str, Any] = {"signature_256": expected}
    else:
        assert algorithm == "sha1"
        kwargs = {"signature_256": None, "signature_1": expected, "allow_sha1": True}

    if vector["should_verify"]:
        assert sign(body, secret, algorithm) == expected
        assert sign(body, secret.encode(), algorithm) == expected
        verify_signature(body, secrets=[secret.encode()], **kwargs)
    else:
        assert sign(body, secret, algorithm) != expected
        with pytest.raises(InvalidSignature):
            verify_signature(body, secrets=[secret.encode()], **kwargs)


@pytest.mark.parametrize("case", MALFORMED, ids=[c["id"] for c in MALFORMED])
@pytest.mark.parametrize("slot", ["sha256", "sha1"])
def test_malformed_header(case: dict[str, Any], slot: str) -> None:
    # Cases without their own body use the official one, whose sha256 is known to verify.
    secret = case.get("secret", "It's a Secret to Everybody").encode()
    body = case.get("payload", "Hello, World!").encode()
    header = case["header_value"]
    assert not case["should_verify"]
    with pytest.raises(InvalidSignature):
        if slot == "sha256":
            verify_signature(body, secrets=[secret], signature_256=header)
        else:
            verify_signature(
                body, secrets=[secret], signature_256=None, signature_1=header, allow_sha1=True
            )


def test_bare_hex_of_the_right_digest_is_refused() -> None:
    # "malformed-no-prefix" is the correct digest without "sha256=": the prefix is required.
    body, secret = b"gidget", b"123456"
    digest = sign(body, secret).removeprefix("sha256=")
    verify_signature(body, secrets=[secret], signature_256=f"sha256={digest}")
    with pytest.raises(InvalidSignature):
        verify_signature(body, secrets=[secret], signature_256=digest)


def test_non_ascii_header_is_refused_not_crashing() -> None:
    with pytest.raises(InvalidSignature):
        verify_signature(b"{}", secrets=[b"s"], signature_256="sha256=\u00e9\u00e9")


def test_rotation_either_secret_verifies() -> None:
    body = b'{"action":"opened"}'
    new, old, stranger = b"new-secret", b"old-secret", b"someone-else"
    for secret in (new, old):
        verify_signature(body, secrets=[new, old], signature_256=sign(body, secret))
        verify_signature(body, secrets=[old, new], signature_256=sign(body, secret))
    with pytest.raises(InvalidSignature):
        verify_signature(body, secrets=[new, old], signature_256=sign(body, stranger))


def test_no_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        verify_signature(b"{}", secrets=[], signature_256=sign(b"{}", b"s"))


def test_sha1_only_header_needs_allow_sha1() -> None:
    body, secret = b'{"zen":"Keep it logically awesome."}', b"secret"
    legacy = sign(body, secret, "sha1")
    with pytest.raises(InvalidSignature):
        verify_signature(body, secrets=[secret], signature_256=None, signature_1=legacy)
    verify_signature(
        body, secrets=[secret], signature_256=None, signature_1=legacy, allow_sha1=True
    )


def test_sha256_header_is_authoritative_over_sha1() -> None:
    # A valid legacy header must not rescue a wrong sha256 one: an attacker could pick which
    # header to forge.
    body, secret = b"{}", b"secret"
    with pytest.raises(InvalidSignature):
        verify_signature(
            body,
            secrets=[secret],
            signature_256=sign(body, b"wrong"),
            signature_1=sign(body, secret, "sha1"),
            allow_sha1=True,
        )


def test_missing_headers_are_refused() -> None:
    with pytest.raises(InvalidSignature):
        verify_signature(b"{}", secrets=[b"s"], signature_256=None)
    with pytest.raises(InvalidSignature):
        verify_signature(b"{}", secrets=[b"s"], signature_256="", signature_1="")
