"""Prometheus metrics of one app, scraped over real HTTP from its /metrics route.

The app is served by uvicorn on loopback, deliveries are signed as GitHub signs them, the
background handlers run in a Celery worker (threads pool, the test kit's) and call a
FakeGitHub. The real Prometheus server scraping web and prefork worker processes is in
tests/test_prometheus.py; this file checks each series' values and labels, the token, and that
an app without metrics imports nothing of prometheus_client.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ghapp_celery import Event, GitHubApp, RetryPolicy
from ghapp_celery.config import Settings
from ghapp_celery.exceptions import ConfigurationError, GitHubAppError
from ghapp_celery.observability import metrics
from ghapp_celery.testing import AppFactory, Deliveries, FakeGitHub, background_worker
from ghapp_celery.testing import serve_webhooks as serve_app
from tests.test_operator_kit import METRICS as OPERATOR_KIT_METRICS

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def families(url: str) -> set[str]:
    text = httpx.get(url, timeout=10).text
    # prometheus-client's text format adds a "<name>_created" gauge family per counter and
    # histogram (unless PROMETHEUS_DISABLE_CREATED_SERIES is set): not series of ours.
    names = {f.name for f in text_string_to_metric_families(text)}
    return {n for n in names if n.startswith("ghapp_") and not n.endswith("_created")}


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample of that name and exactly those labels; 0 when it is not there."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of that name whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


@pytest.fixture
def metrics_off_after() -> Iterator[None]:
    """Metrics are per process: take ours out of the default registry after the test."""
    metrics.disable()
    yield
    metrics.disable()


def build(factory: AppFactory, fake: FakeGitHub, **settings: Any) -> GitHubApp:
    repo = fake.add_repo("octo/hello", issues=3)
    assert repo is not None

    def setup(app: GitHubApp) -> None:
        @app.on("issues.opened", background=True)
        async def comment(event: Event) -> None:
            number = event.payload["issue"]["number"]
            await event.github.post(
                f"/repos/octo/hello/issues/{number}/comments", json={"body": "hi"}
            )

        @app.on("issues.closed", background=True, retry=RetryPolicy(max_retries=0))
        def refuses(event: Event) -> None:
            raise GitHubAppError("GitHub answered 422", status=422)

        @app.on(
            "issues.labeled", background=True, retry=RetryPolicy(max_retries=1, retry_backoff=0)
        )
        def always_502(event: Event) -> None:
            raise GitHubAppError("GitHub answered 502", status=502)

        @app.on("ping")
        def pong() -> str:
            return "pong"

    options = {"data_dir": factory.data_dir / "app", "metrics_enabled": True, **settings}
    return factory(setup=setup, settings=Settings(**options))


def issue(number: int) -> dict[str, Any]:
    return {"issue": {"number": number}, "repository": {"full_name": "octo/hello"}}


def test_the_scrape_counts_answers_runs_and_github_calls(
    ghapp_app_factory: AppFactory, ghapp_fake_github: FakeGitHub, metrics_off_after: None
) -> None:
    app = build(ghapp_app_factory, ghapp_fake_github)
    web = ghapp_app_factory.web_of(app)
    deliveries = Deliveries(app)
    with (
        serve_app(web, ghapp_app_factory.secret, fake=ghapp_fake_github) as client,
        background_worker(app),
    ):
        sent = [client.post("issues", issue(n), action="opened") for n in (1, 2, 3)]
        sent.append(client.post("issues", issue(1), action="closed"))
        sent.append(client.post("issues", issue(1), action="labeled"))
        assert [p.status_code for p in sent] == [202] * 5
        assert client.post("ping", {"zen": "hi"}).status_code == 200
        # An unsigned request naming an event nobody has: refused, and counted as "unknown".
        odd = httpx.post(
            client.url,
            content=b"{}",
            headers={
                "X-GitHub-Event": f"made-up-{uuid.uuid4()}",
                "Content-Type": "application/json",
            },
        )
        assert odd.status_code == 401
        for posted in sent:
            deliveries.wait(posted.delivery_id)
        samples = scrape(client.url.replace("/webhooks/github/", "/metrics"))
        exported = families(client.url.replace("/webhooks/github/", "/metrics"))

    # What the operator kit's rules and dashboard may name is exactly what the app exports.
    assert exported == set(OPERATOR_KIT_METRICS)
    deliveries_total = "ghapp_webhook_deliveries_total"
    assert value(samples, deliveries_total, event="issues", code="202") == 5
    assert value(samples, deliveries_total, event="ping", code="200") == 1
    assert value(samples, deliveries_total, event="unknown", code="401") == 1
    assert total(samples, deliveries_total) == 7  # no series named after the made-up event
    assert value(samples, "ghapp_webhook_ack_seconds_count") == 7
    assert value(samples, "ghapp_webhook_ack_seconds_bucket", le="10.0") == 7

    runs = "ghapp_runs_total"
    comment = next(n for n in app.celery.tasks if n.endswith(".comment"))
    assert value(samples, runs, task=comment, queue="github.issues", state="queued") == 3
    assert value(samples, runs, task=comment, queue="github.issues", state="started") == 3
    assert value(samples, runs, task=comment, queue="github.issues", state="succeeded") == 3
    assert total(samples, runs, state="failed") == 1
    assert total(samples, runs, state="dead") == 1
    assert total(samples, runs, state="retrying") == 1  # always_502's one retry
    assert total(samples, runs, state="started") == 3 + 1 + 2
    assert value(samples, "ghapp_run_duration_seconds_count", task=comment) == 3
    # One queue wait per first start (the retry's wait is its countdown, not a queue's).
    assert value(samples, "ghapp_run_queue_wait_seconds_count", queue="github.issues") == 5

    # Three comments and the token they needed, minted once and shared.
    assert value(samples, "ghapp_token_mints_total") == 1
    assert value(samples, "ghapp_github_requests_total", status_class="2xx") == 4
    remaining = value(samples, "ghapp_github_rate_limit_remaining", resource="core")
    assert value(samples, "ghapp_github_rate_limit_limit", resource="core") == 5000
    assert 0 < remaining < 5000

    # The store's gauges: nothing waits, one run is dead.
    assert value(samples, "ghapp_store_read_ok") == 1
    assert value(samples, "ghapp_queue_depth", queue="github.issues") == 0
    assert value(samples, "ghapp_runs_dead") == 1


def test_queue_gauges_show_what_waits_without_a_worker(
    ghapp_app_factory: AppFactory, ghapp_fake_github: FakeGitHub, metrics_off_after: None
) -> None:
    app = build(ghapp_app_factory, ghapp_fake_github)
    web = ghapp_app_factory.web_of(app)
    with serve_app(web, ghapp_app_factory.secret, fake=ghapp_fake_github) as client:
        for n in (1, 2):
            assert client.post("issues", issue(n), action="opened").status_code == 202
        time.sleep(1.1)
        samples = scrape(client.url.replace("/webhooks/github/", "/metrics"))
    assert value(samples, "ghapp_queue_depth", queue="github.issues") == 2
    assert value(samples, "ghapp_queue_oldest_age_seconds", queue="github.issues") >= 1.0
    assert ("ghapp_runs_in_flight", (("queue", "github.issues"),)) in samples
    assert value(samples, "ghapp_runs_in_flight", queue="github.issues") == 0
    assert value(samples, "ghapp_runs_dead") == 0


def test_the_sweeper_counts_what_it_republished_by_reason(
    ghapp_app_factory: AppFactory, ghapp_fake_github: FakeGitHub, metrics_off_after: None
) -> None:
    app = build(ghapp_app_factory, ghapp_fake_github, sweep_unpublished_after=0)
    web = ghapp_app_factory.web_of(app)
    with serve_app(web, ghapp_app_factory.secret, fake=ghapp_fake_github) as client:
        posted = client.post("issues", issue(1), action="opened")
        assert posted.status_code == 202
        run = posted.json()["runs"][0]["id"]
        app.store.mark_unpublished([run])  # as if the broker had refused the publish
        report = app.sweep()
        assert report.republished == [run]
        samples = scrape(client.url.replace("/webhooks/github/", "/metrics"))
    assert value(samples, "ghapp_sweeper_republished_total", reason="unpublished") == 1
    assert total(samples, "ghapp_sweeper_republished_total") == 1


def test_a_scrape_must_bring_the_status_token_when_asked(
    ghapp_app_factory: AppFactory, ghapp_fake_github: FakeGitHub, metrics_off_after: None
) -> None:
    app = build(
        ghapp_app_factory,
        ghapp_fake_github,
        metrics_require_token=True,
        status_token="scrape-token",
        metrics_path="/internal/metrics",
    )
    web = ghapp_app_factory.web_of(app)
    with serve_app(web, ghapp_app_factory.secret, fake=ghapp_fake_github) as client:
        url = client.url.replace("/webhooks/github/", "/internal/metrics")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-token"}):
            refused = httpx.get(url, headers=headers, timeout=10)
            assert refused.status_code == 401
            assert "ghapp_" not in refused.text
            assert refused.json()["error"] == "unauthorized"
        samples = scrape(url, {"Authorization": "Bearer scrape-token"})
        assert ("ghapp_store_read_ok", ()) in samples
        assert httpx.get(client.url.replace("/webhooks/github/", "/metrics")).status_code == 404


def test_asking_for_a_token_without_one_stops_the_app_at_init(
    ghapp_app_factory: AppFactory, ghapp_fake_github: FakeGitHub, metrics_off_after: None
) -> None:
    with pytest.raises(ConfigurationError, match="GITHUBAPP_STATUS_TOKEN"):
        build(ghapp_app_factory, ghapp_fake_github, metrics_require_token=True)


def test_per_installation_labels_only_when_asked(
    ghapp_app_factory: AppFactory, ghapp_fake_github: FakeGitHub, metrics_off_after: None
) -> None:
    app = build(ghapp_app_factory, ghapp_fake_github, metrics_per_installation=True)
    web = ghapp_app_factory.web_of(app)
    with (
        serve_app(web, ghapp_app_factory.secret, fake=ghapp_fake_github) as client,
        background_worker(app),
    ):
        posted = client.post("issues", issue(1), action="opened")
        Deliveries(app).wait(posted.delivery_id)
        samples = scrape(client.url.replace("/webhooks/github/", "/metrics"))
    installation = str(ghapp_fake_github.installation_ids[0])
    labelled = [ls for (n, ls) in samples if n == "ghapp_github_rate_limit_remaining"]
    assert (("installation", installation), ("resource", "core")) in labelled
    assert all(dict(ls).get("installation") for ls in labelled)


OFF = """
import sys
from fastapi.testclient import TestClient
from ghapp_celery import GitHubApp
from fastapi import FastAPI
web = FastAPI()
app = GitHubApp(web)
app.on("ping")(lambda: "pong")
from ghapp_celery.webhooks import signed_request
body, headers = signed_request("ping", {"zen": "z"}, secret="unchecked")
with TestClient(web) as client:
    assert client.post("/webhooks/github/", content=body, headers=headers).status_code == 200
    assert client.get("/metrics").status_code == 404
