"""A delivery's later traces link to its first: a GitHub redelivery's webhook span, a replay's
and a sweep's publish span carry a span Link to the trace the delivery came in with, whose
traceparent the store keeps (deliveries.trace_parent).

Real parts as in test_tracing.py: a signed delivery to a real uvicorn, a real threads-pool
worker, and the spans both export over OTLP/HTTP to a receiver on loopback, flushed when they
shut down. The sweeper's case runs in one process with an in-memory exporter: nothing
consumes the queued run, so the sweep finds it queued too long.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ghapp_celery import GitHubApp
from ghapp_celery.testing import FakeGitHub
from tests._otlp import OtlpReceiver, ReceivedSpan
from tests._workers import CeleryWorker
from tests.test_background import QUEUES, issue, make_app, only_run, post, wait_for
from tests.test_tracing import CONSUMER, PRODUCER, SERVER, app_env, otel_env, run_script, uvicorn

TOKEN = "status-token-for-trace-links"
PREFIX = "/webhooks/github/status"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    github = FakeGitHub()
    with github.serve():
        yield github


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


@contextlib.contextmanager
def traced_app(
    fake: FakeGitHub, receiver: OtlpReceiver, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[GitHubApp, str]]:
    """A traced uvicorn (with the status API) and a traced threads-pool worker; yields this
    process's app (it reads the store, traces nothing) and the server's URL. Both processes
    have stopped, and so flushed their spans, once the block is left."""
    env = {**app_env(fake, tmp), "GITHUBAPP_STATUS_TOKEN": TOKEN}
    app = make_app(monkeypatch, env)
    traced_env = {**env, **otel_env(receiver)}
    worker = CeleryWorker(
        "tests.bgapp:celery",
        env["CELERY_BROKER_URL"],
        tmp / "w",
        pool="threads",
        concurrency=2,
        queue=QUEUES,
        env=traced_env,
    )
    with worker:
        served, url = uvicorn(tmp, traced_env)
        with served:
            yield app, url


def failed_once(app: GitHubApp, url: str) -> tuple[bytes, dict[str, str], str]:
    """Deliver issues.unlabeled, whose handler fails for good (a 422), and wait for it."""
    body, headers, delivery_id = issue("unlabeled")
    answer = post(url, body, headers)
    assert answer.status_code == 202, answer.text
    run = only_run(wait_for(app, delivery_id))
    assert run.state.value == "failed" and run.attempts == 1, run
    return body, headers, delivery_id


def rerun(app: GitHubApp, delivery_id: str) -> None:
    """Wait until the delivery's run has run a second time."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = only_run(wait_for(app, delivery_id))
        if run.attempts == 2:
            assert run.state.value == "failed", run
            return
        time.sleep(0.1)
    raise AssertionError(f"delivery {delivery_id} did not run again")


def spans_of(receiver: OtlpReceiver, delivery_id: str, webhooks: int) -> list[ReceivedSpan]:
    def mine(s: ReceivedSpan) -> bool:
        return s.attributes.get("github.delivery.id") == delivery_id

    return [
        s
        for s in receiver.wait_for(
            lambda got: (
                len([s for s in got if mine(s) and s.name.startswith("github.webhook")]) >= webhooks
                and len([s for s in got if mine(s) and s.kind == CONSUMER]) >= 2
            )
        )
        if mine(s) or s.kind == SERVER
    ]


def first_webhook(spans: list[ReceivedSpan]) -> ReceivedSpan:
    webhooks = [s for s in spans if s.name.startswith("github.webhook") and not s.linked]
    assert len(webhooks) == 1, [(s.name, s.linked) for s in spans]
    return webhooks[0]


def names(traceparent: str | None, trace_id: str, span_id: str) -> bool:
    """Whether ``traceparent`` is W3C text naming that span (any flags: the SDK sets the
    sampled and the random-trace-id bits)."""
    assert traceparent is not None and len(traceparent) == 55, traceparent
    version, trace, span, _flags = traceparent.split("-")
    return (version, trace, span) == ("00", trace_id, span_id)


