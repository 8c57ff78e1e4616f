"""Parsing and filtering what `falco -L` reports."""

from __future__ import annotations

import json

import pytest
from charm_pod import falco_list_json

from rules_listing import LoadedRule, RulesListingError, filter_rules, parse_rules_listing


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
