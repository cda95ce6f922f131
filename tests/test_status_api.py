"""The status API over real HTTP: uvicorn -> FastAPI -> the store, with a real worker.

Deliveries are posted signed to the webhook route, run by a threads worker on the embedded
SQLite broker, and then read back the way an operator would: GET /deliveries with each filter
and a cursor, GET /deliveries/{id} (with and without the payload), GET /runs, and POST
/deliveries/{id}/replay. The store behind the API is this module's own, so counts are exact.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from ghapp_celery import GitHubApp
from ghapp_celery.testing import serve
from ghapp_celery.webhooks import signed_request
from tests._workers import CeleryWorker, sqlite_broker_url
from tests.payloads import load_payload
from tests.test_background import QUEUES, SECRET, environment, make_app

TOKEN = "status-token-for-tests"
PREFIX = "/webhooks/github/status"
FINAL = {"succeeded", "failed", "dead"}


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Status:
    """A small client for the status API of one served app."""

    def __init__(self, url: str, prefix: str = PREFIX) -> None:
        self.url = url
        self.base = f"{url}{prefix}"

    def get(self, path: str, *, token: str | None = TOKEN, **params: Any) -> httpx.Response:
        headers = auth(token) if token is not None else {}
        return httpx.get(f"{self.base}{path}", params=params, headers=headers, timeout=30)

    def post(self, path: str, *, token: str | None = TOKEN) -> httpx.Response:
        headers = auth(token) if token is not None else {}
        return httpx.post(f"{self.base}{path}", headers=headers, timeout=30)

    def listing(self, **params: Any) -> dict[str, Any]:
        response = self.get("/deliveries", **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ids(self, **params: Any) -> list[str]:
        return [item["id"] for item in self.listing(**params)["deliveries"]]

    def delivery(self, delivery_id: str, **params: Any) -> dict[str, Any]:
        response = self.get(f"/deliveries/{delivery_id}", **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_final(self, delivery_id: str, timeout: float = 60.0, **match: Any) -> dict[str, Any]:
        """Poll the API until every run has ended (and matches ``match``, e.g. attempts=2)."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.delivery(delivery_id)
            runs = body["runs"]
            if (
                runs
                and all(run["state"] in FINAL for run in runs)
                and all(run[k] == v for run in runs for k, v in match.items())
            ):
                return body
            time.sleep(0.1)
        raise AssertionError(f"delivery {delivery_id} did not end: {body}")


def webhook(
    url: str, event: str, payload: dict[str, Any], delivery_id: str | None = None
) -> tuple[str, httpx.Response]:
    delivery_id = delivery_id or str(uuid.uuid4())
    body, headers = signed_request(event, payload, secret=SECRET, delivery_id=delivery_id)
    response = httpx.post(f"{url}/webhooks/github/", content=body, headers=headers, timeout=30)
    return delivery_id, response


def issue_payload(action: str, installation_id: int, title: str | None = None) -> dict[str, Any]:
    payload = load_payload("issues/opened.json")
    payload["action"] = action
    payload["installation"] = {"id": installation_id}
    if title is not None:
        payload["issue"]["title"] = title
    return payload


def push_payload(installation_id: int) -> dict[str, Any]:
    payload = load_payload("push/default.with-installation.json")
    payload["installation"] = {"id": installation_id}
    return payload


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("status")
    return {
        **environment(tmp, sqlite_broker_url(tmp / "broker.sqlite")),
        "GITHUBAPP_STATUS_TOKEN": TOKEN,
    }