def test_a_github_redelivery_links_its_webhook_span_to_the_first_trace(
    fake: FakeGitHub, receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with traced_app(fake, receiver, tmp_path, monkeypatch) as (app, url):
        body, headers, delivery_id = failed_once(app, url)
        # GitHub's "Redeliver": the same request, X-GitHub-Delivery included. The failed
        # run is re-armed and runs again.
        again = post(url, body, headers)
        assert again.status_code == 202, again.text
        rerun(app, delivery_id)
        record = app.store.get_delivery(delivery_id, with_payload=False)
        assert record is not None and record.redeliveries == 1
    spans = spans_of(receiver, delivery_id, webhooks=2)

    first = first_webhook(spans)
    (second,) = [s for s in spans if s.name.startswith("github.webhook") and s is not first]
    assert second.trace_id != first.trace_id  # a request of its own: a trace of its own
    assert second.linked == ((first.trace_id, first.span_id),)
    assert second.link_attributes == ({"ghapp.link": "original_delivery"},)
    assert second.attributes["github.redelivery"] is True
    # The store kept the first webhook span's context, not the redelivery's.
    assert names(record.trace_parent, first.trace_id, first.span_id)
    # The re-armed run was published and ran in the redelivery's trace.
    publishes = [s for s in spans if s.kind == PRODUCER]
    assert {s.trace_id for s in publishes} == {first.trace_id, second.trace_id}
    (republish,) = [s for s in publishes if s.trace_id == second.trace_id]
    assert republish.parent_id == second.span_id
    assert "ghapp.republish.reason" not in republish.attributes  # a redelivery, not a replay
    (run,) = [s for s in spans if s.kind == CONSUMER and s.trace_id == second.trace_id]
    assert run.parent_id == republish.span_id
    assert run.attributes["ghapp.run.outcome"] == "failed"


def test_a_replay_is_a_new_trace_linked_to_the_first(
    fake: FakeGitHub, receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with traced_app(fake, receiver, tmp_path, monkeypatch) as (app, url):
        _, _, delivery_id = failed_once(app, url)
        answer = httpx.post(
            f"{url}{PREFIX}/deliveries/{delivery_id}/replay",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        assert len(answer.json()["replayed"]) == 1
        rerun(app, delivery_id)
        record = app.store.get_delivery(delivery_id, with_payload=False)
    spans = spans_of(receiver, delivery_id, webhooks=1)

    first = first_webhook(spans)
    assert record is not None and names(record.trace_parent, first.trace_id, first.span_id)
    (replayed,) = [s for s in spans if s.kind == PRODUCER and s.trace_id != first.trace_id]
    assert replayed.attributes["ghapp.republish.reason"] == "replay"
    assert replayed.linked == ((first.trace_id, first.span_id),)
    # Under the status API request that asked for it: its trace's root is FastAPI's server
    # span of that request (its endpoint span in between).
    by_id = {s.span_id: s for s in receiver.received() if s.trace_id == replayed.trace_id}
    request = replayed
    while request.parent_id is not None:
        request = by_id[request.parent_id]
    assert request.kind == SERVER and request.name.endswith("/deliveries/{delivery_id}/replay")
    (run,) = [s for s in spans if s.kind == CONSUMER and s.trace_id == replayed.trace_id]
    assert run.parent_id == replayed.span_id
    assert run.attributes["ghapp.run.outcome"] == "failed"


SWEEP = """
import json, time
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.payloads import load_payload

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
app = bgapp.github_app
with TestClient(bgapp.github_app.web) as client:
    for name, payload, delivery_id in [
        ("issues", load_payload("issues/opened.json"), "queued-1"),
        ("ping", {"zen": "z", "hook_id": 9}, "ping-1"),
    ]:
        data, headers = signed_request(name, payload, secret="s", delivery_id=delivery_id)
        assert client.post("/webhooks/github/", content=data, headers=headers).is_success
time.sleep(0.05)  # GITHUBAPP_SWEEP_QUEUED_AFTER: no worker started it, the sweep is due
report = app.sweep()
hex = lambda c: [f"{c.trace_id:032x}", f"{c.span_id:016x}"]
print(json.dumps({
    "republished": len(report.republished),
    "stored": {d: app.store.get_delivery(d, with_payload=False).trace_parent
               for d in ("queued-1", "ping-1")},
    "spans": [
        {"name": s.name, "context": hex(s.context), "parent": s.parent and hex(s.parent),
         "attributes": dict(s.attributes or {}),
         "links": [[*hex(link.context), dict(link.attributes or {})] for link in s.links]}
        for s in exporter.get_finished_spans()
    ],
}))
"""


def test_a_sweep_republishes_in_a_new_trace_linked_to_the_first(tmp_path: Path) -> None:
    result = run_script(tmp_path, SWEEP, {"GITHUBAPP_SWEEP_QUEUED_AFTER": "0.01"})
    spans = result["spans"]
    webhook = {
        s["attributes"]["github.delivery.id"]: s
        for s in spans
        if s["name"].startswith("github.webhook")
    }
    trace_id, span_id = webhook["queued-1"]["context"]
    # Each delivery kept its webhook span's traceparent, the inline-handled ping's too.
    for delivery_id, span in webhook.items():
        assert names(result["stored"][delivery_id], *span["context"])
    assert result["republished"] == 1
    swept = [s for s in spans if s["attributes"].get("ghapp.republish.reason")]
    assert len(swept) == 1, [s["name"] for s in spans]
    assert swept[0]["name"] == "publish github.issues.opened:tests.bgapp.opened"
    assert swept[0]["attributes"]["ghapp.republish.reason"] == "not_started"
    assert swept[0]["parent"] is None and swept[0]["context"][0] != trace_id  # a new root
    assert swept[0]["links"] == [[trace_id, span_id, {"ghapp.link": "original_delivery"}]]


UNTRACED = """
import json
from tests.payloads import load_payload
from ghapp_celery.observability import tracing

with TestClient(bgapp.github_app.web) as client:
    data, headers = signed_request("issues", load_payload("issues/opened.json"), secret="s",
                                   delivery_id="untraced-1")
    assert client.post("/webhooks/github/", content=data, headers=headers).status_code == 202
    assert client.post("/webhooks/github/", content=data, headers=headers).status_code == 200
record = bgapp.github_app.store.get_delivery("untraced-1", with_payload=False)
print(json.dumps({"enabled": tracing.enabled, "stored": record.trace_parent,
                  "redeliveries": record.redeliveries}))
"""


def test_without_tracing_no_trace_parent_is_stored(tmp_path: Path) -> None:
    result = run_script(tmp_path, UNTRACED)
    assert result == {"enabled": False, "stored": None, "redeliveries": 1}
