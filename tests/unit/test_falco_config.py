"""falco.yaml rendering: plain inputs, checked against Falco's own schema and audit-only traps."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from falco_config_check import CHECKER, SCHEMA, checker_findings

from falco._falco_yaml import FalcoSettings, is_managed, render_falco_yaml

RULES = ("/etc/falco/k8s_audit_rules.yaml", "/etc/falco/rules.d")

SETTINGS = [
    FalcoSettings(),
    FalcoSettings(priority="warning"),
    FalcoSettings(
        rules_selection=[
            {"disable": {"rule": "Disallowed K8s User"}},
            {"disable": {"tag": "k8s"}},
        ],
    ),
    FalcoSettings(cluster_name="prod-eu-1.example_2"),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_rendered_config_is_valid_for_falco_0_44(settings: FalcoSettings):
    if not SCHEMA.exists():
        pytest.skip("../shared is not present")
    config = yaml.safe_load(render_falco_yaml(settings, RULES))

    errors = list(jsonschema.Draft6Validator(json.loads(SCHEMA.read_text())).iter_errors(config))

    assert errors == []


@pytest.mark.skipif(not CHECKER.exists(), reason="../shared/tools/falco-config-check not present")
@pytest.mark.parametrize("settings", SETTINGS)
def test_rendered_config_passes_the_audit_only_checker(settings: FalcoSettings, tmp_path: Path):
    path = tmp_path / "falco.yaml"
    path.write_text(render_falco_yaml(settings, RULES))

    assert checker_findings(path) == []


def test_audit_only_essentials():
    config = yaml.safe_load(render_falco_yaml(FalcoSettings(priority="error"), RULES))

    assert config["config_files"] == []
    assert config["plugins_hostinfo"] is False
    assert config["load_plugins"] == ["k8saudit", "json"]
    assert config["rules_files"] == list(RULES)
    assert config["priority"] == "error"
    assert config["webserver"]["listen_port"] == 8765
    assert config["webserver"]["k8s_healthz_endpoint"] == "/healthz"
    assert config["webserver"]["prometheus_metrics_enabled"] is True
    # The forwarder's queue, on the shared storage; reopened per alert, so rename rotates it.
    assert config["file_output"] == {
        "enabled": True,
        "keep_alive": False,
        "filename": "/var/lib/falco-alerts/log/falco.log",
    }
    assert config["http_output"] == {"enabled": False}  # Falco never waits on the network
    assert config["stdout_output"] == {"enabled": True}
    assert config["watch_config_files"] is True
    assert 0 < config["outputs_queue"]["capacity"] <= 100_000
    assert "rules" not in config


def test_both_plugins_extract_fields_synchronously():
    # plugin-sdk-go's async extractor spin-waits between Falco's thread and a Go worker; on
    # real Falco it held throughput near one event per second. Both plugins read `useAsync`.
    config = yaml.safe_load(render_falco_yaml(FalcoSettings(), RULES))

    plugins = {entry["name"]: entry for entry in config["plugins"]}
    assert plugins["k8saudit"]["init_config"]["useAsync"] is False
    assert plugins["json"]["init_config"] == {"useAsync": False}


def test_every_matching_rule_alerts():
    # Falco's default, `first`, stops at the first matching rule in file order.
    config = yaml.safe_load(render_falco_yaml(FalcoSettings(), RULES))

    assert config["rule_matching"] == "all"


def test_rule_selection():
    selection = yaml.safe_load(render_falco_yaml(SETTINGS[2], RULES))["rules"]
    assert selection == [{"disable": {"rule": "Disallowed K8s User"}}, {"disable": {"tag": "k8s"}}]


def test_a_cluster_name_is_an_extra_field_of_every_rules_alert():
    """A one-key map under extra_fields is ``output_fields[key]`` on every rule's alert.

    Falco 0.44.1 (``configuration.h``, ``rule_loader_compiler.cpp``, ``formats.cpp``): an entry
    without ``match`` applies to every rule.
    """
    config = yaml.safe_load(render_falco_yaml(SETTINGS[3], RULES))

    assert config["append_output"] == [{"extra_fields": [{"cluster": "prod-eu-1.example_2"}]}]


def test_without_a_cluster_name_falco_appends_nothing():
    for settings in SETTINGS[:3]:
        assert "append_output" not in yaml.safe_load(render_falco_yaml(settings, RULES))


def test_rendering_is_deterministic():
    assert render_falco_yaml(SETTINGS[1], RULES) == render_falco_yaml(SETTINGS[1], RULES)


def test_k8saudit_listens_on_the_pods_loopback_only_in_plain_http(tmp_path: Path):
    """The audit intake holds TLS and the token in front of it; nothing else may reach it."""
    text = render_falco_yaml(FalcoSettings(), RULES)
    k8saudit = yaml.safe_load(text)["plugins"][0]

    assert k8saudit["open_params"] == "http://127.0.0.1:9766/k8s-audit"
    assert "sslCertificate" not in k8saudit["init_config"]
    assert "certificate" not in text
    assert is_managed(text.encode())
    if SCHEMA.exists():
        schema = json.loads(SCHEMA.read_text())
        assert list(jsonschema.Draft6Validator(schema).iter_errors(yaml.safe_load(text))) == []
    if CHECKER.exists():
        path = tmp_path / "falco.yaml"
        path.write_text(text)
        assert checker_findings(path) == []