@pytest.fixture(scope="module")
def worker(env: dict[str, str]) -> Iterator[CeleryWorker]:
    # The worker needs no status token; it shares the store and broker with the web app.
    worker_env = {k: v for k, v in env.items() if k != "GITHUBAPP_STATUS_TOKEN"}
    with CeleryWorker(
        "tests.bgapp:celery",
        env["CELERY_BROKER_URL"],
        Path(env["GITHUBAPP_DATA_DIR"]).parent / "workers",
        pool="threads",
        concurrency=4,
        queue=QUEUES,
        env=worker_env,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def served(env: dict[str, str], worker: CeleryWorker) -> Iterator[tuple[GitHubApp, Status]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        app = make_app(monkeypatch, env)
        with serve(app.web) as url:  # type: ignore[attr-defined]
            yield app, Status(url)


@pytest.fixture(scope="module")
def sample(served: tuple[GitHubApp, Status]) -> dict[str, Any]:
    """Deliveries of known kinds, all ended: the data the listing tests filter.

    installation 501: two issues.opened (succeeded); 502: one issues.unlabeled (failed, 422);
    503: one push (succeeded, on github.bulk). Posted in this order, so newest first is the
    reverse.
    """
    _, status = served
    posted: list[tuple[str, str, int]] = []
    for event, payload, installation in [
        ("issues", issue_payload("opened", 501, "secret-looking title 1"), 501),
        ("issues", issue_payload("opened", 501, "secret-looking title 2"), 501),
        ("issues", issue_payload("unlabeled", 502), 502),
        ("push", push_payload(503), 503),
    ]:
        delivery_id, response = webhook(status.url, event, payload)
        assert response.status_code == 202, response.text
        posted.append((delivery_id, event, installation))
    for delivery_id, _, _ in posted:
        status.wait_final(delivery_id)
    return {
        "ids": [d for d, _, _ in posted],
        "opened": [posted[0][0], posted[1][0]],
        "failed": posted[2][0],
        "push": posted[3][0],
    }


# -- mounting and the token --------------------------------------------------------------------


def test_no_token_means_no_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(tmp_path, sqlite_broker_url(tmp_path / "broker.sqlite"))
    monkeypatch.delenv("GITHUBAPP_STATUS_TOKEN", raising=False)
    app = make_app(monkeypatch, env)
    with serve(app.web) as url:  # type: ignore[attr-defined]
        for path in ("/deliveries", "/runs", "/deliveries/x"):
            response = httpx.get(f"{url}{PREFIX}{path}", headers=auth(), timeout=30)
            assert response.status_code == 404, (path, response.text)
        response = httpx.post(f"{url}{PREFIX}/deliveries/x/replay", headers=auth(), timeout=30)
        assert response.status_code in (404, 405)
        # Not hidden behind a 401 either: the routes do not exist.
        paths = [getattr(route, "path", "") for route in app.web.routes]  # type: ignore[attr-defined]
        assert not [path for path in paths if path.startswith(PREFIX)]


def test_an_empty_token_also_means_no_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(tmp_path, sqlite_broker_url(tmp_path / "broker.sqlite"))
    app = make_app(monkeypatch, {**env, "GITHUBAPP_STATUS_TOKEN": ""})
    with serve(app.web) as url:  # type: ignore[attr-defined]
        assert httpx.get(f"{url}{PREFIX}/runs", timeout=30).status_code == 404


def test_the_prefix_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(tmp_path, sqlite_broker_url(tmp_path / "broker.sqlite"))
    app = make_app(
        monkeypatch,
        {**env, "GITHUBAPP_STATUS_TOKEN": TOKEN, "GITHUBAPP_STATUS_PREFIX": "/ops/github/"},
    )
    with serve(app.web) as url:  # type: ignore[attr-defined]
        moved = Status(url, "/ops/github")
        assert moved.get("/runs").status_code == 200
        assert Status(url).get("/runs").status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"X-Token": TOKEN},
    ],
    ids=["none", "bare", "wrong", "longer", "shorter", "basic", "no-scheme", "other"],
)
def test_without_the_right_bearer_token_every_route_is_401(
    served: tuple[GitHubApp, Status], headers: dict[str, str]
) -> None:
    _, status = served
    for method, path in [
        ("GET", "/deliveries"),
        ("GET", "/deliveries/whatever"),
        ("GET", "/runs"),
        ("POST", "/deliveries/whatever/replay"),
    ]:
        response = httpx.request(method, f"{status.base}{path}", headers=headers, timeout=30)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in response.text


def test_the_scheme_is_case_insensitive(served: tuple[GitHubApp, Status]) -> None:
    _, status = served
    response = httpx.get(
        f"{status.base}/runs", headers={"Authorization": f"bearer {TOKEN}"}, timeout=30
    )
    assert response.status_code == 200


# -- listing, filters, pagination --------------------------------------------------------------


def test_listing_is_newest_first_with_runs_and_no_payload(
    served: tuple[GitHubApp, Status], sample: dict[str, Any]
) -> None:
    _, status = served
    body = status.listing(limit=500)
    ids = [item["id"] for item in body["deliveries"]]
    assert ids[: len(sample["ids"])] == list(reversed(sample["ids"]))
    assert body["next_cursor"] is None
    push = body["deliveries"][0]
    assert push["event"] == "push" and push["installation_id"] == 503
    assert push["state"] == "succeeded" and push["redeliveries"] == 0
    assert [(r["queue"], r["state"], r["attempts"]) for r in push["runs"]] == [
        ("github.bulk", "succeeded", 1)
    ]
    assert push["runs"][0]["task_name"] == "github.push:tests.bgapp.noop"
    assert datetime.fromisoformat(push["received_at"]).tzinfo is not None
    for item in body["deliveries"]:
        assert "payload" not in item
    # Nothing from the payloads, and no secret, leaks into a listing.
    assert "secret-looking title" not in str(body)
    assert SECRET not in str(body) and TOKEN not in str(body)


