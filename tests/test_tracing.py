"""Tracing end to end: a signed delivery to a real uvicorn, a real worker whose handler calls
FakeGitHub, and the spans both processes export over OTLP/HTTP to a receiver on loopback.

The processes are configured the way an operator would, by the OTEL_* variables alone. The
batch processor's delay is far longer than a test, so every span seen was flushed when its
process shut down: that is the flush being tested too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ghapp_celery.testing import FakeGitHub
from ghapp_celery.webhooks import signed_request
from tests._otlp import OtlpReceiver, ReceivedSpan
from tests._redis import free_port
from tests._served import Served
from tests._workers import REPO_ROOT, CeleryWorker, Pool, sqlite_broker_url
from tests.payloads import load_payload
from tests.test_background import QUEUES, SECRET, environment, make_app, only_run, wait_for

REPO = "Codertocat/Hello-World"
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # the OTLP span kinds


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    github = FakeGitHub()
    github.add_repo(REPO, issues=1)
    with github.serve():
        yield github


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


def app_env(fake: FakeGitHub, tmp: Path) -> dict[str, str]:
    return {
        **environment(tmp, sqlite_broker_url(tmp / "broker.sqlite")),
        "GITHUBAPP_ID": str(fake.app_id),
        "GITHUBAPP_PRIVATE_KEY": fake.private_key_pem.replace("\n", "\\n"),
        "GITHUBAPP_URL": str(fake.base_url),
    }


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        # Nothing is exported on a timer within the test: what arrives was flushed at shutdown.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }


def deliver(url: str, fake: FakeGitHub, action: str) -> str:
    payload = load_payload("issues/opened.json")
    payload["action"] = action
    payload["installation"] = {"id": fake.installation_ids[0]}
    delivery_id = str(uuid.uuid4())
    body, headers = signed_request("issues", payload, secret=SECRET, delivery_id=delivery_id)
    answer = httpx.post(f"{url}/webhooks/github/", content=body, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text
    return delivery_id


def uvicorn(tmp: Path, env: dict[str, str]) -> tuple[Served, str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "tests.bgapp:github_app.web"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    environment = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    served = Served("uvicorn", command, tmp, environment)
    url = f"http://127.0.0.1:{port}"
    served.wait_for_http(f"{url}/ready-probe")
    return served, url


def traced(
    fake: FakeGitHub,
    receiver: OtlpReceiver,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    pool: Pool,
    action: str,
) -> tuple[str, list[ReceivedSpan]]:
    """Deliver one ``issues.<action>`` through uvicorn and a ``pool`` worker, wait for its run
    to end, stop both, and return the delivery id and the spans of its trace."""
    env = app_env(fake, tmp)
    app = make_app(monkeypatch, env)  # this process reads the store; it traces nothing
    traced_env = {**env, **otel_env(receiver)}
    worker = CeleryWorker(
        "tests.bgapp:celery",
        env["CELERY_BROKER_URL"],
        tmp / "w",
        pool=pool,
        concurrency=2,
        queue=QUEUES,
        env=traced_env,
    )
    with worker:
        served, url = uvicorn(tmp, traced_env)
        with served:
            delivery_id = deliver(url, fake, action)
            run = only_run(wait_for(app, delivery_id))
            assert run.state.value == "succeeded", (run.last_error, worker.log_tail())
            # Still batched in both processes: what arrives below, their shutdown flushed.
            assert receiver.received() == []
    spans = receiver.wait_for(
        lambda got: (
            any(s.attributes.get("github.delivery.id") == delivery_id for s in got)
            and any(s.kind == CONSUMER for s in got)
        )
    )
    traces = {s.trace_id for s in spans if s.attributes.get("github.delivery.id") == delivery_id}
    assert len(traces) == 1, traces  # one trace per delivery
    (trace_id,) = traces
    return delivery_id, [s for s in spans if s.trace_id == trace_id]


def one(spans: list[ReceivedSpan], name_start: str) -> ReceivedSpan:
    found = [s for s in spans if s.name.startswith(name_start)]
    assert len(found) == 1, (name_start, [s.name for s in spans])
    return found[0]


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_one_trace_from_the_webhook_to_the_github_call(
    fake: FakeGitHub,
    receiver: OtlpReceiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pool: Pool,
) -> None:
    delivery_id, spans = traced(fake, receiver, tmp_path, monkeypatch, pool, "pinned")

    webhook = one(spans, "github.webhook")
    assert webhook.name == "github.webhook issues.pinned"
    assert webhook.service == "ghapp-celery-web"
    assert webhook.attributes["github.delivery.id"] == delivery_id
    assert webhook.attributes["github.event"] == "issues"
    assert webhook.attributes["github.action"] == "pinned"
    assert webhook.attributes["github.installation.id"] == fake.installation_ids[0]
    assert webhook.attributes["github.repository"] == REPO
    assert webhook.attributes["http.response.status_code"] == 202
    # FastAPI's own telemetry would make a second server span for the request; init_app
    # leaves the webhook route to ours, which is the server span and the trace's root.
    assert webhook.kind == SERVER and webhook.parent_id is None
    assert [s.name for s in spans if s.kind == SERVER] == [webhook.name]

    store = one(spans, "ghapp.store.record")
    assert store.parent_id == webhook.span_id
    publish = one(spans, "publish ")
    assert publish.kind == PRODUCER and publish.parent_id == webhook.span_id

    run = one(spans, "run ")
    assert run.kind == CONSUMER and run.service == "ghapp-celery-worker"
    assert run.parent_id == publish.span_id  # the context crossed the broker
    assert run.attributes["ghapp.run.attempt"] == 1
    assert run.attributes["ghapp.run.outcome"] == "succeeded"
    assert run.attributes["ghapp.run.id"] == publish.attributes["ghapp.run.id"]
    assert run.attributes["messaging.destination.name"] == "github.issues"

    comment = one(spans, "GitHub POST /repos/{owner}/{repo}/issues/{id}/comments")
    assert comment.kind == CLIENT and comment.parent_id == run.span_id
    assert comment.attributes["http.response.status_code"] == 201
    assert comment.attributes["url.path"] == f"/repos/{REPO}/issues/1/comments"
    assert comment.attributes["github.from_cache"] is False
    assert isinstance(comment.attributes["github.rate_limit.remaining"], int)

    mint = one(spans, "github.token_mint")
    assert mint.parent_id == run.span_id
    minted = one(spans, "GitHub POST /app/installations/{id}/access_tokens")
    assert minted.parent_id == mint.span_id
    # No span carries a credential: installation tokens start ghs_, the JWT goes as Bearer.
    values = [str(v) for s in spans for v in s.attributes.values()]
    assert not [v for v in values if "ghs_" in v or "Bearer" in v or "eyJ" in v]


def test_a_retry_is_a_new_run_span_in_the_same_trace(
    fake: FakeGitHub, receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issues.labeled runs bgapp.flaky: two transient failures, then success.
    _, spans = traced(fake, receiver, tmp_path, monkeypatch, "threads", "labeled")
    runs = sorted(
        (s for s in spans if s.kind == CONSUMER), key=lambda s: s.attributes["ghapp.run.attempt"]
    )
    assert [r.attributes["ghapp.run.attempt"] for r in runs] == [1, 2, 3]
    outcomes = [r.attributes["ghapp.run.outcome"] for r in runs]
    assert outcomes == ["retrying", "retrying", "succeeded"]
    publish = one(spans, "publish ")
    # Each try is a child of the delivery's publish: the retry's message kept the headers.
    assert {r.parent_id for r in runs} == {publish.span_id}


PING = """
from starlette.testclient import TestClient
from ghapp_celery.webhooks import signed_request
from tests import bgapp

