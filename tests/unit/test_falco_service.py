"""Falco's own behaviour on a Workload, without a charm: candidate, ownership, rule listing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ops
import pytest
from charm_pod import (
    CHARM_RULES_TEXT,
    CI_RULE,
    DRY_RUN_PREFIX,
    STOCK_RULES,
    falco_container,
    falco_list_json,
    new_falco_fs,
)
from ops import testing
from pebble_box import workload

from constants import FALCO_CONFIG_DIR, FALCO_SERVICE
from falco import _service as falco_service
from falco._cli_answers import RulesListingError
from falco._falco_yaml import FalcoSettings, render_falco_yaml
from falco._gate import FalcoFiles
from falco._layer import FALCO_COMMAND
from falco._options import FalcoOptions as CharmConfig
from options import InvalidStateError
from payload import Payload
from workload import Workload

BUNDLE = Payload(
    plugins={},
    stock_rules=STOCK_RULES.encode(),
    charm_rules=CHARM_RULES_TEXT.encode(),
    forwarder={},
    intake={},
)
LIST = [*FALCO_COMMAND, "-L", "-o", "json_output=true"]


def charm_falco_yaml(selection: list[dict[str, dict[str, str]]] | None = None) -> str:
    settings = FalcoSettings(rules_selection=selection or [])
    return render_falco_yaml(settings, ["/etc/falco/k8s_audit_rules.yaml"])


def test_the_candidate_carries_the_options():
    config = CharmConfig(minimum_priority="warning", custom_rules=CI_RULE)

    wanted = falco_service.candidate(config, BUNDLE)

    assert wanted.files.settings.priority == "warning"
    assert wanted.files.custom_rules == CI_RULE
    assert wanted.files.stock_rules == BUNDLE.stock_rules
    assert wanted.files.charm_rules == BUNDLE.charm_rules
    assert wanted.notes == ()


def test_disabled_rules_that_select_nothing_are_passed_on_with_a_note():
    config = CharmConfig(disabled_rules="No Such Rule, tag:nope")

    wanted = falco_service.candidate(config, BUNDLE)

    assert wanted.notes == ("disabled_rules matched nothing: No Such Rule, tag:nope",)
    assert wanted.files.settings.rules_selection  # Falco still gets them


def test_disabled_rules_select_the_charms_own_rules_too():
    config = CharmConfig(disabled_rules="K8s Audit Event Truncated, tag:falco_k8s")

    wanted = falco_service.candidate(config, BUNDLE)

    assert wanted.notes == ()
    assert wanted.files.settings.rules_selection == [
        {"disable": {"rule": "K8s Audit Event Truncated"}},
        {"disable": {"tag": "falco_k8s"}},
    ]


def test_an_unchanged_rules_text_is_not_checked_again():
    config = CharmConfig(custom_rules=CI_RULE)
    first = falco_service.candidate(config, BUNDLE)

    again = falco_service.candidate(config, BUNDLE, remembered=first.checked)

    assert again == first


def test_invalid_custom_rules_are_an_operator_problem():
    with pytest.raises(InvalidStateError, match="custom_rules"):
        falco_service.candidate(CharmConfig(custom_rules="- rule: [unclosed"), BUNDLE)


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
    (tmp_path / "falco_k8s_rules.yaml").write_text(CHARM_RULES_TEXT)
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "custom_rules.yaml").write_text(CI_RULE)
    with workload(tmp_path, mount=FALCO_CONFIG_DIR) as (box, _):
        text = falco_service.rule_files_text(box)

    assert text == (
        f"# ---- /etc/falco/k8s_audit_rules.yaml ----\n{STOCK_RULES}\n"
        f"# ---- /etc/falco/falco_k8s_rules.yaml ----\n{CHARM_RULES_TEXT}\n"
        f"# ---- /etc/falco/rules.d/custom_rules.yaml ----\n{CI_RULE}"
    )


def test_without_custom_rules_the_text_is_the_stock_file_alone(tmp_path: Path):
    (tmp_path / "k8s_audit_rules.yaml").write_text(STOCK_RULES)
    with workload(tmp_path, mount=FALCO_CONFIG_DIR) as (box, _):
        assert falco_service.rule_files_text(box) == (
            f"# ---- /etc/falco/k8s_audit_rules.yaml ----\n{STOCK_RULES}"
        )


@contextmanager
def falco_pod(fs: Path, dry_run: testing.Exec | None = None) -> Iterator[Workload]:
    """The falco container of the pod (its real mounts and simulated Falco), as a Workload."""
    ctx = testing.Context(ops.CharmBase, meta={"name": "falco", "containers": {"falco": {}}})
    state = testing.State(containers={falco_container(fs, dry_run=dry_run)})
    with ctx(ctx.on.update_status(), state) as manager:
        yield Workload(manager.charm.unit.get_container("falco"), FALCO_SERVICE)


def live_falco_yaml(fs: Path) -> str:
    return (fs / "etc-falco" / "falco.yaml").read_text()


def test_an_accepted_candidate_goes_live_and_is_to_be_remembered(tmp_path: Path):
    fs = new_falco_fs(tmp_path)
    wanted = falco_service.candidate(CharmConfig(custom_rules=CI_RULE), BUNDLE).files
    with falco_pod(fs) as falco:
        outcome = falco_service.converge(falco, wanted, BUNDLE, "")
        assert falco.is_running()

    assert outcome == falco_service.FalcoOutcome(accepted=wanted.to_json())
    assert (fs / "etc-falco" / "rules.d" / "custom_rules.yaml").read_text() == CI_RULE
    assert (fs / "alerts" / "log").is_dir()


def test_a_refused_candidate_is_named_and_never_goes_live(tmp_path: Path):
    fs = new_falco_fs(tmp_path)  # the image's own falco.yaml, as after a pod reschedule
    last_good = FalcoFiles(FalcoSettings(priority="warning"), *BUNDLE.shipped_rules, CI_RULE)
    config = CharmConfig(minimum_priority="error", custom_rules=CI_RULE)
    refused = falco_service.candidate(config, BUNDLE)
    rejection = testing.Exec(
        DRY_RUN_PREFIX, return_code=1, stderr="Error: custom_rules.yaml: Invalid\n"
    )
    staged = fs / "etc-falco" / "staging" / "falco.yaml"
    with falco_pod(fs, dry_run=rejection) as falco:
        outcome = falco_service.converge(falco, refused.files, BUNDLE, last_good.to_json())

    assert outcome.rejected == "custom_rules rejected by Falco: Error: custom_rules.yaml: Invalid"
    assert outcome.accepted == ""
    # Falco refused the candidate, and with it the restore dry-run: nothing went live.
    assert "modern_ebpf" in live_falco_yaml(fs)
    assert staged.is_file()


def test_the_last_good_is_restored_when_there_is_no_candidate(tmp_path: Path):
    fs = new_falco_fs(tmp_path)
    last_good = FalcoFiles(FalcoSettings(priority="warning"), *BUNDLE.shipped_rules, CI_RULE)
    with falco_pod(fs) as falco:
        outcome = falco_service.converge(falco, None, BUNDLE, last_good.to_json())
        assert falco.is_running()
        assert falco_service.config_is_ours(falco)

    assert outcome == falco_service.FalcoOutcome()
    assert "priority: warning" in live_falco_yaml(fs)
    assert (fs / "etc-falco" / "rules.d" / "custom_rules.yaml").read_text() == CI_RULE


def test_without_a_candidate_or_a_last_good_falco_is_left_alone(tmp_path: Path):
    fs = new_falco_fs(tmp_path)
    with falco_pod(fs) as falco:
        outcome = falco_service.converge(falco, None, BUNDLE, "")
        assert not falco.is_running()  # the image's config would not start: no service for it

    assert outcome == falco_service.FalcoOutcome()
    assert "modern_ebpf" in live_falco_yaml(fs)