def test_filter_by_event(served: tuple[GitHubApp, Status], sample: dict[str, Any]) -> None:
    _, status = served
    assert status.ids(event="push") == [sample["push"]]
    issues = status.ids(event="issues", limit=500)
    assert set(sample["opened"]) | {sample["failed"]} <= set(issues)
    assert sample["push"] not in issues
    assert status.ids(event="no_such_event") == []


def test_filter_by_state(served: tuple[GitHubApp, Status], sample: dict[str, Any]) -> None:
    _, status = served
    failed = status.listing(state="failed", limit=500)["deliveries"]
    assert sample["failed"] in [item["id"] for item in failed]
    assert all(item["state"] == "failed" for item in failed)
    (run,) = next(item for item in failed if item["id"] == sample["failed"])["runs"]
    assert run["state"] == "failed" and "422" in run["last_error"]
    succeeded = status.ids(state="succeeded", limit=500)
    assert {*sample["opened"], sample["push"]} <= set(succeeded)
    assert sample["failed"] not in succeeded
    assert status.ids(state="dead", installation_id=502) == []


@pytest.mark.parametrize("state", ["done", "SUCCEEDED", "started", "retrying", ""])
def test_an_invalid_state_is_400(served: tuple[GitHubApp, Status], state: str) -> None:
    # Run states that are not delivery states (started, retrying) are refused too.
    _, status = served
    response = status.get("/deliveries", state=state)
    assert response.status_code == 400, response.text
    assert "state must be one of" in response.json()["description"]


def test_filter_by_installation(served: tuple[GitHubApp, Status], sample: dict[str, Any]) -> None:
    _, status = served
    assert status.ids(installation_id=501) == list(reversed(sample["opened"]))
    assert status.ids(installation_id=502) == [sample["failed"]]
    assert status.ids(installation_id=503, event="issues") == []
    assert status.ids(installation_id=999_999) == []
    assert status.get("/deliveries", installation_id="abc").status_code == 400


def test_filter_by_time(served: tuple[GitHubApp, Status], sample: dict[str, Any]) -> None:
    """``since`` is inclusive and ``until`` exclusive, on the stored ``received_at``."""
    _, status = served
    ids = sample["ids"]
    received = {i: status.delivery(i)["received_at"] for i in ids}
    first, second, third, fourth = (received[i] for i in ids)
    assert first <= second <= third <= fourth
    window = status.ids(since=second, until=fourth, limit=500)
    assert ids[1] in window and ids[2] in window
    assert ids[0] not in window and ids[3] not in window
    assert status.ids(since=fourth, limit=500) == [ids[3]]
    assert ids[0] in status.ids(until=second, limit=500)
    assert ids[1] not in status.ids(until=second, limit=500)
    # Any offset is understood: the same instant written in another zone.
    elsewhere = datetime.fromisoformat(fourth).astimezone(timezone(timedelta(hours=-7)))
    assert status.ids(since=elsewhere.isoformat(), limit=500) == [ids[3]]
    later = elsewhere + timedelta(hours=1)
    assert status.ids(since=later.isoformat(), limit=500) == []
    assert status.get("/deliveries", since="not-a-date").status_code == 400
    # A time without an offset is ambiguous and refused rather than guessed.
    assert status.get("/deliveries", since="2024-01-01T00:00:00").status_code == 400


def test_cursor_pagination_walks_every_delivery_once(served: tuple[GitHubApp, Status]) -> None:
    _, status = served
    posted = []
    for _ in range(7):
        delivery_id, response = webhook(status.url, "issues", issue_payload("opened", 601))
        assert response.status_code == 202
        posted.append(delivery_id)
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"installation_id": 601, "limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        body = status.listing(**params)
        pages += 1
        seen += [item["id"] for item in body["deliveries"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(body["deliveries"]) == 3
        assert pages < 10, "pagination does not end"
    assert pages == 3
    assert seen == list(reversed(posted))  # newest first, none twice, none missed
    # A cursor keeps its place while new deliveries arrive (keyset pagination).
    first = status.listing(installation_id=601, limit=3)
    webhook(status.url, "issues", issue_payload("opened", 601))
    again = status.listing(installation_id=601, limit=3, cursor=first["next_cursor"])
    assert [item["id"] for item in again["deliveries"]] == seen[3:6]
    for delivery_id in posted:
        status.wait_final(delivery_id)


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "eyJ4IjogMX0"])
def test_an_invalid_cursor_is_400(served: tuple[GitHubApp, Status], cursor: str) -> None:
    _, status = served
    response = status.get("/deliveries", cursor=cursor)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("limit", [0, -1, 501])
