"""The operator kit in deploy/: alerting rules, their promtool unit tests, the example
Prometheus configuration and the Grafana dashboard.

promtool (Debian's ``prometheus`` package, which ``.ci/run`` installs) checks the rules, runs
their unit tests and checks the example configuration; each dashboard query is written into a
recording rule so promtool parses it as PromQL. Every query, in the rules and the dashboard,
may name only the series the app exports (``METRICS``) and ``up``: a misspelled metric would
otherwise show an empty panel or an alert that can never fire. A real Prometheus loads the
rules and evaluates them against series served by prometheus-client. Without promtool or
prometheus the tests that need them skip locally and fail in CI.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tests._prometheus import prometheus_server
from tests._redis import free_port
from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "ghapp-alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "ghapp-alerts.test.yml"
EXAMPLE_CONFIG = PROMETHEUS_DIR / "prometheus.example.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ghapp-dashboard.json"
OBSERVABILITY_DOC = ROOT / "docs" / "observability.md"

# What ghapp_celery exports: name -> (kind, labels). prometheus-client adds `_total` to a
# counter and `_bucket`/`_sum`/`_count` to a histogram; `le` is the bucket label.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ghapp_webhook_deliveries": ("counter", ("event", "code")),
    "ghapp_webhook_ack_seconds": ("histogram", ()),
    "ghapp_runs": ("counter", ("task", "queue", "state")),
    "ghapp_run_duration_seconds": ("histogram", ("task",)),
    "ghapp_run_queue_wait_seconds": ("histogram", ("queue",)),
    "ghapp_queue_depth": ("gauge", ("queue",)),
    "ghapp_queue_oldest_age_seconds": ("gauge", ("queue",)),
    "ghapp_runs_dead": ("gauge", ()),
    "ghapp_sweeper_republished": ("counter", ("reason",)),
    "ghapp_github_requests": ("counter", ("status_class",)),
    "ghapp_github_rate_limit_remaining": ("gauge", ("resource",)),
    "ghapp_github_rate_limit_limit": ("gauge", ("resource",)),
    "ghapp_token_mints": ("counter", ()),
    "ghapp_store_read_ok": ("gauge", ()),
    "ghapp_runs_in_flight": ("gauge", ("queue",)),
}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
SERIES = frozenset(
    {name + suffix for name, (kind, _) in METRICS.items() for suffix in SUFFIXES[kind]} | {"up"}
)
# Labels a query may group or select by: the metrics' own, the target labels Prometheus adds,
# and the histogram bucket bound.
LABELS = frozenset(
    {label for _, labels in METRICS.values() for label in labels} | {"job", "instance", "le"}
)
# Concrete values for Grafana's variables, so a dashboard query becomes plain PromQL.
GRAFANA_VARIABLES = {
    "job": "ghapp-.*",
    "queue": ".*",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """The series names and the label names a PromQL expression uses.

    Not a parser (promtool checks the syntax): strings, label matchers, ranges and grouping
    clauses are cut out first, so what is left are functions (followed by ``(``), operators,
    keywords, numbers and series names.
    """
    labels: set[str] = set()
    text = _STRING.sub('""', expr)
    for matchers in _MATCHERS.findall(text):
        labels.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    text = _MATCHERS.sub(" ", text)
    for grouping in _GROUPING.findall(text):
        labels.update(name.strip() for name in grouping.split(",") if name.strip())
    text = _GROUPING.sub(" ", _RANGE.sub(" ", text))
    series: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # the exponent or unit of a number: 1e3, 5m
            continue
        if text[match.end() :].lstrip().startswith("("):  # a function or an aggregation
            continue
        if match.group().lower() not in _KEYWORDS:
            series.add(match.group())
    return series, labels


def unknown_names(expr: str) -> list[str]:
    """What ``expr`` uses that the app does not export; empty when it uses at least one series."""
    series, labels = promql_names(expr)
    problems = [f"series {name}" for name in sorted(series - SERIES)]
    problems += [f"label {name}" for name in sorted(labels - LABELS - {"__name__"})]
    if not series:
        problems.append("no series at all")
    return problems


def grafana_to_promql(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARIABLES[name]

    return _VARIABLE.sub(value, expr)


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable's selector."""
    queries = [
        (f"panel {panel['id']} {target['refId']}", grafana_to_promql(target["expr"]))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["query"]["query"])
            assert found, variable["query"]
            queries.append((f"variable {variable['name']}", grafana_to_promql(found.group(1))))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    (group,) = document["groups"]
    assert group["name"] == "ghapp"
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool")
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


def check_recording_rules(queries: list[tuple[str, str]], directory: Path) -> tuple[int, str]:
    """Run ``promtool check rules`` on the queries written as recording rules (JSON is YAML)."""
    rules = [
        {"record": f"dashboard:query_{index}", "expr": expr}
        for index, (_, expr) in enumerate(queries)
    ]
    path = directory / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", path.name, cwd=directory)
    return result.returncode, result.stdout + result.stderr


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", ALERTS.name, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_alerts_fire_and_stay_silent_as_their_unit_tests_expect() -> None:
    result = promtool("test", "rules", ALERT_TESTS.name, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alert_unit_tests_fail_when_a_threshold_moves(tmp_path: Path) -> None:
    # The unit tests pin each alert's behaviour: a stalled-queue threshold of 100 minutes
    # instead of 10 no longer fires where the test expects it.
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    rules = ALERTS.read_text(encoding="utf-8")
    assert rules.count("(ghapp_queue_oldest_age_seconds) > 600") == 1
    moved = rules.replace(
        "(ghapp_queue_oldest_age_seconds) > 600", "(ghapp_queue_oldest_age_seconds) > 6000"
    )
    (tmp_path / ALERTS.name).write_text(moved, encoding="utf-8")
    result = promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "alertname: GhappQueueStalled" in result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    checks = [check for test in tests for check in test["alert_rule_test"]]
    for rule in alert_rules():
        name = rule["alert"]
        mine = [check for check in checks if check["alertname"] == name]
        assert any(check["exp_alerts"] for check in mine), f"{name} is never expected to fire"
        assert any(not check["exp_alerts"] for check in mine), f"{name} is never expected silent"


def test_every_alert_has_a_for_a_severity_and_a_runbook_in_the_docs() -> None:
    docs = OBSERVABILITY_DOC.read_text(encoding="utf-8")
    headings = {
        line.lstrip("#").strip().lower() for line in docs.splitlines() if line.startswith("#")
    }
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"\d+m", rule["for"]), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        # The runbook is the alert's own heading in docs/observability.md (mkdocs' anchor
        # of a heading that is one word is that word in lower case).
        assert annotations["runbook_url"] == f"docs/observability.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/observability.md has no heading {name}"


def test_alert_expressions_use_only_exported_series() -> None:
    for rule in alert_rules():
        assert unknown_names(rule["expr"]) == [], rule["alert"]


def test_the_example_configuration_loads_the_rules(tmp_path: Path) -> None:
    result = promtool("check", "config", EXAMPLE_CONFIG.name, cwd=PROMETHEUS_DIR)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS: 1 rule files found" in output
    assert f"Checking {ALERTS.name}" in output
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"ghapp-web", "ghapp-worker"}
    assert jobs["ghapp-web"]["metrics_path"] == "/metrics"
    assert all(
        target.endswith(":8000") for target in jobs["ghapp-web"]["static_configs"][0]["targets"]
    )
    # Without the rule file beside it, the same configuration does not check.
    shutil.copy(EXAMPLE_CONFIG, tmp_path / EXAMPLE_CONFIG.name)
    alone = promtool("check", "config", EXAMPLE_CONFIG.name, cwd=tmp_path)
    assert alone.returncode != 0


