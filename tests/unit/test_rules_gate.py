"""The Falco change gate on its own: stage, dry-run, and only then swap in, whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ops import testing
from pebble_box import workload

from constants import FALCO_BIN, FALCO_CONFIG_DIR
from falco._falco_yaml import FalcoSettings
from falco._gate import FalcoFiles, GateRejectedError, apply, is_live, validate
from payload import Payload

STOCK = b"- rule: Disallowed K8s User\n  condition: kevt\n"
CHARM = b"- rule: K8s Audit Event Truncated\n  condition: kevt\n"
CUSTOM = "- list: allowed_k8s_users\n  items: [ci]\n  override:\n    items: append\n"
SETTINGS = FalcoSettings(priority="warning", rules_selection=[{"disable": {"tag": "k8s"}}])
FILES = FalcoFiles(SETTINGS, STOCK, CHARM, CUSTOM)
DRY_RUN = [FALCO_BIN, "-c", "/etc/falco/staging/falco.yaml", "--disable-source", "syscall"]
REJECTION = """\
Error: /etc/falco/staging/rules.d/custom_rules.yaml: Invalid
1 Errors:
In rules content: (/etc/falco/staging/rules.d/custom_rules.yaml:0:0)
    list 'allowed_k8s_users': (/etc/falco/staging/rules.d/custom_rules.yaml:1:2)
------
- list: allowed_k8s_users
  ^
------
LOAD_ERR_VALIDATE (Error validating rule/macro/list/exception objects): List has no items
"""


def accepting() -> set[testing.Exec]:
    return {testing.Exec(DRY_RUN, stdout="Falco initialized\n")}


def rejecting() -> set[testing.Exec]:
    return {testing.Exec(DRY_RUN, return_code=1, stderr=REJECTION)}


def test_the_layout_writes_rules_before_the_config_that_loads_them():
    layout = FILES.at("/etc/falco/staging")

    assert list(layout) == [
        "/etc/falco/staging/k8s_audit_rules.yaml",
        "/etc/falco/staging/falco_k8s_rules.yaml",
        "/etc/falco/staging/rules.d/custom_rules.yaml",
        "/etc/falco/staging/k8saudit-webhook.pem",  # None without TLS: removed if present
        "/etc/falco/staging/falco.yaml",
    ]
    config = yaml.safe_load(str(layout["/etc/falco/staging/falco.yaml"]))
    # The charm's rules after the stock ones they build on, before custom_rules that may
    # override or disable them.
    assert config["rules_files"] == [
        "/etc/falco/staging/k8s_audit_rules.yaml",
        "/etc/falco/staging/falco_k8s_rules.yaml",
        "/etc/falco/staging/rules.d",
    ]
    assert layout["/etc/falco/staging/falco_k8s_rules.yaml"] == CHARM
    assert config["priority"] == "warning"
    assert config["rules"] == [{"disable": {"tag": "k8s"}}]


def test_blank_custom_rules_mean_no_custom_file():
    assert (
        FalcoFiles(SETTINGS, STOCK, CHARM, "").at(FALCO_CONFIG_DIR)[
            "/etc/falco/rules.d/custom_rules.yaml"
        ]
        is None
    )


def test_a_remembered_candidate_comes_back_on_the_charms_own_shipped_rules():
    bundle = Payload(
        plugins={},
        stock_rules=b"- rule: newer stock\n",
        charm_rules=b"- rule: newer charm rule\n",
        forwarder={},
        intake={},
    )

    restored = FalcoFiles.from_json(FILES.to_json(), bundle)

    assert restored.settings.priority == "warning"
    assert restored.custom_rules == CUSTOM
    assert restored.stock_rules == bundle.stock_rules
    assert restored.charm_rules == bundle.charm_rules
    assert set(json.loads(FILES.to_json())) == {"settings", "custom_rules"}


@pytest.mark.parametrize(
    "text", ["{not json", "{}", '{"settings": {"nope": 1}, "custom_rules": ""}', "[" * 100_000]
)
def test_an_unreadable_remembered_candidate_is_a_value_error(text: str):
    bundle = Payload(plugins={}, stock_rules=STOCK, charm_rules=CHARM, forwarder={}, intake={})
    with pytest.raises(ValueError, match="unreadable remembered config"):
        FalcoFiles.from_json(text, bundle)


def test_apply_dry_runs_the_staged_candidate_then_swaps_it_in(tmp_path: Path):
    with workload(tmp_path, mount=FALCO_CONFIG_DIR, execs=accepting()) as (box, _):
        assert apply(box, FILES) is True
        assert is_live(box, FILES)
        assert apply(box, FILES) is False  # already live: no second dry-run
    assert (tmp_path / "rules.d" / "custom_rules.yaml").read_text() == CUSTOM
    assert (tmp_path / "staging" / "falco.yaml").is_file()


def test_a_rejected_candidate_never_touches_the_live_files(tmp_path: Path):
    with workload(tmp_path, mount=FALCO_CONFIG_DIR, execs=rejecting()) as (box, _):
        with pytest.raises(GateRejectedError) as rejected:
            apply(box, FILES)
        assert not is_live(box, FILES)
    assert str(rejected.value) == (
        "list 'allowed_k8s_users': LOAD_ERR_VALIDATE (Error validating rule/macro/list/exception"
        " objects): List has no items"
    )
    assert rejected.value.about_custom_rules
    assert rejected.value.output == REJECTION
    assert not (tmp_path / "falco.yaml").exists()
    assert not (tmp_path / "rules.d").exists()


def test_a_complaint_about_other_files_is_not_blamed_on_custom_rules(tmp_path: Path):
    plugin_error = {testing.Exec(DRY_RUN, return_code=1, stderr="Error: cannot load plugin\n")}
    with (
        workload(tmp_path, mount=FALCO_CONFIG_DIR, execs=plugin_error) as (box, _),
        pytest.raises(GateRejectedError) as rejected,
    ):
        validate(box, FILES)
    assert str(rejected.value) == "Error: cannot load plugin"
    assert not rejected.value.about_custom_rules


def test_removing_custom_rules_removes_the_file_but_keeps_the_directory(tmp_path: Path):
    with workload(tmp_path, mount=FALCO_CONFIG_DIR, execs=accepting()) as (box, _):
        apply(box, FILES)
        assert apply(box, FalcoFiles(SETTINGS, STOCK, CHARM, "")) is True
    assert (tmp_path / "rules.d").is_dir()
    assert not (tmp_path / "rules.d" / "custom_rules.yaml").exists()