def test_limit_out_of_range_is_400(served: tuple[GitHubApp, Status], limit: int) -> None:
    # 400 as documented, not FastAPI's 422 (tests/test_status_hostile.py has the rest).
    _, status = served
    response = status.get("/deliveries", limit=limit)
    assert response.status_code == 400
    assert response.json() == {
        "status": "ERROR",
        "error": "invalid_limit",
        "description": "limit must be an integer from 1 to 500",
    }


# -- one delivery ------------------------------------------------------------------------------


def test_one_delivery_with_its_runs_and_payload_only_when_asked(
    served: tuple[GitHubApp, Status], sample: dict[str, Any]
) -> None:
    _, status = served
    delivery_id = sample["opened"][0]
    body = status.delivery(delivery_id)
    assert body["id"] == delivery_id and body["event"] == "issues"
    assert body["action"] == "opened" and body["installation_id"] == 501
    assert "payload" not in body
    assert "secret-looking title" not in str(body)
    (run,) = body["runs"]
    assert run["handler"] == "github.issues.opened:tests.bgapp.opened"
    assert (run["state"], run["attempts"], run["queue"]) == ("succeeded", 1, "github.issues")
    assert run["delivery_id"] == delivery_id
    assert run["started_at"] and run["finished_at"] and run["duration_ms"] >= 0
    assert status.delivery(delivery_id, payload="false").get("payload") is None

    with_payload = status.delivery(delivery_id, payload="true")
    assert with_payload["payload"] == issue_payload("opened", 501, "secret-looking title 1")
    assert with_payload["runs"] == body["runs"]
    assert SECRET not in str(with_payload) and TOKEN not in str(with_payload)


def test_an_unknown_delivery_is_404(served: tuple[GitHubApp, Status]) -> None:
    _, status = served
    response = status.get(f"/deliveries/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json() == {
        "status": "ERROR",
        "error": "not_found",
        "description": "No such delivery",
    }


# -- counts ------------------------------------------------------------------------------------


def test_run_counts_per_state(served: tuple[GitHubApp, Status]) -> None:
    _, status = served
    before = status.get("/runs").json()["runs"]
    assert set(before) == {
        "received",
        "queued",
        "started",
        "retrying",
        "succeeded",
        "failed",
        "dead",
    }
    ok, response = webhook(status.url, "issues", issue_payload("opened", 701))
    assert response.status_code == 202
    bad, response = webhook(status.url, "issues", issue_payload("unlabeled", 701))
    assert response.status_code == 202
    status.wait_final(ok)
    status.wait_final(bad)
    after = status.get("/runs").json()["runs"]
    delta = {state: after[state] - before[state] for state in after}
    assert delta["succeeded"] == 1 and delta["failed"] == 1
    assert all(n == 0 for state, n in delta.items() if state not in ("succeeded", "failed"))


# -- replay ------------------------------------------------------------------------------------


def test_replay_runs_a_failed_delivery_again(served: tuple[GitHubApp, Status]) -> None:
    _, status = served
    delivery_id, response = webhook(status.url, "issues", issue_payload("unlabeled", 801))
    assert response.status_code == 202
    (run,) = status.wait_final(delivery_id)["runs"]
    assert (run["state"], run["attempts"]) == ("failed", 1)
    assert delivery_id in status.ids(state="failed", installation_id=801)

    response = status.post(f"/deliveries/{delivery_id}/replay")
    assert response.status_code == 202, response.text
    assert response.json() == {"delivery": delivery_id, "replayed": [run["id"]]}
    (again,) = status.wait_final(delivery_id, attempts=2)["runs"]
    assert again["id"] == run["id"]  # the same run, run once more
    assert (again["state"], again["attempts"]) == ("failed", 2)


def test_replay_of_a_succeeded_delivery_replays_nothing(
    served: tuple[GitHubApp, Status], sample: dict[str, Any]
) -> None:
    _, status = served
    delivery_id = sample["push"]
    response = status.post(f"/deliveries/{delivery_id}/replay")
    assert response.status_code == 202
    assert response.json() == {"delivery": delivery_id, "replayed": []}
    (run,) = status.delivery(delivery_id)["runs"]
    assert (run["state"], run["attempts"]) == ("succeeded", 1)


def test_replay_of_an_unknown_delivery_is_404(served: tuple[GitHubApp, Status]) -> None:
    _, status = served
    assert status.post(f"/deliveries/{uuid.uuid4()}/replay").status_code == 404


def test_replay_without_the_token_changes_nothing(
    served: tuple[GitHubApp, Status], sample: dict[str, Any]
) -> None:
    _, status = served
    delivery_id = sample["failed"]
    before = status.delivery(delivery_id)["runs"]
    response = status.post(f"/deliveries/{delivery_id}/replay", token="nope")
    assert response.status_code == 401
    # A replay re-arms the run before it answers, so an unchanged run now means no replay.
    assert status.delivery(delivery_id)["runs"] == before