def ping() -> None:
    with TestClient(bgapp.github_app.web) as client:  # with its lifespan, as uvicorn runs it
        data, headers = signed_request("ping", {"zen": "z", "hook_id": 9}, secret="s")
        headers = {k: v for k, v in headers.items() if k.lower() != "x-github-hook-id"}
        headers["X-GitHub-Hook-ID"] = "9"
        answer = client.post("/webhooks/github/", content=data, headers=headers)
        assert answer.status_code == 200, answer.text
"""


def run_script(tmp: Path, script: str, env: dict[str, str] | None = None) -> Any:
    """Run ``PING + script`` in a fresh interpreter without any OTEL variable of this
    process, plus ``env``; returns the JSON value its last line prints."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FASTAPI_OTEL"))}
    clean.update(
        GITHUBAPP_DATA_DIR=str(tmp / "data"),
        GITHUBAPP_WEBHOOK_SECRET="s",
        PYTHONPATH=str(REPO_ROOT),
        CELERY_BROKER_URL=sqlite_broker_url(tmp / "broker.sqlite"),
        **(env or {}),
    )
    done = subprocess.run(
        [sys.executable, "-c", PING + textwrap.dedent(script)],
        cwd=REPO_ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_provider_the_user_installed_is_used_and_left_alone(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        ping()
        spans = exporter.get_finished_spans()
        webhook = [dict(s.attributes or {}) for s in spans if s.name.startswith("github.webhook")]
        print(json.dumps({"same": trace.get_tracer_provider() is provider, "webhook": webhook}))
        """,
    )
    assert result["same"] is True
    (webhook,) = result["webhook"]
    assert webhook["github.event"] == "ping"
    assert webhook["github.hook.id"] == "9"  # X-GitHub-Hook-ID, as the header says it
    assert webhook["http.response.status_code"] == 200


@pytest.mark.parametrize("telemetry", ["{}", '{"tracing": False}', '{"exclude": mine}'])
def test_the_webhook_span_is_the_server_span_and_other_routes_keep_fastapis(
    tmp_path: Path, telemetry: str
) -> None:
    result = run_script(
        tmp_path,
        f"""
        import json
        from fastapi import FastAPI
        from fastapi.testclient import TestClient
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from ghapp_celery import GitHubApp

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        mine = lambda scope: scope.get("path") == "/private"  # the user's own exclude
        web = FastAPI(telemetry={telemetry})
        web.get("/hello")(lambda: "hi")
        web.get("/private")(lambda: "hush")
        GitHubApp(web).on("ping")(lambda: "pong")
        bgapp.github_app.web = web  # ping() posts to this app
        ping()
        with TestClient(web) as client:
            assert client.get("/hello").status_code == 200
            assert client.get("/private").status_code == 200
        spans = exporter.get_finished_spans()
        print(json.dumps(sorted((s.name, s.kind.name, s.parent is None) for s in spans
                                if s.kind.name == "SERVER")))
        """,
    )
    webhook = ["github.webhook ping", "SERVER", True]
    hello = ["GET /hello", "SERVER", True]
    private = ["GET /private", "SERVER", True]
    # On the webhook route, ours alone; FastAPI's spans on the other routes unless the app
    # turned them off, and the user's own exclude still skips /private.
    expected = {
        "{}": [hello, private, webhook],
        '{"tracing": False}': [webhook],
        '{"exclude": mine}': [hello, webhook],
    }
    assert result == expected[telemetry]


def test_fastapi_auto_configure_and_ours_export_each_span_once(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    env = {
        **otel_env(receiver),
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "FASTAPI_OTEL_AUTO_CONFIGURE": "true",
    }
    result = run_script(
        tmp_path,
        """
        import json
        from opentelemetry import trace
        ping()
        print(json.dumps({"provider": type(trace.get_tracer_provider()).__module__}))
        """,
        env,
    )
    assert result["provider"].startswith("opentelemetry.sdk")
    spans = receiver.wait_for(lambda got: any(s.name.startswith("github.webhook") for s in got))
    names = sorted(s.name for s in spans)
    assert names.count("github.webhook ping") == 1, names
    assert len([s for s in spans if s.kind == SERVER]) == 1, names


def test_without_otel_variables_nothing_of_the_sdk_is_imported(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import json, sys
        from ghapp_celery.observability import tracing
        from tests.payloads import load_payload

        ping()
        payload = load_payload("issues/opened.json")  # a background delivery: store, publish
        with TestClient(bgapp.github_app.web) as client:
            data, headers = signed_request("issues", payload, secret="s")
            answer = client.post("/webhooks/github/", content=data, headers=headers)
            assert answer.status_code == 202, answer.text
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print(json.dumps({"enabled": tracing.enabled, "modules": loaded}))
        """,
    )
    assert result["enabled"] is False
    assert result["modules"], "FastAPI imports the OpenTelemetry API: the check looks there"
    heavy = [
        m
        for m in result["modules"]
        if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))
    ]
    assert not heavy
