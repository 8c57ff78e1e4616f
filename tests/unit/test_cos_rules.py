"""The shipped alert rules and dashboard, checked by the real tools and against real metrics.

PromQL goes through promtool (``promtool check rules``, Prometheus 3.11 as tools/promtool/go.mod
pins it), LogQL through Grafana's LogQL grammar (``@grafana/lezer-logql``); both are installed
into build/ by tools/install-cos-checkers, which tox runs first. A missing checker fails, never
skips.
"""

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from forwarder.forwarder_helpers import falco_alert

from audit_intake.metrics import IntakeMetrics
from cos._alert_rules import PLACEHOLDER, load_rules
from cos._publish import DASHBOARDS_DIR, LOKI_RULES_DIR, OTLP_RULES_DIR, PROMETHEUS_RULES_DIR
from falco_forwarder.config import JujuTopology
from falco_forwarder.loki import loki_labels
from falco_forwarder.metrics import DROP_REASONS, Gauges, Metrics

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = ROOT / "build" / "bin" / "promtool"
LOGQL_CHECK = ROOT / "build" / "logql-check" / "check.mjs"
TOPOLOGY = {
    "model": "cos",
    "model_uuid": "f2c5e3a1-7b4d-4e2a-9c1d-0123456789ab",
    "application": "falco-k8s",
    "unit": "falco-k8s/0",
    "charm_name": "falco-k8s",
}
# Every metric family Falco 0.44.1 can export, as userspace/falco/falco_metrics.cpp at tag
# 0.44.1 (commit f1ac5eb1a1c9da9f797f799121ab700263621443) names them. The scap_* families
# belong to the syscall source, which audit-only mode disables: listed, never used.
FALCO_METRICS = frozenset(
    {
        "falcosecurity_falco_version_info",
        "falcosecurity_falco_sha256_rules_files_info",
        "falcosecurity_falco_sha256_config_files_info",
        "falcosecurity_falco_outputs_queue_num_drops_total",
        "falcosecurity_falco_reload_timestamp_nanoseconds",
        "falcosecurity_falco_rules_matches_total",
        "falcosecurity_scap_engine_name_info",
        "falcosecurity_scap_n_drops_buffer_total",
        "falcosecurity_scap_n_drops_cpu_total",
        "falcosecurity_scap_n_evts_cpu_total",
    }
)
# Series Prometheus itself writes for every target.
SCRAPE_METRICS = frozenset({"up"})
# Grafana's variables, given values so the expressions are plain PromQL/LogQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
_OUR_PREFIXES = re.compile(r"\b(?:falco_forwarder|falcosecurity|audit_intake)_[a-z0-9_]+")


