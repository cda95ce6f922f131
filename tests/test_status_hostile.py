"""The status API against hostile and malformed values, on SQLite and on PostgreSQL.

Over real HTTP (uvicorn), with the store on each database: every value the API cannot use is
a 400 ``{"status": "ERROR", "error": "invalid_<parameter>", "description": ...}``, the same
on both databases, never a 500 (an ``installation_id`` beyond 64 bits raised OverflowError on
SQLite and a DataError, so StoreUnavailable, on PostgreSQL) and never FastAPI's 422
(docs/background.md says 400).
Answers never echo the value sent. The boundaries themselves (the largest 64-bit id, year 1 and
year 9999 in UTC) still work. The rest of the user's app keeps FastAPI's own 422.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from ghapp_celery import GitHubApp
from ghapp_celery.config import Settings
from ghapp_celery.store import RunPlan
from ghapp_celery.testing import serve
from ghapp_celery.webhooks import Delivery
from tests._postgres import PostgresServer, postgres_server  # noqa: F401  (fixture)

TOKEN = "hostile-status-token"
PREFIX = "/webhooks/github/status"
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
BIGGEST = "big-installation-delivery"
ECHO = "ECHO-M4RK"  # put into values, so an answer repeating its input shows


def cursor_of(at: str, delivery_id: str) -> str:
    """A cursor in the store's format (base64 JSON), with any content."""
    raw = json.dumps([at, delivery_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Served:
    def __init__(self, url: str, github_app: GitHubApp) -> None:
        self.url, self.base, self.github_app = url, f"{url}{PREFIX}", github_app

    def get(self, path: str, *, token: str | None = TOKEN, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.base}{path}", params=params, headers=headers, timeout=30)

    def raw(self, method: str, path_and_query: str) -> httpx.Response:
        """A request whose path and query go out exactly as written (already encoded)."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return httpx.request(method, f"{self.base}{path_and_query}", headers=headers, timeout=30)


def build(database_url: str, data_dir: Path) -> tuple[GitHubApp, FastAPI]:
    web = FastAPI()

    @web.get("/mine")
    def mine(n: int) -> dict[str, int]:  # the user's own route: FastAPI's behaviour stays
        return {"n": n}

    settings = Settings(
        database_url=database_url,
        data_dir=data_dir,
        status_token=SecretStr(TOKEN),
        webhook_secret=SecretStr("hostile-webhook-secret"),
    )
    return GitHubApp(web, settings=settings), web


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp}/store.sqlite"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"hostile_{uuid.uuid4().hex[:12]}")
    github_app, web = build(url, tmp / "data")
    store = github_app.store
    store.record(
        Delivery(
            id=BIGGEST,
            event="issues",
            action="opened",
            installation_id=INT64_MAX,
            hook_id=1,
            target_type="integration",
            target_id=1,
            payload={"action": "opened"},
            received_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        ),
        [RunPlan("h", "ghapp.h", "github.issues")],
    )
    with serve(web) as base:
        yield Served(base, github_app)
    store.dispose()


def assert_400(answer: httpx.Response, error: str) -> dict[str, Any]:
    assert answer.status_code == 400, answer.text[:300]
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json()
    assert set(body) == {"status", "error", "description"}, body
    assert body["status"] == "ERROR"
    assert body["error"] == error and isinstance(body["description"], str)
    assert ECHO not in answer.text and "Traceback" not in answer.text
    return body


# -- integers: 64-bit, signed ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        str(10**30),
        str(INT64_MAX + 1),
        str(INT64_MIN - 1),
        str(-(10**30)),
        "9" * 5000,  # beyond Python's own int-from-text limit
        "abc",
        "1e3",
        "1.5",
        "",
        f"{ECHO}1",
    ],
    ids=["1e30", "max+1", "min-1", "-1e30", "5000-digits", "text", "exp", "float", "empty", "echo"],
)
def test_an_unusable_installation_id_is_400(served: Served, value: str) -> None:
    body = assert_400(served.get("/deliveries", installation_id=value), "invalid_installation_id")
    assert str(INT64_MAX) in body["description"]  # says what would be accepted


@pytest.mark.parametrize("value", [INT64_MAX, INT64_MIN, 0, -1])
def test_every_64_bit_installation_id_is_a_filter(served: Served, value: int) -> None:
    answer = served.get("/deliveries", installation_id=str(value))
    assert answer.status_code == 200, answer.text
    ids = [item["id"] for item in answer.json()["deliveries"]]
    assert ids == ([BIGGEST] if value == INT64_MAX else [])
    if value == INT64_MAX:
        assert answer.json()["deliveries"][0]["installation_id"] == INT64_MAX


@pytest.mark.parametrize("value", ["0", "-1", "501", str(10**30), "abc", "", f"{ECHO}"])
def test_an_unusable_limit_is_400(served: Served, value: str) -> None:
    body = assert_400(served.get("/deliveries", limit=value), "invalid_limit")
    assert body["description"] == "limit must be an integer from 1 to 500"


# -- times -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize(
    "value",
    [
        "not-a-date",
        f"{ECHO}",
        "2024-13-01T00:00:00Z",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00",  # no offset: ambiguous
        "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
        "9999-12-31T23:59:59-05:00",  # after year 9999 once in UTC
    ],
    ids=["text", "echo", "month13", "offset24", "naive", "before-year-1", "after-9999"],
)
def test_an_unusable_time_is_400(served: Served, name: str, value: str) -> None:
    body = assert_400(served.get("/deliveries", **{name: value}), f"invalid_{name}")
    assert body["description"].startswith(name)


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999+00:00", "2025-03-01T17:30+05:30"]
)
def test_the_extreme_times_utc_can_hold_work(served: Served, value: str) -> None:
    for name in ("since", "until"):
        answer = served.get("/deliveries", **{name: value})
        assert answer.status_code == 200, (name, answer.text)


def test_a_time_in_another_zone_is_the_same_instant(served: Served) -> None:
    # 17:30+05:30 is 12:00 UTC, the recorded delivery's time: since inclusive, until exclusive.
    def ids(**params: str) -> list[str]:
        return [d["id"] for d in served.get("/deliveries", **params).json()["deliveries"]]

    assert BIGGEST in ids(since="2025-03-01T17:30+05:30")
    assert BIGGEST not in ids(until="2025-03-01T17:30+05:30")
    assert BIGGEST in ids(until="2025-03-01T07:00:01-05:00")


# -- strings: NUL bytes (PostgreSQL text cannot hold them), cursors ------------------------------


def test_a_nul_in_the_event_filter_is_400(served: Served) -> None:
    assert_400(served.raw("GET", "/deliveries?event=issues%00x"), "invalid_event")
    ok = served.get("/deliveries", event="x" * 3000)  # merely long: no such event
    assert ok.status_code == 200 and ok.json()["deliveries"] == []


@pytest.mark.parametrize("method, suffix", [("GET", ""), ("POST", "/replay")])
def test_a_nul_in_a_delivery_id_is_400(served: Served, method: str, suffix: str) -> None:
    assert_400(served.raw(method, f"/deliveries/abc%00def{suffix}"), "invalid_delivery_id")
    unknown = served.raw(method, f"/deliveries/{'x' * 3000}{suffix}")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "status": "ERROR",
        "error": "not_found",
        "description": "No such delivery",
    }


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "%00",
        cursor_of("0001-01-01T00:00:00+05:00", "x"),  # a time UTC cannot hold
        cursor_of("9999-12-31T23:59:59-05:00", "x"),
        cursor_of("2025-03-01T12:00:00+00:00", "a\x00b"),  # an id PostgreSQL cannot hold
        cursor_of("2025-03-01T12:00:00", "x"),  # naive
        cursor_of(ECHO, "x"),
        base64.urlsafe_b64encode(b'["2025-03-01T12:00:00+00:00", 5]').decode(),  # id not text
    ],
    ids=["garbage", "nul", "before-year-1", "after-9999", "nul-id", "naive", "echo", "int-id"],
)
def test_an_unusable_cursor_is_400(served: Served, cursor: str) -> None:
    if cursor == "%00":
        answer = served.raw("GET", f"/deliveries?cursor={cursor}")
    else:
        answer = served.get("/deliveries", cursor=cursor)
    assert assert_400(answer, "invalid_cursor")["description"] == "Invalid cursor"


def test_a_cursor_at_year_1_works(served: Served) -> None:
    answer = served.get("/deliveries", cursor=cursor_of("0001-01-01T00:00:00+00:00", "x"))
    assert answer.status_code == 200 and answer.json()["deliveries"] == []


# -- the rest of the shape ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["maybe", "2", f"{ECHO}"])
def test_an_unusable_payload_flag_is_400(served: Served, value: str) -> None:
    body = assert_400(served.get(f"/deliveries/{BIGGEST}", payload=value), "invalid_payload")
    assert body["description"] == "payload must be true or false"


def test_an_unknown_state_is_400_with_its_code(served: Served) -> None:
    body = assert_400(served.get("/deliveries", state=f"{ECHO}"), "invalid_state")
    assert body["description"].startswith("state must be one of")


def test_the_token_is_checked_before_the_values(served: Served) -> None:
    answer = served.get("/deliveries", token=None, installation_id=str(10**30), limit="0")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {
        "status": "ERROR",
        "error": "unauthorized",
        "description": "A valid bearer token is required",
    }


def test_the_users_own_routes_keep_fastapis_422(served: Served) -> None:
    answer = httpx.get(f"{served.url}/mine", params={"n": "abc"}, timeout=30)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "n"]
    # The webhook route answers as it always did (docs/webhooks.md): unsigned is 401.
    webhook = httpx.post(f"{served.url}/webhooks/github/", content=b"{}", timeout=30)
    assert webhook.status_code == 401


def test_a_store_that_is_down_is_503_with_its_code(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    _, web = build(f"sqlite:///{blocker}/store.sqlite", tmp_path / "data")
    with serve(web) as base:
        answer = httpx.get(
            f"{base}{PREFIX}/runs", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
    assert answer.status_code == 503, answer.text
    assert answer.json() == {
        "status": "ERROR",
        "error": "store_unavailable",
        "description": "The delivery store is unavailable",
    }
    assert str(blocker) not in answer.text


@pytest.mark.parametrize("value", [str(10**30), str(INT64_MIN - 1), "abc"])
def test_the_cli_refuses_an_installation_beyond_64_bits(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # ``ghapp-celery deliveries list --installation 10^30`` was an OverflowError traceback.
    from ghapp_celery.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["deliveries", "list", "--installation", value])
    assert exited.value.code == 2
    assert "--installation" in capsys.readouterr().err


def test_the_openapi_schema_shows_the_answers_the_api_gives(served: Served) -> None:
    # Served over HTTP as a user's API client generator reads it.
    schema = httpx.get(f"{served.url}/openapi.json", timeout=30).json()
    status_paths = {path: ops for path, ops in schema["paths"].items() if path.startswith(PREFIX)}
    assert len(status_paths) >= 3
    for path, operations in status_paths.items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert "422" not in answers, (path, method)
            for code in ("4XX", "503"):
                ref = answers[code]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/StatusErrorBody"), (path, method, code)
    body = schema["components"]["schemas"]["StatusErrorBody"]
    assert set(body["properties"]) == {"status", "error", "description"}
    # The user's own route keeps FastAPI's 422 in the schema, as in its answers.
    assert "422" in schema["paths"]["/mine"]["get"]["responses"]