loaded = sorted(m for m in sys.modules if m.startswith(("prometheus_client", "opentelemetry.sdk")))
print("LOADED", loaded)
"""


def test_an_app_without_metrics_imports_no_prometheus_client(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", OFF],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "GITHUBAPP_DATA_DIR": str(tmp_path / "data")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout, done.stdout


def test_a_run_executing_counts_in_flight_until_it_ends(
    ghapp_app_factory: AppFactory, ghapp_fake_github: FakeGitHub, metrics_off_after: None
) -> None:
    running, release = threading.Event(), threading.Event()

    def setup(app: GitHubApp) -> None:
        @app.on("issues.edited", background=True)
        def holds(event: Event) -> None:
            running.set()
            release.wait(30)

    settings = Settings(data_dir=ghapp_app_factory.data_dir / "app", metrics_enabled=True)
    app = ghapp_app_factory(setup=setup, settings=settings)
    web = ghapp_app_factory.web_of(app)
    metrics_url = ""
    with (
        serve_app(web, ghapp_app_factory.secret, fake=ghapp_fake_github) as client,
        background_worker(app),
    ):
        metrics_url = client.url.replace("/webhooks/github/", "/metrics")
        posted = client.post("issues", issue(1), action="edited")
        assert running.wait(30)
        during = scrape(metrics_url)
        release.set()
        Deliveries(app).wait(posted.delivery_id)
        time.sleep(5.1)  # past the store reading's 5 s reuse
        after = scrape(metrics_url)
    assert value(during, "ghapp_runs_in_flight", queue="github.issues") == 1
    assert value(during, "ghapp_queue_depth", queue="github.issues") == 0
    assert value(after, "ghapp_runs_in_flight", queue="github.issues") == 0