def forwarder_metrics() -> frozenset[str]:
    """The families the forwarder's own code exports, read from what it renders."""
    text = Metrics(["s"]).render(Gauges({"s": 0}, {"s": ""}, 0, 0, 0))
    return frozenset(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


def intake_metrics() -> frozenset[str]:
    """The families the audit intake exports, read from what it renders."""
    text = IntakeMetrics(dict).render()
    return frozenset(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


def shipped_rules(directory: Path) -> dict[str, Any]:
    return load_rules(directory, TOPOLOGY)


def dashboard_expressions(datasource: str) -> list[tuple[str, str]]:
    """(panel title, expression) for every target of the panels on ``datasource``."""
    found: list[tuple[str, str]] = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            if panel.get("datasource", {}).get("uid") != datasource:
                continue
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append((f"{path.name}: {panel['title']}", expr))
    return found


def rule_expressions(directory: Path) -> list[tuple[str, str]]:
    groups = shipped_rules(directory)["groups"]
    return [
        (f"{directory.name}: {rule['alert']}", rule["expr"])
        for group in groups
        for rule in group["rules"]
    ]


def promtool_check(tmp_path: Path, document: dict[str, Any]) -> str:
    assert PROMTOOL.exists(), "run tools/install-cos-checkers (tox does)"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    print(result.stdout, result.stderr)  # the validation output, for the record
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def logql_check(expressions: list[tuple[str, str]]) -> str:
    assert LOGQL_CHECK.exists(), "run tools/install-cos-checkers (tox does)"
    payload = json.dumps([{"where": where, "expr": expr} for where, expr in expressions])
    result = subprocess.run(
        ["node", str(LOGQL_CHECK)], input=payload, capture_output=True, text=True, check=False
    )
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_prometheus_rules_pass_promtool(tmp_path: Path):
    document = shipped_rules(PROMETHEUS_RULES_DIR)
    output = promtool_check(tmp_path, document)
    count = sum(len(group["rules"]) for group in document["groups"])
    assert f"SUCCESS: {count} rules found" in output


def test_every_dashboard_promql_expression_passes_promtool(tmp_path: Path):
    expressions = dashboard_expressions("${prometheusds}")
    rules = [{"record": f"dashboard:expr_{i}", "expr": e} for i, (_, e) in enumerate(expressions)]
    output = promtool_check(tmp_path, {"groups": [{"name": "dashboard", "rules": rules}]})
    assert f"SUCCESS: {len(rules)} rules found" in output


def test_every_logql_expression_parses():
    expressions = (
        rule_expressions(LOKI_RULES_DIR)
        + rule_expressions(OTLP_RULES_DIR)
        + dashboard_expressions("${lokids}")
    )
    output = logql_check(expressions)
    assert f"{len(expressions)} of {len(expressions)} LogQL expressions parse" in output


def promtool_test(tmp_path: Path, series: dict[str, str], alerts: list[dict[str, Any]]) -> str:
    """Run ``promtool test rules`` on the shipped rules: ``series`` fed in, ``alerts`` expected.

    The rules keep only their summary annotation, so an expected alert states its rendered
    summary and not the long description.
    """
    document = shipped_rules(PROMETHEUS_RULES_DIR)
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["annotations"] = {"summary": rule["annotations"]["summary"]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(document))
    inputs = [
        {"series": name.replace("{", "{" + _matchers(_missing(name)) + ", ", 1), "values": values}
        for name, values in series.items()
    ]
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs, "alert_rule_test": alerts}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", "test.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _missing(series: str) -> dict[str, str]:
    """The unit's topology labels a series name does not set itself (a test may name a unit)."""
    return {key: value for key, value in unit_labels().items() if f"{key}=" not in series}


def _matchers(labels: dict[str, str]) -> str:
    return ", ".join(f'{key}="{value}"' for key, value in labels.items())


def test_promtool_refuses_a_broken_expression(tmp_path: Path):
    rule = {"alert": "Broken", "expr": "rate(falco_forwarder_dropped_total[5m]"}
    with pytest.raises(AssertionError, match="FAILED"):
        promtool_check(tmp_path, {"groups": [{"name": "g", "rules": [rule]}]})


def test_the_logql_checker_refuses_a_broken_expression():
    with pytest.raises(AssertionError, match="FAILED broken"):
        logql_check([("broken", 'sum by (rule (count_over_time({a="b"}[5m]))')])


def test_every_metric_in_promql_is_one_falco_the_forwarder_or_the_intake_exports():
    known = FALCO_METRICS | forwarder_metrics() | intake_metrics() | SCRAPE_METRICS
    expressions = rule_expressions(PROMETHEUS_RULES_DIR) + dashboard_expressions("${prometheusds}")
    used: set[str] = set()
    for where, expr in expressions:
        names = set(_SELECTOR.findall(expr)) | set(_OUR_PREFIXES.findall(expr))
        assert names, f"{where}: no metric selector in {expr}"
        assert names <= known, f"{where}: unknown metrics {sorted(names - known)}"
        used |= names
    assert {
        "falco_forwarder_sink_up",
        "falco_forwarder_backlog_bytes",
        "falco_forwarder_alert_log_bytes",
        "falcosecurity_falco_rules_matches_total",
        "audit_intake_events_received_total",
        "audit_intake_last_event_timestamp_seconds",
        "audit_intake_refused_total",
        "audit_intake_falco_answers_total",
        "audit_intake_unsettled_bytes",
    } <= used


def test_rules_watch_this_application_only_and_say_what_to_do():
    for directory in (PROMETHEUS_RULES_DIR, LOKI_RULES_DIR, OTLP_RULES_DIR):
        for group in shipped_rules(directory)["groups"]:
            assert group["name"].startswith("cos_f2c5e3a1_falco_k8s_")
            for rule in group["rules"]:
                assert PLACEHOLDER not in rule["expr"]
                assert 'juju_application="falco-k8s"' in rule["expr"]
                assert rule["labels"]["juju_model_uuid"] == TOPOLOGY["model_uuid"]
                assert len(rule["annotations"]["summary"]) > 20
                assert len(rule["annotations"]["description"]) > 100


def test_the_dashboard_uses_the_datasource_variables_cos_injects():
    for path in DASHBOARDS_DIR.glob("*.json"):
        dashboard = json.loads(path.read_text())
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        assert {"prometheusds", "lokids"} <= variables
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] in ("${prometheusds}", "${lokids}")