def test_dashboard_panels_have_a_datasource_and_targets() -> None:
    dashboard = load_dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert {"job", "queue"} <= set(variables)
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
            assert target["expr"].strip(), panel["title"]
    # Each series the app exports is on some panel (up too).
    used = set().union(*(promql_names(expr)[0] for _, expr in dashboard_queries(dashboard)))
    for name, (kind, _) in METRICS.items():
        assert any(name + suffix in used for suffix in SUFFIXES[kind]), name
    assert "up" in used


def test_dashboard_queries_use_only_exported_series() -> None:
    for where, expr in dashboard_queries(load_dashboard()):
        assert unknown_names(expr) == [], f"{where}: {expr}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    queries = dashboard_queries(load_dashboard())
    code, output = check_recording_rules(queries, tmp_path)
    assert code == 0, output
    assert f"SUCCESS: {len(queries)} rules found" in output


def test_the_dashboard_checks_catch_a_misspelled_metric_and_broken_promql(tmp_path: Path) -> None:
    dashboard = load_dashboard()
    target = dashboard["panels"][0]["targets"][0]
    correct = target["expr"]
    target["expr"] = correct.replace(
        "ghapp_webhook_deliveries_total", "ghapp_webhook_delivery_total"
    )
    (where, misspelled), *_ = dashboard_queries(dashboard)
    assert unknown_names(misspelled) == ["series ghapp_webhook_delivery_total"], where
    target["expr"] = correct.replace("sum by (code)", "sum by (status)")
    assert unknown_names(dashboard_queries(dashboard)[0][1]) == ["label status"]
    # An unbalanced parenthesis: promtool rejects the recording rule.
    target["expr"] = correct.rstrip(")")
    code, output = check_recording_rules(dashboard_queries(dashboard), tmp_path)
    assert code != 0
    assert '"dashboard:query_0": could not parse expression' in output, output


