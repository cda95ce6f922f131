"""The copied fixtures are complete and tests/payloads.py reads them as INDEX.tsv says."""

from __future__ import annotations

import base64

import pytest

from tests.payloads import (
    APP_LEVEL_EVENTS,
    FIXTURES,
    WEBHOOKS,
    expects_installation,
    load_index,
    load_payload,
    with_installation,
)


def test_index_matches_the_files_on_disk() -> None:
    rows = load_index()
    assert len(rows) == 79
    assert len({row.event for row in rows}) == 27
    on_disk = {p.relative_to(WEBHOOKS).as_posix() for p in WEBHOOKS.glob("*/*.json")}
    assert on_disk == {row.path for row in rows}


def test_index_columns_match_the_payloads() -> None:
    for row in load_index():
        payload = load_payload(row.path)
        assert payload.get("action") == row.action, row
        assert ("installation" in payload) == row.has_installation_key, row


@pytest.mark.parametrize(
    "name",
    [
        "webhooks/LICENSE-octokit-webhooks",
        "webhooks/LICENSE-codinasion-bot",
        "webhooks/LICENSE-integrations-slack",
        "webhooks/README.md",
        "api_responses/gidgethub_samples/LICENSE-gidgethub-Apache-2.0",
        "signature_vectors.json",
    ],
)
def test_licences_and_provenance_travel_with_the_data(name: str) -> None:
    assert (FIXTURES / name).stat().st_size > 0


def test_with_installation_adds_one_where_an_app_would_get_it() -> None:
    payload = load_payload("issues/opened.json")
    assert "installation" not in payload
    added = with_installation(payload, installation_id=99, event="issues")
    assert added["installation"]["id"] == 99
    node_id = base64.b64decode(added["installation"]["node_id"]).decode()
    assert node_id == "023:IntegrationInstallation99"
    assert "installation" not in payload  # the input is left alone


def test_with_installation_keeps_what_github_sent() -> None:
    payload = load_payload("issues/reopened.json")
    assert with_installation(payload, installation_id=99)["installation"] == payload["installation"]


@pytest.mark.parametrize("event", sorted(APP_LEVEL_EVENTS))
def test_with_installation_leaves_app_level_events_alone(event: str) -> None:
    assert not expects_installation(event)
    assert "installation" not in with_installation({"zen": "x"}, event=event)