def unit_labels() -> dict[str, str]:
    """The topology labels of every series scraped from the unit."""
    keys = ("model", "model_uuid", "application", "unit")
    return {f"juju_{key}": TOPOLOGY[key] for key in keys}


def alert_labels(**labels: str) -> dict[str, str]:
    """The labels of an alert on the unit: its series' topology, the rule's charm, ``labels``."""
    return {**unit_labels(), "juju_charm": TOPOLOGY["charm_name"], **labels}


def test_a_sink_behind_on_most_of_the_alert_log_warns_before_retention_drops(tmp_path: Path):
    # A 1000-byte log; loki-0 has 800 bytes to deliver (over 3/4), http_output 500 (half).
    output = promtool_test(
        tmp_path,
        {
            "falco_forwarder_alert_log_bytes{}": "1000x40",
            'falco_forwarder_backlog_bytes{sink="loki-0"}': "800x40",
            'falco_forwarder_backlog_bytes{sink="http_output"}': "500x40",
        },
        [
            {"eval_time": "10m", "alertname": "FalcoSinkBacklogNearRetention", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "FalcoSinkBacklogNearRetention",
                "exp_alerts": [
                    {
                        "exp_labels": alert_labels(severity="warning", sink="loki-0"),
                        "exp_annotations": {
                            "summary": "Sink loki-0 on falco-k8s/0 has 800B undelivered,"
                            " over 3/4 of the alert log"
                        },
                    },
                ],
            },
        ],
    )
    assert "SUCCESS" in output


def test_alerts_lost_to_retention_raise_a_critical_alert_naming_sink_and_reason(tmp_path: Path):
    # Retention removed 7 unread alerts of loki-0 at minute 5; nothing else was lost.
    dropped = 'falco_forwarder_dropped_total{sink="loki-0", reason="%s"}'
    series = {dropped % reason: "0x20" for reason in DROP_REASONS}
    series[dropped % "retention"] = "0x4 7x15"
    output = promtool_test(
        tmp_path,
        series,
        [
            {
                "eval_time": "10m",
                "alertname": "FalcoAlertsDropped",
                "exp_alerts": [
                    {
                        "exp_labels": alert_labels(
                            severity="critical", sink="loki-0", reason="retention"
                        ),
                        "exp_annotations": {
                            "summary": "7 alerts dropped for sink loki-0 (retention)"
                        },
                    }
                ],
            },
            {"eval_time": "20m", "alertname": "FalcoAlertsDropped", "exp_alerts": []},
        ],
    )
    assert "SUCCESS" in output


def test_a_nearly_full_alert_log_volume_warns_before_falco_loses_alerts(tmp_path: Path):
    # A 1 GiB volume: 200 MiB free for 10 minutes, then 50 MiB (under a tenth) from minute 10.
    gib = 1 << 30
    output = promtool_test(
        tmp_path,
        {
            "falco_forwarder_alert_log_volume_size_bytes{}": f"{gib}x30",
            "falco_forwarder_alert_log_volume_free_bytes{}": f"{200 << 20}x10 {50 << 20}x20",
        },
        [
            {"eval_time": "9m", "alertname": "FalcoAlertLogVolumeNearlyFull", "exp_alerts": []},
            {
                "eval_time": "16m",
                "alertname": "FalcoAlertLogVolumeNearlyFull",
                "exp_alerts": [
                    {
                        "exp_labels": alert_labels(severity="warning"),
                        "exp_annotations": {
                            "summary": "The alert-log volume of falco-k8s/0 has 50MiB free,"
                            " under a tenth"
                        },
                    }
                ],
            },
        ],
    )
    assert "SUCCESS" in output


def test_every_drop_reason_is_explained_where_on_call_reads_it():
    (rule,) = [
        rule
        for group in shipped_rules(PROMETHEUS_RULES_DIR)["groups"]
        for rule in group["rules"]
        if rule["alert"] == "FalcoAlertsDropped"
    ]
    (panel,) = [
        panel
        for path in DASHBOARDS_DIR.glob("*.json")
        for panel in json.loads(path.read_text())["panels"]
        if panel["title"] == "Dropped by sink and reason"
    ]
    for reason in DROP_REASONS:
        assert f"{reason}:" in rule["annotations"]["description"], reason
        assert f"{reason}:" in panel["description"] or f"{reason}," in panel["description"]