@contextmanager
def exported_series(port: int) -> Iterator[None]:
    """A prometheus-client endpoint on loopback exposing an app in trouble: dead runs, a
    stalled queue, a rate limit nearly spent, and no webhook traffic at all."""
    registry = CollectorRegistry()
    Gauge("ghapp_runs_dead", "dead runs", registry=registry).set(3)
    oldest = Gauge("ghapp_queue_oldest_age_seconds", "age", ["queue"], registry=registry)
    oldest.labels(queue="default").set(900)
    oldest.labels(queue="fast").set(5)
    remaining = Gauge("ghapp_github_rate_limit_remaining", "left", ["resource"], registry=registry)
    limit = Gauge("ghapp_github_rate_limit_limit", "budget", ["resource"], registry=registry)
    remaining.labels(resource="core").set(200)
    limit.labels(resource="core").set(5000)
    remaining.labels(resource="graphql").set(4000)
    limit.labels(resource="graphql").set(5000)
    deliveries = Counter(
        "ghapp_webhook_deliveries", "answers", ["event", "code"], registry=registry
    )
    deliveries.labels(event="push", code="202")
    deliveries.labels(event="push", code="503")
    Histogram("ghapp_webhook_ack_seconds", "ack", registry=registry)
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# Prometheus starts in about a second; the rules need two or three evaluations at 1 s.
@pytest.mark.timeout(90)
def test_a_real_prometheus_loads_the_rules_and_the_right_alerts_go_pending(tmp_path: Path) -> None:
    app_port, closed_port = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "ghapp-web", "static_configs": [{"targets": [f"127.0.0.1:{app_port}"]}]},
            # Nothing listens here: the worker target is down.
            {
                "job_name": "ghapp-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{closed_port}"]}],
            },
        ],
    }
    with exported_series(app_port), prometheus_server(tmp_path, config) as prom:
        expected = {
            ("GhappDeadRuns", ""),
            ("GhappQueueStalled", "default"),
            ("GhappGitHubRateLimitLow", "core"),
            ("GhappTargetDown", "ghapp-worker"),
        }
        active: set[tuple[str, str]] = set()
        alerts: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while active != expected and time.monotonic() < deadline:
            time.sleep(0.5)
            alerts = prom.get("/api/v1/alerts")["alerts"]
            active = {
                (
                    alert["labels"]["alertname"],
                    alert["labels"].get("queue")
                    or alert["labels"].get("resource")
                    or alert["labels"].get("job", ""),
                )
                for alert in alerts
            }
        # Pending, not firing: each alert's `for` is minutes. No traffic: no 5xx or ack alert.
        assert active == expected
        assert {alert["state"] for alert in alerts} == {"pending"}
        groups = prom.get("/api/v1/rules")["groups"]
        assert [group["name"] for group in groups] == ["ghapp"]
        rules = groups[0]["rules"]
        assert {rule["name"] for rule in rules} == {rule["alert"] for rule in alert_rules()}
        assert {rule["health"] for rule in rules} == {"ok"}, rules
