"""What Falco gets from the config: typed settings and checked rules, each text checked once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from charm_pod import CI_RULE

from falco import _options as state
from falco._falco_yaml import FalcoSettings
from falco._options import FalcoOptions as CharmConfig
from falco._options import falco_state
from options import InvalidStateError

STOCK = b"- rule: Disallowed K8s User\n  condition: kevt\n  tags: [k8s]\n"
CHARM = b"- rule: K8s Audit Event Truncated\n  condition: kevt\n  tags: [falco_k8s]\n"
SHIPPED = (STOCK, CHARM)
RULES = CI_RULE


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every custom_rules text actually checked (parsed), in order."""
    seen: list[str] = []
    read = state.read_custom_rules

    def spy(text: str) -> Any:
        seen.append(text)
        return read(text)

    monkeypatch.setattr(state, "read_custom_rules", spy)
    return seen


def test_falco_state_returns_the_typed_settings_falco_needs():
    config = CharmConfig(minimum_priority="warning", custom_rules=RULES, disabled_rules="tag:k8s")

    falco = falco_state(config, SHIPPED)

    assert falco.settings == FalcoSettings(
        priority="warning",
        rules_selection=[{"disable": {"tag": "k8s"}}],
    )
    assert falco.custom_rules == RULES
    assert falco.unmatched == ()


def test_custom_rules_may_turn_off_or_extend_the_charms_own_rules():
    # Loaded after the charm's file, custom_rules can switch its rule off or append to its list.
    text = (
        "- rule: K8s Audit Event Truncated\n  enabled: false\n"
        "- list: falco_k8s_body_inspected_resources\n  items: [leases]\n"
        "  override:\n    items: append\n"
    )

    assert falco_state(CharmConfig(custom_rules=text), SHIPPED).custom_rules == text


def test_disabled_rules_match_the_charms_own_rules_as_the_stock_ones():
    config = CharmConfig(disabled_rules="K8s Audit Event Truncated, tag:falco_k8s, Nope")

    assert falco_state(config, SHIPPED).unmatched == ("Nope",)


def test_an_unchanged_text_is_not_checked_again(checks: list[str]):
    config = CharmConfig(custom_rules=RULES, disabled_rules="tag:nope")
    first = falco_state(config, SHIPPED)

    again = falco_state(config, SHIPPED, first.checked)

    assert checks == [RULES]
    assert again == first
    assert again.unmatched == ("tag:nope",)


@pytest.mark.parametrize(
    "change",
    [
        {"custom_rules": RULES.replace("NOTICE", "ERROR")},
        {"disabled_rules": "Exec by CI"},
        {"cluster_name": "prod-eu-1"},
        {"shipped": (STOCK + b"- rule: Another\n  condition: kevt\n", CHARM)},
        {"shipped": (STOCK, CHARM + b"- rule: Another\n  condition: kevt\n")},
    ],
)
def test_any_change_to_what_the_check_reads_checks_again(
    checks: list[str], change: dict[str, Any]
):
    shipped = change.pop("shipped", SHIPPED)
    first = falco_state(CharmConfig(custom_rules=RULES), SHIPPED)

    falco_state(CharmConfig(**{"custom_rules": RULES, **change}), shipped, first.checked)

    assert len(checks) == 2


@pytest.mark.parametrize("remembered", ["", "{not json", "[]", "[" * 100_000, '{"key": "x"}'])
def test_nothing_usable_remembered_means_a_full_check(checks: list[str], remembered: str):
    falco_state(CharmConfig(custom_rules=RULES), SHIPPED, remembered)
    assert checks == [RULES]


def test_a_blank_text_stays_blank_when_remembered():
    config = CharmConfig(custom_rules="# nothing yet\n")
    first = falco_state(config, SHIPPED)

    again = falco_state(config, SHIPPED, first.checked)

    assert first.custom_rules == again.custom_rules == ""
    assert json.loads(again.checked)["blank"] is True


def test_a_bad_text_is_refused_every_time(checks: list[str]):
    config = CharmConfig(custom_rules="- rule: x\n")
    for _ in range(2):
        with pytest.raises(InvalidStateError, match="custom_rules item 1"):
            falco_state(config, SHIPPED)
    assert len(checks) == 2


def test_detection_off_is_remembered_with_the_check(checks: list[str]):
    config = CharmConfig(custom_rules=RULES, disabled_rules="*")
    first = falco_state(config, SHIPPED)

    again = falco_state(config, SHIPPED, first.checked)

    assert first.detection_off
    assert again.detection_off
    assert checks == [RULES]


def _hook_loads_the_gelf_library(remembered: str) -> bool:
    """Whether a fresh process, as every hook is, loads the gelf library (and pydantic)."""
    code = (
        "import sys; from falco._options import FalcoOptions, falco_state; "
        f"falco_state(FalcoOptions(cluster_name='prod-eu-1'), {SHIPPED!r}, sys.argv[1]); "
        "print('charms.falco_k8s.v0.gelf' in sys.modules, 'pydantic' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}:{root / 'lib'}"}
    result = subprocess.run(
        [sys.executable, "-c", code, remembered],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return {"True True": True, "False False": False}[result.stdout.strip()]


def test_a_cluster_name_is_checked_by_the_gelf_library_once_not_in_every_hook():
    first = falco_state(CharmConfig(cluster_name="prod-eu-1"), SHIPPED)

    assert first.settings.cluster_name == "prod-eu-1"
    assert _hook_loads_the_gelf_library("")
    assert not _hook_loads_the_gelf_library(first.checked)


@pytest.mark.parametrize("name", ["prod eu", "-prod", "a" * 101, "prod\x1b[31m", "pr%d"])
def test_a_bad_cluster_name_is_refused_every_time_naming_the_rule(name: str):
    remembered = falco_state(CharmConfig(cluster_name="prod-eu-1"), SHIPPED).checked
    for _ in range(2):
        with pytest.raises(InvalidStateError) as refused:
            falco_state(CharmConfig(cluster_name=name), SHIPPED, remembered)
        assert str(refused.value) == (
            "cluster_name: must be 1-100 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
