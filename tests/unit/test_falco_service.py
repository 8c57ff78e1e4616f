"""Falco's own behaviour on a Workload, without a charm: candidate, ownership, rule listing."""

from __future__ import annotations

from pathlib import Path

import pytest
from charm_pod import CI_RULE, STOCK_RULES, falco_list_json
from ops import testing
from pebble_box import workload

import falco_service
from bundle import Bundle
from constants import FALCO_CONFIG_DIR
from falco_config import FalcoSettings, render_falco_yaml
from falco_output import RulesListingError
from pebble_layers import FALCO_COMMAND
from state import CharmConfig, InvalidStateError
from webhook_tls import WebhookTls

BUNDLE = Bundle(plugins={}, stock_rules=STOCK_RULES.encode(), forwarder={})
TLS = WebhookTls(pem=b"certificate, chain and key", ca_cert="CA")
LIST = [*FALCO_COMMAND, "-L", "-o", "json_output=true"]


def charm_falco_yaml(selection: list[dict[str, dict[str, str]]] | None = None) -> str:
    settings = FalcoSettings(rules_selection=selection or [])
    return render_falco_yaml(settings, ["/etc/falco/k8s_audit_rules.yaml"])


def test_the_candidate_carries_the_options_and_the_current_certificate():
    config = CharmConfig(minimum_priority="warning", custom_rules=CI_RULE)

    wanted = falco_service.candidate(config, BUNDLE, TLS)

    assert wanted.files.settings.priority == "warning"
    assert wanted.files.custom_rules == CI_RULE
    assert wanted.files.stock_rules == BUNDLE.stock_rules
    assert wanted.files.webhook_pem == TLS.pem
    assert wanted.notes == ()


def test_disabled_rules_that_select_nothing_are_passed_on_with_a_note():
    config = CharmConfig(disabled_rules="No Such Rule, tag:nope")

    wanted = falco_service.candidate(config, BUNDLE, None)

    assert wanted.notes == ("disabled_rules matched nothing: No Such Rule, tag:nope",)
    assert wanted.files.settings.rules_selection  # Falco still gets them


def test_an_unchanged_rules_text_is_not_checked_again():
    config = CharmConfig(custom_rules=CI_RULE)
    first = falco_service.candidate(config, BUNDLE, None)

    again = falco_service.candidate(config, BUNDLE, None, remembered=first.checked)

    assert again == first


def test_invalid_custom_rules_are_an_operator_problem():
    with pytest.raises(InvalidStateError, match="custom_rules"):
        falco_service.candidate(CharmConfig(custom_rules="- rule: [unclosed"), BUNDLE, None)


@pytest.mark.parametrize(
    ("live", "ours"),
    [
        (None, False),
        ("# the image's own falco.yaml\nengine:\n  kind: modern_ebpf\n", False),
        (charm_falco_yaml(), True),
    ],
)
def test_only_a_falco_yaml_the_charm_wrote_is_ours(tmp_path: Path, live: str | None, ours: bool):
    if live is not None:
        (tmp_path / "falco.yaml").write_text(live)
    with workload(tmp_path, mount=FALCO_CONFIG_DIR) as (box, _):
        assert falco_service.config_is_ours(box) is ours


def test_loaded_rules_show_what_falco_yamls_selection_switched_off(tmp_path: Path):
    selection = [{"disable": {"tag": "mitre_execution"}}]
    (tmp_path / "falco.yaml").write_text(charm_falco_yaml(selection))
    execs = {testing.Exec(LIST, stdout=falco_list_json())}
    with workload(tmp_path, mount=FALCO_CONFIG_DIR, execs=execs) as (box, _):
        rules = falco_service.loaded_rules(box)

    assert {rule.name for rule in rules if not rule.enabled} == {"Attach/Exec Pod"}
    assert len(rules) == 5


def test_a_failed_listing_says_why_in_one_line(tmp_path: Path):
    failing = {testing.Exec(LIST, return_code=1, stderr="Error: cannot load plugin k8saudit\n")}
    with (
        workload(tmp_path, mount=FALCO_CONFIG_DIR, execs=failing) as (box, _),
        pytest.raises(RulesListingError) as failed,
    ):
        falco_service.loaded_rules(box)

    assert str(failed.value) == "falco -L failed: Error: cannot load plugin k8saudit"


def test_the_rule_files_text_names_each_live_file(tmp_path: Path):
    (tmp_path / "k8s_audit_rules.yaml").write_text(STOCK_RULES)
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "custom_rules.yaml").write_text(CI_RULE)
    with workload(tmp_path, mount=FALCO_CONFIG_DIR) as (box, _):
        text = falco_service.rule_files_text(box)

    assert text == (
        f"# ---- /etc/falco/k8s_audit_rules.yaml ----\n{STOCK_RULES}\n"
        f"# ---- /etc/falco/rules.d/custom_rules.yaml ----\n{CI_RULE}"
    )


def test_without_custom_rules_the_text_is_the_stock_file_alone(tmp_path: Path):
    (tmp_path / "k8s_audit_rules.yaml").write_text(STOCK_RULES)
    with workload(tmp_path, mount=FALCO_CONFIG_DIR) as (box, _):
        assert falco_service.rule_files_text(box) == (
            f"# ---- /etc/falco/k8s_audit_rules.yaml ----\n{STOCK_RULES}"
        )
