"""Parsing and filtering what `falco -L` reports."""

from __future__ import annotations

import json

import pytest
import yaml
from charm_pod import falco_list_json

from falco._cli_answers import LoadedRule, RulesListingError, parse_rules_listing
from falco._rules_listing import (
    RuleSelection,
    apply_selection,
    filter_rules,
    matches_wildcard,
    parse_rules_selection,
)


def test_parses_the_json_line_after_log_lines():
    stdout = "Fri Nov 27 05:07:26 2026: Loading rules from:\n" + falco_list_json(enabled=False)

    rules = parse_rules_listing(stdout)

    assert rules[1] == LoadedRule(
        name="Create Privileged Pod",
        priority="Warning",
        source="k8s_audit",
        enabled=False,
        tags=("k8s", "mitre_privilege_escalation"),
    )


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("", "no JSON document"),
        ("{not json", "invalid JSON"),
        (json.dumps({"macros": []}), "no rules list"),
        (json.dumps({"rules": [{"details": {}}]}), "rule without info"),
    ],
)
def test_unreadable_answers_are_reported(stdout: str, message: str):
    with pytest.raises(RulesListingError, match=message):
        parse_rules_listing(stdout)


def test_info_is_informational_for_the_priority_filter():
    rules = [
        LoadedRule("a", "Info", "k8s_audit", True, ()),
        LoadedRule("b", "Debug", "k8s_audit", True, ()),
    ]

    assert [r.name for r in filter_rules(rules, minimum_priority="informational")] == ["a"]
    assert [r.name for r in filter_rules(rules, minimum_priority="Debug")] == ["a", "b"]


def test_an_unknown_priority_from_falco_is_reported():
    with pytest.raises(RulesListingError, match="unknown priority 'Loud'"):
        filter_rules([LoadedRule("a", "Loud", "k8s_audit", True, ())], minimum_priority="debug")


def rule(name: str, *tags: str, enabled: bool = True) -> LoadedRule:
    return LoadedRule(name, "Warning", "k8s_audit", enabled, tags)


def selection(*entries: dict[str, dict[str, str]]) -> list[RuleSelection]:
    return parse_rules_selection(yaml.safe_dump({"rules": list(entries)}).encode())


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("Create Privileged Pod", "Create Privileged Pod", True),
        ("Create Privileged", "Create Privileged Pod", False),
        ("Create*", "Create Privileged Pod", True),
        ("*Pod", "Create Privileged Pod", True),
        ("*Privileged*", "Create Privileged Pod", True),
        ("C*e P*d", "Create Privileged Pod", False),  # `d` binds to the d of "Privileged"
        ("C*e P*", "Create Privileged Pod", True),
        ("***", "anything", True),
        ("*ab", "abab", False),  # Falco binds `ab` to its first occurrence and never backtracks
        ("*ab", "xab", True),
    ],
)
def test_wildcards_match_as_falcos_engine_does(pattern, name, matches):
    assert matches_wildcard(pattern, name) is matches


def test_selection_applies_in_order_on_top_of_the_rule_files():
    rules = [rule("A", "k8s"), rule("B", "k8s", "net"), rule("C", enabled=False)]
    chosen = selection(
        {"disable": {"tag": "k8s"}},
        {"enable": {"rule": "B"}},
        {"enable": {"rule": "C"}},
    )

    applied = apply_selection(rules, chosen)

    assert [(r.name, r.enabled) for r in applied] == [("A", False), ("B", True), ("C", True)]


def test_an_entry_with_rule_and_tag_switches_both():
    chosen = selection({"disable": {"rule": "A", "tag": "net"}})

    applied = apply_selection([rule("A"), rule("B", "net"), rule("C")], chosen)

    assert [r.enabled for r in applied] == [False, False, True]


@pytest.mark.parametrize(
    "text", [b"", b"rules: 3", b"rules: [x, {other: {}}, {disable: 1}]", b"[]"]
)
def test_selections_falco_ignores_select_nothing(text: bytes):
    assert parse_rules_selection(text) == []


def test_filter_on_enabled():
    rules = [rule("A"), rule("B", enabled=False)]
    assert [r.name for r in filter_rules(rules, enabled=False)] == ["B"]
    assert [r.name for r in filter_rules(rules, enabled=True)] == ["A"]
    assert len(filter_rules(rules)) == 2


def test_a_pattern_with_thousands_of_wildcards_is_no_recursion_error():
    name = "a" * 5000

    assert matches_wildcard("a*" * 5000, name)
    assert not matches_wildcard("a*" * 5000 + "b", name)
