"""The shipped alert rules and dashboard, checked by the real tools and against real metrics.

PromQL goes through promtool (``promtool check rules``, Prometheus 2.42 from Debian), LogQL
through Grafana's LogQL grammar (``@grafana/lezer-logql``); both are installed into build/ by
tools/install-cos-checkers, which tox runs first. A missing checker fails, never skips.
"""

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from constants import DASHBOARDS_DIR, LOKI_RULES_DIR, OTLP_RULES_DIR, PROMETHEUS_RULES_DIR
from cos_rules import PLACEHOLDER, load_rules
from falco_forwarder.metrics import Metrics

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
_OUR_PREFIXES = re.compile(r"\b(?:falco_forwarder|falcosecurity)_[a-z0-9_]+")


def forwarder_metrics() -> frozenset[str]:
    """The families the forwarder's own code exports, read from what it renders."""
    text = Metrics(["s"]).render({"s": 0}, 0)
    return frozenset(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


def shipped_rules(directory: str) -> dict[str, Any]:
    return load_rules(ROOT / directory, TOPOLOGY)


def dashboard_expressions(datasource: str) -> list[tuple[str, str]]:
    """(panel title, expression) for every target of the panels on ``datasource``."""
    found: list[tuple[str, str]] = []
    for path in sorted((ROOT / DASHBOARDS_DIR).glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            if panel.get("datasource", {}).get("uid") != datasource:
                continue
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append((f"{path.name}: {panel['title']}", expr))
    return found


def rule_expressions(directory: str) -> list[tuple[str, str]]:
    groups = shipped_rules(directory)["groups"]
    return [
        (f"{directory}: {rule['alert']}", rule["expr"])
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


def test_promtool_refuses_a_broken_expression(tmp_path: Path):
    rule = {"alert": "Broken", "expr": "rate(falco_forwarder_dropped_total[5m]"}
    with pytest.raises(AssertionError, match="FAILED"):
        promtool_check(tmp_path, {"groups": [{"name": "g", "rules": [rule]}]})


def test_the_logql_checker_refuses_a_broken_expression():
    with pytest.raises(AssertionError, match="FAILED broken"):
        logql_check([("broken", 'sum by (rule (count_over_time({a="b"}[5m]))')])


def test_every_metric_in_promql_is_one_falco_or_the_forwarder_exports():
    known = FALCO_METRICS | forwarder_metrics() | SCRAPE_METRICS
    expressions = rule_expressions(PROMETHEUS_RULES_DIR) + dashboard_expressions("${prometheusds}")
    used: set[str] = set()
    for where, expr in expressions:
        names = set(_SELECTOR.findall(expr)) | set(_OUR_PREFIXES.findall(expr))
        assert names, f"{where}: no metric selector in {expr}"
        assert names <= known, f"{where}: unknown metrics {sorted(names - known)}"
        used |= names
    assert {"falco_forwarder_sink_up", "falcosecurity_falco_rules_matches_total"} <= used


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
    for path in (ROOT / DASHBOARDS_DIR).glob("*.json"):
        dashboard = json.loads(path.read_text())
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        assert {"prometheusds", "lokids"} <= variables
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] in ("${prometheusds}", "${lokids}")
