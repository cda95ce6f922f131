"""decode_body, check_content_length and parse_delivery: the sans-I/O half of the intake."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ghapp_celery.exceptions import (
    MalformedPayload,
    MissingHeader,
    PayloadTooLarge,
    UnsupportedContentType,
    WebhookError,
)
from ghapp_celery.webhooks import (
    Delivery,
    check_content_length,
    decode_body,
    decode_body_text,
    parse_delivery,
    sign,
    verify_signature,
    webhook_headers,
)
from tests.payloads import FIXTURES, Row, load_bytes, load_index, load_payload

PING_CAPTURE = FIXTURES / "api_responses" / "gidgethub_samples" / "ping_urlencoded"
MB = 1024 * 1024


# --- decode_body -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        " application/json ;charset=UTF-8",
        "application/vnd.github+json",
    ],
)
def test_decode_json(content_type: str) -> None:
    body = load_bytes("issues/opened.json")
    payload = decode_body(body, content_type)
    assert payload == json.loads(body)
    assert payload["issue"]["id"] == 444500041


def test_decode_real_form_encoded_ping() -> None:
    # A real delivery from a hook configured with content type "form" (gidgethub's capture).
    headers: dict[str, str] = json.loads((PING_CAPTURE / "200.json").read_text("utf-8"))
    body = (PING_CAPTURE / "body").read_bytes()
    assert body.startswith(b"payload=%7B")
    payload = decode_body(body, headers["content-type"])
    assert payload["zen"] == "Keep it logically awesome."
    assert payload["hook_id"] == 13736792
    assert payload["hook"]["config"]["content_type"] == "form"

    delivery = parse_delivery(headers, payload)
    assert delivery.event == "ping"
    assert delivery.id == "44840d80-36a8-11e7-89d0-954e94e187c2"
    assert delivery.installation_id is None
    assert delivery.keys == ("ping",)


def test_decode_form_encoded_keeps_other_fields_out() -> None:
    body = b"other=1&payload=%7B%22action%22%3A%22opened%22%7D"
    assert decode_body(body, "application/x-www-form-urlencoded") == {"action": "opened"}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b'{"action": "opened"', "application/json", id="truncated-json"),
        pytest.param(b"", "application/json", id="empty-body"),
        pytest.param(b"not json", "application/json", id="not-json"),
        pytest.param(b'[{"action": "opened"}]', "application/json", id="json-array"),
        pytest.param(b'"opened"', "application/json", id="json-string"),
        pytest.param(b"null", "application/json", id="json-null"),
        pytest.param(b'{"title": "caf\xe9"}', "application/json", id="latin1-not-utf8"),
        pytest.param(b"\xff\xfe\x00", "application/json", id="binary"),
        pytest.param(b"zen=hello", "application/x-www-form-urlencoded", id="form-no-payload"),
        pytest.param(b"payload=%7B", "application/x-www-form-urlencoded", id="form-bad-json"),
        pytest.param(b"payload=%5B%5D", "application/x-www-form-urlencoded", id="form-array"),
    ],
)
def test_decode_malformed(body: bytes, content_type: str) -> None:
    with pytest.raises(MalformedPayload) as caught:
        decode_body(body, content_type)
    assert caught.value.http_status == 400


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/xml", "multipart/form-data; boundary=x", "json"],
)
def test_decode_unsupported_content_type(content_type: str | None) -> None:
    with pytest.raises(UnsupportedContentType) as caught:
        decode_body(b"{}", content_type)
    assert caught.value.http_status == 415
    assert caught.value.code == "unsupported_content_type"


# --- check_content_length ----------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "0", "6615", str(25 * MB)])
def test_content_length_within_limit(value: str | None) -> None:
    check_content_length(value, 25 * MB)


def test_content_length_over_limit() -> None:
    check_content_length("100", 100)
    with pytest.raises(PayloadTooLarge) as caught:
        check_content_length("101", 100)
    assert caught.value.http_status == 413


@pytest.mark.parametrize("value", ["abc", "", "1e3", "12.5"])
def test_content_length_not_a_number(value: str) -> None:
    with pytest.raises(MalformedPayload):
        check_content_length(value, 100)


def test_every_refusal_is_a_webhook_error() -> None:
    # The intake turns WebhookError into its JSON answer; a refusal outside the tree would be
    # a 500.
    for exc in (MalformedPayload, MissingHeader, PayloadTooLarge, UnsupportedContentType):
        assert issubclass(exc, WebhookError)


# --- parse_delivery ----------------------------------------------------------------------

GITHUB_HEADERS = {
    "X-GitHub-Event": "issues",
    "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    "X-GitHub-Hook-ID": "292430182",
    "X-GitHub-Hook-Installation-Target-ID": "79929171",
    "X-GitHub-Hook-Installation-Target-Type": "integration",
}


@pytest.mark.parametrize(
    "case", [str.lower, str.upper, lambda s: s], ids=["lower", "upper", "as-sent"]
)
def test_parse_headers_in_any_case(case: Any) -> None:
    headers = {case(k): v for k, v in GITHUB_HEADERS.items()}
    payload = load_payload("issues/assigned.with-installation.json")
    delivery = parse_delivery(headers, payload)
    assert delivery == Delivery(
        id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        event="issues",
        payload=payload,
        action="assigned",
        installation_id=payload["installation"]["id"],
        hook_id=292430182,
        target_type="integration",
        target_id=79929171,
        received_at=delivery.received_at,
    )
    assert delivery.payload is payload


def test_parse_missing_event() -> None:
    headers = {k: v for k, v in GITHUB_HEADERS.items() if k != "X-GitHub-Event"}
    with pytest.raises(MissingHeader) as caught:
        parse_delivery(headers, {})
    assert caught.value.http_status == 400
    with pytest.raises(MissingHeader):
        parse_delivery({**headers, "X-GitHub-Event": "  "}, {})


def test_parse_missing_delivery_id() -> None:
    headers = {"X-GitHub-Event": "push"}
    first, second = parse_delivery(headers, {}), parse_delivery(headers, {})
    # A made-up id, different each time, so two curl deliveries never collide in the store.
    assert first.id.startswith("local-")
    assert first.id != second.id
    with pytest.raises(MissingHeader):
        parse_delivery(headers, {}, require_delivery_id=True)


def test_parse_ping_has_no_installation() -> None:
    payload = load_payload("ping/default.json")
    delivery = parse_delivery({"X-GitHub-Event": "ping"}, payload)
    assert delivery.installation_id is None
    assert delivery.action is None
    assert delivery.hook_id is None


@pytest.mark.parametrize(
    ("installation", "expected"),
    [
        ({"id": 42}, 42),
        ({"id": "42"}, 42),
        ({"id": None}, None),
        ({"id": "not-a-number"}, None),
        ({}, None),
        ("42", None),
        (None, None),
    ],
)
def test_parse_installation_id(installation: Any, expected: int | None) -> None:
    delivery = parse_delivery({"X-GitHub-Event": "push"}, {"installation": installation})
    assert delivery.installation_id == expected


@pytest.mark.parametrize("action", [None, "", 5, ["opened"]])
def test_parse_non_string_action_is_no_action(action: Any) -> None:
    delivery = parse_delivery({"X-GitHub-Event": "issues"}, {"action": action})
    assert delivery.action is None
    assert delivery.keys == ("issues",)
    assert delivery.name == "issues"


@pytest.mark.parametrize("value", ["", "abc"])
def test_parse_bad_hook_id_is_none(value: str) -> None:
    headers = {"X-GitHub-Event": "push", "X-GitHub-Hook-ID": value}
    assert parse_delivery(headers, {}).hook_id is None


def test_delivery_keys_and_name() -> None:
    with_action = Delivery(id="d", event="issues", payload={}, action="opened")
    assert with_action.keys == ("issues", "issues.opened")
    assert with_action.name == "issues.opened"
    without = Delivery(id="d", event="push", payload={})
    assert without.keys == ("push",)
    assert without.name == "push"


ROWS = load_index()


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_every_real_payload_parses(row: Row) -> None:
    body = load_bytes(row.path)
    headers = webhook_headers(row.event, body, secret="s3cret", app_id=7)
    verify_signature(body, secrets=[b"s3cret"], signature_256=headers["X-Hub-Signature-256"])
    delivery = parse_delivery(headers, decode_body(body, headers["Content-Type"]))
    assert delivery.event == row.event
    assert delivery.action == row.action
    assert delivery.id == headers["X-GitHub-Delivery"]
    assert (delivery.installation_id is not None) == row.has_installation_key
    assert (delivery.target_type, delivery.target_id) == ("integration", 7)
    expected_keys = (row.event,) if row.action is None else (row.event, f"{row.event}.{row.action}")
    assert delivery.keys == expected_keys


def test_webhook_headers_sign_both_algorithms() -> None:
    body = b'{"zen": "x"}'
    headers = webhook_headers("ping", body, secret=b"k", delivery_id="abc")
    assert headers["X-Hub-Signature-256"] == sign(body, b"k")
    assert headers["X-Hub-Signature"] == sign(body, b"k", "sha1")
    assert headers["X-GitHub-Delivery"] == "abc"
    assert "X-GitHub-Hook-Installation-Target-ID" not in headers
    assert "X-Hub-Signature-256" not in webhook_headers("ping", body)


def test_a_json_body_keeps_its_text_and_a_form_body_has_none() -> None:
    body = load_bytes("issues/opened.json")
    payload, text = decode_body_text(body, "application/json; charset=utf-8")
    assert text == body.decode() and json.loads(text) == payload
    form = b"payload=" + body.replace(b"%", b"%25").replace(b"&", b"%26").replace(b"+", b"%2B")
    payload_from_form, none = decode_body_text(form, "application/x-www-form-urlencoded")
    assert none is None and payload_from_form == payload
    utf16 = json.dumps(payload).encode("utf-16")  # JSON allows it; no UTF-8 text to keep
    assert decode_body_text(utf16, "application/json") == (payload, None)
