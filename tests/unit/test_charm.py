"""Charm behaviour in Scenario: files pushed, Pebble layer, ports, statuses, actions."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from charm_pod import (
    ACTIVE,
    CHARM_RULES_TEXT,
    DRY_RUN_PREFIX,
    IMAGE_FALCO_YAML,
    LIST_PREFIX,
    STOCK_RULES,
    Calls,
    falco_container,
    peers,
    pod,
    with_container,
)
from falco_config_check import CHECKER, checker_findings
from ops import testing

from constants import CHARM_RULES_FILE
from falco._options import FalcoOptions
from sinks._forwarder_config import ForwarderOptions
from sinks._http_output import HttpOutputOptions
from webhook._options import WebhookOptions


def falco_yaml(fs: Path) -> dict[str, Any]:
    return yaml.safe_load((fs / "etc-falco" / "falco.yaml").read_text())


def deployed(ctx: testing.Context[Any], fs: Path, **config: Any) -> testing.State:
    """A unit after its first pebble-ready with the given config."""
    container = falco_container(fs)
    state = testing.State(
        config=config, containers=pod(container), relations={peers()}, leader=True
    )
    return ctx.run(ctx.on.pebble_ready(container), state)


def reconfigure(ctx: testing.Context[Any], state: testing.State, **config: Any) -> testing.State:
    return ctx.run(ctx.on.config_changed(), dataclasses.replace(state, config=config))


# -- workload ----------------------------------------------------------------------------------


def test_pebble_ready_installs_plugins_rules_and_config(ctx, falco_fs, charm_root):
    deployed(ctx, falco_fs)

    plugins = falco_fs / "usr-share-falco" / "plugins"
    for name in ("libk8saudit.so", "libjson.so"):
        assert (plugins / name).read_bytes() == (charm_root / "plugins" / name).read_bytes()
    assert (falco_fs / "etc-falco" / "k8s_audit_rules.yaml").read_text() == STOCK_RULES
    assert (falco_fs / "etc-falco" / "falco_k8s_rules.yaml").read_bytes() == (
        charm_root / CHARM_RULES_FILE
    ).read_bytes()
    config = falco_yaml(falco_fs)
    # The charm's rules between the stock ones and custom_rules (rules.d), which may override
    # or disable them.
    assert config["rules_files"] == [
        "/etc/falco/k8s_audit_rules.yaml",
        "/etc/falco/falco_k8s_rules.yaml",
        "/etc/falco/rules.d",
    ]
    assert config["load_plugins"] == ["k8saudit", "json"]
    assert config["plugins"][0]["open_params"] == "http://127.0.0.1:9766/k8s-audit"
    assert config["http_output"] == {"enabled": False}  # the forwarder reads the alert log
    assert config["file_output"]["filename"] == "/var/lib/falco-alerts/log/falco.log"
    assert (falco_fs / "etc-falco" / "rules.d").is_dir()


def test_changes_are_dry_run_on_staged_files_before_going_live(ctx, falco_fs):
    deployed(ctx, falco_fs)

    [dry_run] = ctx.exec_history["falco"]
    assert dry_run.command == [*DRY_RUN_PREFIX, "--disable-source", "syscall", "--dry-run"]
    assert dry_run.timeout is not None
    staged = yaml.safe_load((falco_fs / "etc-falco" / "staging" / "falco.yaml").read_text())
    assert staged["rules_files"] == [
        "/etc/falco/staging/k8s_audit_rules.yaml",
        "/etc/falco/staging/falco_k8s_rules.yaml",
        "/etc/falco/staging/rules.d",
    ]
    assert (falco_fs / "etc-falco" / "staging" / "falco_k8s_rules.yaml").read_text() == (
        CHARM_RULES_TEXT
    )


def test_layer_runs_falco_audit_only_with_health_checks(ctx, falco_fs):
    out = deployed(ctx, falco_fs)

    container = out.get_container("falco")
    service = container.plan.services["falco"]
    assert service.command == "/usr/bin/falco -c /etc/falco/falco.yaml --disable-source syscall"
    assert service.on_check_failure == {"falco-healthz": "restart", "falco-webhook": "restart"}
    checks = container.plan.checks
    assert checks["falco-healthz"].http == {"url": "http://localhost:8765/healthz"}
    assert checks["falco-webhook"].tcp == {"port": 9766, "host": "127.0.0.1"}
    assert container.service_statuses["falco"].value == "active"


def test_ports_and_active_status(ctx, falco_fs):
    out = deployed(ctx, falco_fs)

    assert out.opened_ports == {testing.TCPPort(8765), testing.TCPPort(9765)}
    assert out.unit_status == ACTIVE


def test_waiting_while_pebble_is_not_ready(ctx, falco_fs):
    container = falco_container(falco_fs, can_connect=False)
    state = testing.State(containers=pod(container), relations={peers()}, leader=True)
    out = ctx.run(ctx.on.config_changed(), state)

    assert out.unit_status == testing.WaitingStatus("waiting for Pebble in the falco container")


def test_missing_plugin_bundle_blocks_with_rebuild_hint(ctx, falco_fs, charm_root):
    (charm_root / "plugins" / "libjson.so").unlink()

    out = deployed(ctx, falco_fs)

    assert out.unit_status == testing.BlockedStatus(
        "charm package lacks libjson.so: rebuild it with charmcraft pack"
    )
    assert (falco_fs / "etc-falco" / "falco.yaml").read_text() == IMAGE_FALCO_YAML  # untouched


def test_a_package_without_the_charms_own_rules_blocks_with_rebuild_hint(
    ctx, falco_fs, charm_root
):
    (charm_root / CHARM_RULES_FILE).unlink()

    out = deployed(ctx, falco_fs)

    assert out.unit_status == testing.BlockedStatus(
        "charm package lacks src/falco/falco_k8s_rules.yaml: rebuild it with charmcraft pack"
    )
    assert (falco_fs / "etc-falco" / "falco.yaml").read_text() == IMAGE_FALCO_YAML


def test_identical_config_changed_pushes_and_restarts_nothing(ctx, falco_fs, calls: Calls):
    out = deployed(ctx, falco_fs, minimum_priority="warning")
    calls.reset()

    again = reconfigure(ctx, out, minimum_priority="warning")

    assert calls.pushed == []
    assert calls.restarted == []
    assert calls.started == []
    assert ctx.exec_history["falco"][-1].command[:3] == list(DRY_RUN_PREFIX)  # only the first
    assert len(ctx.exec_history["falco"]) == 1
    assert again.unit_status == ACTIVE


def test_an_upgrade_restarts_only_the_service_whose_shipped_files_changed(
    ctx, falco_fs, charm_root: Path, calls: Calls
):
    out = deployed(ctx, falco_fs)
    calls.reset()
    out = ctx.run(ctx.on.upgrade_charm(), out)
    assert calls.restarted == []  # same plugins, same forwarder code
    assert calls.pushed == []

    new_plugin = b"\x7fELF k8saudit 0.18.1 stand-in"
    (charm_root / "plugins" / "libk8saudit.so").write_bytes(new_plugin)
    out = ctx.run(ctx.on.upgrade_charm(), out)
    # Falco loads plugins only when it starts: a hot reload would keep the old one.
    assert calls.restarted == ["falco:falco"]
    assert (falco_fs / "usr-share-falco" / "plugins" / "libk8saudit.so").read_bytes() == new_plugin

    calls.reset()
    module = charm_root / "src" / "falco_forwarder" / "gelf.py"
    module.write_text(module.read_text() + "\n# a fix\n")
    ctx.run(ctx.on.upgrade_charm(), out)
    assert calls.restarted == ["forwarder:alert-forwarder"]


def test_falco_down_is_started_again_without_a_new_definition(ctx, falco_fs, calls: Calls):
    out = deployed(ctx, falco_fs)
    container = out.get_container("falco")
    stopped = dataclasses.replace(
        container, service_statuses={"falco": testing.pebble.ServiceStatus.INACTIVE}
    )
    calls.reset()

    ctx.run(ctx.on.update_status(), with_container(out, stopped))

    assert calls.started == ["falco:falco"]
    assert calls.restarted == []


# -- config ----------------------------------------------------------------------------------


def test_every_option_feeds_exactly_one_part_of_the_reconcile():
    groups = [
        {field.name for field in dataclasses.fields(model)}
        for model in (FalcoOptions, WebhookOptions, ForwarderOptions, HttpOutputOptions)
    ]
    assert sum(len(group) for group in groups) == len(set().union(*groups))
    options = yaml.safe_load((Path(__file__).parents[2] / "config.yaml").read_text())["options"]
    assert set(options) == set().union(*groups)


def test_minimum_priority_becomes_falco_priority(ctx, falco_fs):
    deployed(ctx, falco_fs, minimum_priority="Warning")

    assert falco_yaml(falco_fs)["priority"] == "warning"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"http_output": "ftp://x"},
            "http_output: only http:// and https:// URLs are accepted (got scheme 'ftp')",
        ),
        (
            {"http_output": "not a url"},
            "http_output: only http:// and https:// URLs are accepted (got no scheme)",
        ),
        ({"http_output": "http://"}, "http_output: the URL has no host"),
        ({"http_output": "http://h:99999/"}, "http_output: the URL's host or port is malformed"),
        (
            {"http_output": "http://user:s3cret@h:99999/"},
            "http_output: the URL's host or port is malformed",
        ),
        (
            {"minimum_priority": "loud"},
            "minimum_priority: must be one of emergency, alert, critical, error, warning, "
            "notice, informational, debug (got 'loud')",
        ),
        (
            {"alert_log_retention_mb": 8},
            "alert_log_retention_mb: must be 16 to 1000000 (MiB) (got 8)",
        ),
        (
            {"cluster_name": "prod eu/1"},
            "cluster_name: must be 1-100 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit",
        ),
    ],
)
def test_bad_config_blocks_and_keeps_last_good_falco_yaml(ctx, falco_fs, config, message):
    out = deployed(ctx, falco_fs)
    before = (falco_fs / "etc-falco" / "falco.yaml").read_bytes()

    blocked = reconfigure(ctx, out, **config)

    assert isinstance(blocked.unit_status, testing.BlockedStatus)
    assert blocked.unit_status.message.startswith(message)
    assert (falco_fs / "etc-falco" / "falco.yaml").read_bytes() == before

    recovered = reconfigure(ctx, blocked)
    assert recovered.unit_status == ACTIVE


@pytest.mark.skipif(not CHECKER.exists(), reason="../shared/tools/falco-config-check not present")
@pytest.mark.parametrize(
    "config",
    [{}, {"http_output": "https://alerts.example.com:8443/falco"}, {"cluster_name": "prod-eu-1"}],
)
def test_rendered_falco_yaml_passes_falco_config_check(ctx, falco_fs, config):
    deployed(ctx, falco_fs, **config)

    assert checker_findings(falco_fs / "etc-falco" / "falco.yaml") == []


def test_cluster_name_is_added_by_falco_to_every_rules_alert(ctx, falco_fs):
    out = deployed(ctx, falco_fs, cluster_name="prod-eu-1")

    assert out.unit_status == ACTIVE
    assert falco_yaml(falco_fs)["append_output"] == [{"extra_fields": [{"cluster": "prod-eu-1"}]}]
    assert reconfigure(ctx, out).unit_status == ACTIVE  # unset: no field
    assert "append_output" not in falco_yaml(falco_fs)


@pytest.mark.parametrize("name", ["prod\x1b[31m-eu", "prod\neu", "a" * 101, " prod", "-prod"])
def test_a_bad_cluster_name_blocks_without_echoing_it(ctx, falco_fs, name):
    out = deployed(ctx, falco_fs, cluster_name="prod-eu-1")

    blocked = reconfigure(ctx, out, cluster_name=name)

    assert isinstance(blocked.unit_status, testing.BlockedStatus)
    assert blocked.unit_status.message.startswith("cluster_name: must be 1-100 letters")
    assert name.strip() not in blocked.unit_status.message
    assert blocked.unit_status.message.isprintable()
    assert falco_yaml(falco_fs)["append_output"] == [{"extra_fields": [{"cluster": "prod-eu-1"}]}]


# -- show-rules ----------------------------------------------------------------------------------


def show_rules(ctx, state, **params) -> dict[str, Any]:
    ctx.run(ctx.on.action("show-rules", params=params), state)
    assert ctx.action_results is not None
    return ctx.action_results


def test_show_rules_asks_falco_and_returns_structured_results(ctx, falco_fs):
    out = deployed(ctx, falco_fs)

    results = show_rules(ctx, out)

    assert ctx.exec_history["falco"][-1].command == [*LIST_PREFIX, "-o", "json_output=true"]
    rules = json.loads(results["rules"])
    assert results["count"] == str(len(rules)) == "5"
    assert rules[0] == {
        "name": "Disallowed K8s User",
        "priority": "Warning",
        "source": "k8s_audit",
        "enabled": True,
        "tags": ["k8s"],
    }
    assert "raw" not in results


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"name": "pod"}, ["Create Privileged Pod", "Attach/Exec Pod", "Create HostNetwork Pod"]),
        ({"tag": "mitre_execution"}, ["Attach/Exec Pod"]),
        ({"minimum-priority": "error"}, ["K8s Secret Get Successfully"]),
        (
            {"name": "create", "minimum-priority": "warning"},
            ["Create Privileged Pod", "Create HostNetwork Pod"],
        ),
    ],
)
def test_show_rules_filters(ctx, falco_fs, params, names):
    out = deployed(ctx, falco_fs)

    results = show_rules(ctx, out, **params)

    assert [rule["name"] for rule in json.loads(results["rules"])] == names


def test_show_rules_reports_rules_switched_off_by_disabled_rules_as_disabled(ctx, falco_fs):
    # Falco's -L says enabled from the rule files; the rules: selection applies on top.
    out = deployed(ctx, falco_fs, disabled_rules="tag:k8s")

    rules = json.loads(show_rules(ctx, out)["rules"])

    assert len(rules) == 5
    assert {rule["enabled"] for rule in rules} == {False}


@pytest.mark.parametrize(
    ("enabled", "names"),
    [
        (False, ["Create Privileged Pod", "Attach/Exec Pod", "Create HostNetwork Pod"]),
        (True, ["Disallowed K8s User", "K8s Secret Get Successfully"]),
    ],
)
def test_show_rules_filters_on_enabled_as_falco_runs_them(ctx, falco_fs, enabled, names):
    out = deployed(ctx, falco_fs, disabled_rules="tag:mitre_privilege_escalation, *Pod")

    results = show_rules(ctx, out, enabled=enabled)

    assert [rule["name"] for rule in json.loads(results["rules"])] == names


def test_show_rules_raw_returns_rule_files(ctx, falco_fs):
    out = deployed(ctx, falco_fs)

    results = show_rules(ctx, out, raw=True)

    assert "# ---- /etc/falco/k8s_audit_rules.yaml ----" in results["raw"]
    assert "Disallowed K8s User" in results["raw"]
    assert f"# ---- /etc/falco/falco_k8s_rules.yaml ----\n{CHARM_RULES_TEXT}" in results["raw"]


def test_show_rules_fails_cleanly_without_pebble(ctx, falco_fs):
    container = falco_container(falco_fs, can_connect=False)

    with pytest.raises(testing.ActionFailed, match="Falco is not reachable yet"):
        ctx.run(ctx.on.action("show-rules"), testing.State(containers=pod(container)))


def test_first_deploy_with_a_bad_option_never_starts_falco_on_the_image_config(ctx, falco_fs):
    out = deployed(ctx, falco_fs, minimum_priority="loud")

    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith("minimum_priority: must be one of")
    assert "falco" not in out.get_container("falco").layers
    assert (falco_fs / "etc-falco" / "falco.yaml").read_text() == IMAGE_FALCO_YAML  # untouched
    with pytest.raises(testing.ActionFailed, match="Falco is not reachable yet"):
        show_rules(ctx, out)
    assert not any(LIST_PREFIX[-1] in e.command for e in ctx.exec_history.get("falco", []))


def test_show_rules_rejects_an_unknown_priority(ctx, falco_fs):
    out = deployed(ctx, falco_fs)

    with pytest.raises(testing.ActionFailed, match="unknown priority 'loud'"):
        show_rules(ctx, out, **{"minimum-priority": "loud"})


def test_show_rules_reports_falco_failure(ctx, falco_fs):
    out = deployed(ctx, falco_fs)
    error = "Error: could not load plugin libk8saudit.so\n"
    failing = falco_container(
        falco_fs, listing=testing.Exec(LIST_PREFIX, return_code=1, stderr=error)
    )
    state = with_container(
        out, dataclasses.replace(out.get_container("falco"), execs=failing.execs)
    )

    with pytest.raises(
        testing.ActionFailed, match="falco -L failed: Error: could not load plugin"
    ):
        show_rules(ctx, state)


def test_action_hooks_leave_status_alone(ctx, falco_fs):
    out = reconfigure(ctx, deployed(ctx, falco_fs), minimum_priority="loud")
    assert isinstance(out.unit_status, testing.BlockedStatus)

    after = ctx.run(ctx.on.action("show-rules"), out)

    assert after.unit_status == out.unit_status


def test_show_rules_raw_is_cut_to_what_juju_can_carry(ctx, falco_fs):
    big = "- list: allowed_namespaces\n  items: [" + ", ".join(["ns"] * 70_000) + "]\n"
    big += "  override:\n    items: append\n"
    out = deployed(ctx, falco_fs, custom_rules=big)

    results = show_rules(ctx, out, raw=True)

    assert len(results["raw"]) == 100_000
    assert int(results["raw-truncated"].split()[0]) > 100_000