def test_no_audit_events_for_ten_minutes_raises_a_critical_alert_for_the_application(
    tmp_path: Path,
):
    # Two units; events arrive for 10 minutes, then the apiserver stops sending.
    events = 'audit_intake_events_received_total{juju_unit="falco-k8s/%d"}'
    output = promtool_test(
        tmp_path,
        {events % 0: "0+100x10 1000x30", events % 1: "0+120x10 1200x30"},
        [
            {"eval_time": "10m", "alertname": "FalcoNoAuditEvents", "exp_alerts": []},
            {"eval_time": "18m", "alertname": "FalcoNoAuditEvents", "exp_alerts": []},
            {
                "eval_time": "21m",
                "alertname": "FalcoNoAuditEvents",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            key: value
                            for key, value in alert_labels(severity="critical").items()
                            if key != "juju_unit"
                        },
                        "exp_annotations": {
                            "summary": "No Kubernetes audit events reached falco-k8s"
                            " for 10 minutes"
                        },
                    }
                ],
            },
        ],
    )
    assert "SUCCESS" in output


def test_posts_without_the_token_raise_a_warning_naming_unit_and_reason(tmp_path: Path):
    refused = 'audit_intake_refused_total{reason="%s"}'
    series = {refused % reason: "0x20" for reason in ("unauthenticated", "spool_full")}
    series[refused % "wrong_token"] = "0x4 3x15"
    output = promtool_test(
        tmp_path,
        series,
        [
            {
                "eval_time": "10m",
                "alertname": "FalcoAuditPostsRefused",
                "exp_alerts": [
                    {
                        "exp_labels": alert_labels(severity="warning", reason="wrong_token"),
                        "exp_annotations": {
                            "summary": "3 audit posts refused on falco-k8s/0 (wrong_token)"
                        },
                    }
                ],
            },
            {"eval_time": "10m", "alertname": "FalcoAuditBatchesTurnedAway", "exp_alerts": []},
        ],
    )
    assert "SUCCESS" in output


def test_the_dashboard_has_a_row_asking_whether_the_apiserver_is_sending():
    panels = json.loads((DASHBOARDS_DIR / "falco-k8s.json").read_text())["panels"]
    (row,) = [p for p in panels if p["type"] == "row" and "apiserver sending" in p["title"]]
    below = [p for p in panels if p["gridPos"]["y"] > row["gridPos"]["y"]]
    exprs = " ".join(t["expr"] for p in below for t in p["targets"])

    assert "audit_intake_events_received_total" in exprs
    assert "audit_intake_last_event_timestamp_seconds" in exprs
    assert 'service="audit-intake"' in exprs


# A LogQL stream matcher: label, operator, double-quoted value (as the dashboard writes them).
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


def stream_selected(expr: str, labels: dict[str, str]) -> bool:
    """Whether the first stream selector of ``expr`` selects a stream with ``labels``.

    Loki's rules: a missing label is the empty string; regular expressions match whole values.
    The topology variables are Grafana's "All", which matches any value.
    """
    selector = expr[expr.index("{") + 1 : expr.index("}")]
    for variable in ("$juju_model_uuid", "$juju_model", "$juju_application", "$juju_unit"):
        selector = selector.replace(variable, ".*")
    matchers = _MATCHER.findall(selector)
    assert "".join(m.group(0) for m in _MATCHER.finditer(selector)) == selector, selector
    verdicts = {
        "=": lambda have, want: have == want,
        "!=": lambda have, want: have != want,
        "=~": lambda have, want: re.fullmatch(want, have) is not None,
        "!~": lambda have, want: re.fullmatch(want, have) is None,
    }
    return all(verdicts[op](labels.get(name, ""), value) for name, op, value in matchers)


def test_the_alert_panels_count_alerts_not_the_service_logs_sent_over_logging():
    """With `logging` and `send-loki-logs` into one Loki, only alert streams are counted."""
    topology = {**unit_labels(), "juju_charm": TOPOLOGY["charm_name"]}
    juju = JujuTopology(
        TOPOLOGY["model"], TOPOLOGY["model_uuid"], TOPOLOGY["application"], TOPOLOGY["unit"]
    )
    alert_stream = loki_labels(falco_alert(priority="Critical"), juju)
    # Pebble labels every line it forwards with its service (pebble docs, log-forwarding.md).
    services = ("falco", "alert-forwarder", "audit-intake")
    service_streams = [{**topology, "pebble_service": s} for s in services]
    dashboard = json.loads((DASHBOARDS_DIR / "falco-k8s.json").read_text())
    loki_targets = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target["datasource"]["type"] == "loki"
    ]

    assert len(loki_targets) == 5
    for title, expr in loki_targets:
        assert stream_selected(expr, alert_stream), title
        for stream in service_streams:
            assert not stream_selected(expr, stream), title
