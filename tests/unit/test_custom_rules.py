"""Tests for the custom_rules gate and the disabled-rules parser."""

import pytest
import yaml
from charm_pod import CI_RULE
from hypothesis import given, settings
from hypothesis import strategies as st

from falco import _custom_rules as custom_rules
from falco._custom_rules import (
    MAX_CUSTOM_RULES_BYTES,
    CustomRulesError,
    DisabledRules,
    check_custom_rules,
    parse_disabled_rules,
    read_custom_rules,
    rule_names,
)

# What an operator would really paste: every kind of item, in the shapes Falco accepts.
REALISTIC_RULES = """\
- required_engine_version: 0.31.0

- required_plugin_versions:
    - name: k8saudit
      version: 0.7.0
    - name: json
      version: 0.7.0

# Our CI deploys with its own service account: stop flagging it.
- list: allowed_k8s_users
  items: ["system:serviceaccount:ci:deployer"]
  override:
    items: append

- list: ci_namespaces
  items: [ci, ci-staging]

- macro: user_known_exec_pod_activities
  condition: (ka.target.namespace in (ci_namespaces))
  override:
    condition: replace

- rule: Secret Read By CI Outside CI Namespaces
  desc: The CI service account read a secret outside the CI namespaces.
  condition: >
    kevt and secret and kget
    and ka.user.name = "system:serviceaccount:ci:deployer"
    and not ka.target.namespace in (ci_namespaces)
  output: >
    CI read a secret outside its namespaces
    (user=%ka.user.name secret=%ka.target.name ns=%ka.target.namespace)
  priority: WARNING
  source: k8s_audit
  tags: [k8s, ci]
  exceptions:
    - name: known_secrets
      fields: [ka.target.namespace, ka.target.name]
      values:
        - [default, ci-registry-pull]

- rule: Disallowed K8s User
  enabled: false

- rule: Create Disallowed Namespace
  condition: and not ka.target.name startswith "ci-"
  override:
    condition: append

- rule: Attach/Exec Pod
  priority: info
  enabled: yes
  override:
    priority: replace
    enabled: replace

- list: allowed_namespaces
  items: [monitoring]
  append: true
"""

# Two items so the failing one is item 2 and its line (7) differs from its index.
ALLOW_CI_WITHOUT_CONDITION = """\
- list: allowed_k8s_users
  items: ["system:serviceaccount:ci:deployer"]
  override:
    items: append

# CI deploys through a dedicated service account.
- rule: Allow CI
  desc: CI created a deployment.
  output: CI deployment (user=%ka.user.name)
  priority: NOTICE
  source: k8s_audit
"""

NEW_RULE = """\
- rule: Pod Exec In Production
  desc: Someone exec'd into a production pod.
  condition: kevt_started and pod_subresource and ka.target.namespace = prod
  output: Exec in production (user=%ka.user.name pod=%ka.target.name)
  priority: {priority}
  source: k8s_audit
"""


def rule_item(**fields: str) -> str:
    """A one-item rules document whose rule item has exactly the given fields."""
    lines = [f"  {key.replace('_', '-')}: {value}" for key, value in fields.items()]
    return "- rule: R\n" + "\n".join(lines) + "\n"


def test_realistic_rules_are_returned_unchanged():
    assert check_custom_rules(REALISTIC_RULES) is REALISTIC_RULES


@pytest.mark.parametrize(
    "priority",
    [
        "EMERGENCY",
        "Alert",
        "critical",
        "error",
        "Warning",
        "notice",
        "informational",
        "INFO",
        "debug",
    ],
)
def test_every_falco_priority_is_accepted_in_any_case(priority: str):
    text = NEW_RULE.format(priority=priority)
    assert check_custom_rules(text) == text


@pytest.mark.parametrize("enabled", ["false", "False", "OFF", "no", "n", "Y", "true", '"true"'])
def test_enabled_accepts_what_falco_decodes_as_boolean(enabled: str):
    text = f"- rule: Disallowed K8s User\n  enabled: {enabled}\n"
    assert check_custom_rules(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "-\n- list: ci_namespaces\n  items: [ci]\n",  # Falco skips a null entry
        "[]\n",
        "---\n- list: a\n  items: []\n---\n# nothing here\n---\n- macro: b\n  condition: c\n",
        "- rule: Legacy Append\n  condition: and not ka.user.name = ci\n  append: true\n",
        "- rule: Disallowed K8s User\t\n  enabled:\tfalse\t\n",  # tabs as YAML 1.2 allows
    ],
)
def test_other_shapes_falco_accepts(text: str):
    assert check_custom_rules(text) == text


@pytest.mark.parametrize(
    "text", ["", "   \n\t\n", "null", "~\n", "# only a comment\n", "---\n...\n---\nnull\n"]
)
def test_blank_input_gives_empty_rules(text: str):
    assert check_custom_rules(text) == ""


def test_size_cap_is_inclusive():
    assert check_custom_rules("#" * MAX_CUSTOM_RULES_BYTES) == ""


def test_oversized_input_is_refused_before_parsing():
    # Parsing this would report deep nesting; the size check must come first.
    text = "[" * 2_000_000
    with pytest.raises(CustomRulesError) as caught:
        check_custom_rules(text)
    assert str(caught.value) == (
        "custom_rules is 2000000 bytes; the limit is 1048576 bytes (1 MiB)"
    )


def test_size_is_counted_in_utf8_bytes():
    with pytest.raises(CustomRulesError, match="is 1200000 bytes"):
        check_custom_rules("é" * 600_000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            bytes(range(256)).decode("latin-1") * 8,
            "custom_rules is not text: non-printable character U+0000 at line 1",
        ),
        (
            "- rule: R\n  enabled: false\n\x1b[31m\n",
            "custom_rules is not text: non-printable character U+001B at line 3",
        ),
        ("- list: \ud800\n", "custom_rules is not text: non-printable character U+D800 at line 1"),
    ],
)
def test_binary_garbage_is_not_text(text: str, message: str):
    with pytest.raises(CustomRulesError) as caught:
        check_custom_rules(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- rule: R\n  enabled: false\n  desc: a: b\n",
            "custom_rules: YAML error at line 3, column 10: mapping values are not allowed here",
        ),
        ("- *ci\n", "custom_rules: YAML error at line 1, column 3: found undefined alias 'ci'"),
        ("[" * 5000 + "]" * 5000, "custom_rules: YAML is nested too deeply"),
    ],
)
def test_unparsable_yaml_names_the_position(text: str, message: str):
    with pytest.raises(CustomRulesError) as caught:
        check_custom_rules(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rule: Allow CI\nenabled: false\n",
            "custom_rules must be a YAML list of items such as '- rule: ...', got a mapping at"
            " line 1",
        ),
        (
            "- list: a\n  items: []\n---\njust some words\n",
            "custom_rules must be a YAML list of items such as '- rule: ...', got a plain value"
            " at line 4",
        ),
    ],
)
def test_top_level_must_be_a_list(text: str, message: str):
    with pytest.raises(CustomRulesError) as caught:
        check_custom_rules(text)
    assert str(caught.value) == message


def test_missing_condition_names_item_index_name_and_line():
    with pytest.raises(CustomRulesError) as caught:
        check_custom_rules(ALLOW_CI_WITHOUT_CONDITION)
    assert str(caught.value) == (
        "custom_rules item 2 (rule 'Allow CI', line 7): missing 'condition'"
    )


def test_items_are_numbered_across_documents():
    text = "- list: a\n  items: []\n---\n-\n- macro: m\n"
    with pytest.raises(CustomRulesError) as caught:
        check_custom_rules(text)
    assert str(caught.value) == "custom_rules item 3 (macro 'm', line 5): missing 'condition'"


ALL_KINDS = "'rule', 'macro', 'list', 'required_engine_version', 'required_plugin_versions'"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- list: a\n  items: []\n- [a, b]\n",
            "custom_rules item 2 (line 3): must be a mapping such as 'rule: ...', got a list",
        ),
        (
            "- Disallowed K8s User\n",
            "custom_rules item 1 (line 1): must be a mapping such as 'rule: ...', got a plain"
            " value",
        ),
        (
            "- rlue: Disallowed K8s User\n  enabled: false\n",
            f"custom_rules item 1 (line 1): needs exactly one of {ALL_KINDS}; found 'rlue',"
            " 'enabled'",
        ),
        (
            "- rule: a\n  macro: b\n  condition: c\n",
            f"custom_rules item 1 (line 1): needs exactly one of {ALL_KINDS}; found 'rule',"
            " 'macro'",
        ),
        (
            "- {}\n",
            f"custom_rules item 1 (line 1): needs exactly one of {ALL_KINDS}; found no fields",
        ),
        (
            "- rule: R\n  enabled: true\n  enabled: false\n",
            "custom_rules item 1 (line 1): field 'enabled' is given twice",
        ),
        ("- ? [rule]\n  : R\n", "custom_rules item 1 (line 1): field names must be plain strings"),
    ],
)
def test_each_item_is_one_mapping_of_a_known_kind(text: str, message: str):
    with pytest.raises(CustomRulesError) as caught:
        check_custom_rules(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- rule: ''\n  enabled: false\n", "(rule, line 1): the name must be a non-empty string"),
        ("- macro:\n  condition: c\n", "(macro, line 1): the name must be a non-empty string"),
        ("- list: [a]\n  items: []\n", "(list, line 1): the name must be a non-empty string"),
        (
            "- required_engine_version: ''\n",
            "(required_engine_version, line 1): "
            "'required_engine_version' must be a non-empty string",
        ),
        (
            "- required_plugin_versions: k8saudit\n",
            "(required_plugin_versions, line 1): 'required_plugin_versions' must be a list",
        ),
        ("- macro: m\n  cond: c\n", "(macro 'm', line 1): missing 'condition'"),
        ("- macro: m\n  condition: ''\n", "(macro 'm', line 1): 'condition' must be a non-empty"),
        ("- list: l\n", "(list 'l', line 1): needs 'items' as a list"),
        ("- list: l\n  items: ci\n", "(list 'l', line 1): needs 'items' as a list"),
    ],
)
def test_names_and_required_fields_of_other_kinds(text: str, message: str):
    with pytest.raises(CustomRulesError) as caught:
        check_custom_rules(text)
    assert str(caught.value).startswith("custom_rules item 1 ")
    assert message in str(caught.value)


NEW_RULE_FIELDS = {
    "desc": "d",
    "condition": "ka.verb = create",
    "output": "o",
    "priority": "warning",
    "source": "k8s_audit",
}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"tags": "[k8s]"},
            "needs 'condition', 'output', 'desc', 'priority' and 'source:"
            " k8s_audit' to define a rule, 'enabled' to turn an existing one on or off, or"
            " 'override' to change it",
        ),
        ({**NEW_RULE_FIELDS, "output": ""}, "'output' must be a non-empty string"),
        ({**NEW_RULE_FIELDS, "desc": "[a, b]"}, "'desc' must be a non-empty string"),
        ({**NEW_RULE_FIELDS, "priority": ""}, "'priority' must be a non-empty string"),
        (
            {**NEW_RULE_FIELDS, "priority": "warn"},
            "priority 'warn' is not one of emergency,"
            " alert, critical, error, warning, notice, informational, debug",
        ),
        (
            {k: v for k, v in NEW_RULE_FIELDS.items() if k != "source"},
            "missing 'source: k8s_audit' (Falco defaults to the syscall source, which never fires"
            " in this audit-only deployment)",
        ),
        (
            {**NEW_RULE_FIELDS, "source": "syscall"},
            "source 'syscall' would never fire: this"
            " charm runs Falco audit-only, so rules need 'source: k8s_audit'",
        ),
        ({**NEW_RULE_FIELDS, "source": "''"}, "source '' would never fire"),
        ({"enabled": "maybe"}, "'enabled' must be true or false"),
        ({"enabled": "tRUE"}, "'enabled' must be true or false"),
        ({"enabled": ""}, "'enabled' must be true or false"),
        ({"condition": "and x", "append": "sure"}, "'append' must be true or false"),
    ],
)
def test_rule_fields(fields: dict[str, str], message: str):
    with pytest.raises(CustomRulesError) as caught:
        check_custom_rules(rule_item(**fields))
    assert str(caught.value).startswith("custom_rules item 1 (rule 'R', line 1): ")
    assert message in str(caught.value)


def test_a_complete_new_rule_passes():
    text = rule_item(**NEW_RULE_FIELDS, skip_if_unknown_filter="true")
    assert check_custom_rules(text) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- list: l\n  items: [a]\n  override: append\n",
            "(list 'l', line 1): 'override' must map fields to 'append' or 'replace'",
        ),
        (
            "- rule: R\n  enabled: false\n  override: {}\n",
            "(rule 'R', line 1): 'override' must map fields to 'append' or 'replace'",
        ),
        (
            "- list: allowed_k8s_users\n  items: [a]\n  override:\n    items: merge\n",
            "(list 'allowed_k8s_users', line 1): override of 'items' must be 'append' or"
            " 'replace'",
        ),
        (
            "- list: l\n  items: [a]\n  override:\n    condition: append\n",
            "(list 'l', line 1): a list's 'condition' cannot be overridden with 'append'",
        ),
        (
            "- rule: R\n  priority: debug\n  override:\n    priority: append\n",
            "(rule 'R', line 1): a rule's 'priority' cannot be overridden with 'append'",
        ),
        (
            "- rule: R\n  source: k8s_audit\n  override:\n    source: replace\n",
            "(rule 'R', line 1): a rule's 'source' cannot be overridden with 'replace'",
        ),
        (
            "- rule: Create Disallowed Namespace\n  override:\n    condition: append\n",
            "(rule 'Create Disallowed Namespace', line 1): overrides 'condition' (append) but"
            " gives no 'condition'",
        ),
        (
            "- rule: R\n  condition: and x\n  output: o\n  override:\n    condition: append\n",
            "(rule 'R', line 1): 'output' is given but has no entry under 'override'",
        ),
        (
            "- macro: m\n  condition: or x\n  append: true\n  override:\n    condition: append\n",
            "(macro 'm', line 1): 'override' cannot be combined with the legacy 'append: true'",
        ),
        (
            "- rule: R\n  priority: loud\n  override:\n    priority: replace\n",
            "(rule 'R', line 1): priority 'loud' is not one of",
        ),
        (
            "- rule: R\n  enabled: nah\n  override:\n    enabled: replace\n",
            "(rule 'R', line 1): 'enabled' must be true or false",
        ),
        (
            "- rule: R\n  condition: and x\n  source: syscall\n"
            "  override:\n    condition: append\n",
            "(rule 'R', line 1): source 'syscall' would never fire",
        ),
    ],
)
def test_overrides(text: str, message: str):
    with pytest.raises(CustomRulesError) as caught:
        check_custom_rules(text)
    assert str(caught.value).startswith("custom_rules item 1 ")
    assert message in str(caught.value)


# Fragments that combine into many near-miss rules files, to reach the item checks.
YAML_FRAGMENTS = [
    "- ",
    "\n",
    "  ",
    "rule: R",
    "macro: m",
    "list: l",
    "condition: c",
    "output: o",
    "desc: d",
    "priority: info",
    "source: k8s_audit",
    "source: syscall",
    "enabled: false",
    "append: true",
    "items: [a]",
    "items:",
    "override:",
    "condition: append",
    "items: replace",
    "tags: [k8s]",
    "{",
    "}",
    "[",
    "]",
    ": ",
    ", ",
    "~",
    "&a ",
    "*a",
    "? ",
    "---",
    "required_engine_version: 1",
    "required_plugin_versions: []",
    "'",
    '"',
    "#",
    "\t",
]


def accepted_or_refused_cleanly(text: str) -> bool:
    """The contract: the text back (or "" if blank), or a CustomRulesError with a message."""
    try:
        return check_custom_rules(text) in ("", text)
    except CustomRulesError as err:
        return bool(str(err))


@settings(deadline=None)
@given(st.text())
def test_any_text_is_either_accepted_or_refused_cleanly(text: str):
    assert accepted_or_refused_cleanly(text)


@settings(deadline=None, max_examples=300)
@given(st.lists(st.sampled_from(YAML_FRAGMENTS), max_size=40).map("".join))
def test_any_rules_like_text_is_either_accepted_or_refused_cleanly(text: str):
    assert accepted_or_refused_cleanly(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", DisabledRules()),
        (" ,, ,", DisabledRules()),
        ("Disallowed K8s User", DisabledRules(names=("Disallowed K8s User",))),
        (
            "  Create Disallowed Pod ,tag: k8s,Attach/Exec Pod  ",
            DisabledRules(names=("Create Disallowed Pod", "Attach/Exec Pod"), tags=("k8s",)),
        ),
        ("tag:, tag:  ,rule", DisabledRules(names=("rule",))),
        (
            "B, A, B, tag:y, tag:x, tag: y, A",
            DisabledRules(names=("B", "A"), tags=("y", "x")),
        ),
    ],
)
def test_parse_disabled_rules(value: str, expected: DisabledRules):
    assert parse_disabled_rules(value) == expected


def test_falco_selection_disables_rules_then_tags():
    selection = parse_disabled_rules("tag:k8s, Disallowed K8s User").falco_selection()
    assert selection == [
        {"disable": {"rule": "Disallowed K8s User"}},
        {"disable": {"tag": "k8s"}},
    ]


def test_nothing_disabled_selects_nothing():
    assert parse_disabled_rules("").falco_selection() == []


@given(st.text())
def test_disabled_entries_are_trimmed_non_empty_and_unique(value: str):
    disabled = parse_disabled_rules(value)
    for entries in (disabled.names, disabled.tags):
        assert len(set(entries)) == len(entries)
        assert all(entry and entry == entry.strip() and "," not in entry for entry in entries)


STOCK = """\
- rule: Disallowed K8s User
  condition: kevt
  tags: [k8s]
- rule: Create Privileged Pod
  condition: kevt
  tags: [k8s, mitre_privilege_escalation]
- macro: kevt
  condition: jevt.value[/stage] = ResponseComplete
"""


@pytest.mark.parametrize(
    ("value", "unmatched"),
    [
        ("Disallowed K8s User, tag:k8s", []),
        ("Create *, tag:mitre_privilege_escalation", []),
        ("Disallowed K8s Users", ["Disallowed K8s Users"]),
        ("kevt", ["kevt"]),  # a macro, not a rule
        ("Create [Privileged] Pod, tag:nope", ["Create [Privileged] Pod", "tag:nope"]),
        ("Allow CI", []),  # defined by the custom rules
    ],
)
def test_unmatched_disabled_rules(value, unmatched):
    custom = "- rule: Allow CI\n  condition: kevt\n  tags: [ci]\n"

    rules = (rule_names(STOCK), rule_names(custom))
    assert parse_disabled_rules(value).unmatched(*rules) == unmatched


def test_unmatched_skips_unparsable_rules_text():
    rules = (rule_names("- rule: ["), rule_names(STOCK))
    assert parse_disabled_rules("x").unmatched(*rules) == ["x"]


def test_custom_rules_are_indexed_from_the_same_parse_that_checks_them():
    rules = read_custom_rules(REALISTIC_RULES).rules
    assert rules == rule_names(REALISTIC_RULES)
    assert rules.names


@pytest.mark.parametrize("loader", ["CSafeLoader", "SafeLoader"])
def test_messages_keep_their_line_numbers_with_either_yaml_parser(monkeypatch, loader):
    monkeypatch.setattr(custom_rules, "_LOADER", getattr(yaml, loader))
    with pytest.raises(CustomRulesError, match=r"YAML error at line 4, column 1: expected ','"):
        check_custom_rules("- rule: x\n  desc: y\n  tags: [a\n")
    with pytest.raises(CustomRulesError, match=r"item 2 \(rule 'B', line 4\): missing 'output'"):
        check_custom_rules(
            "- rule: A\n  enabled: false\n\n- rule: B\n  desc: d\n  condition: c\n"
            "  priority: INFO\n  source: k8s_audit\n"
        )


@pytest.mark.parametrize(
    ("value", "every_rule"),
    [
        ("*", True),
        ("tag:k8s", True),
        ("Disallowed K8s User, Create *", True),
        ("Disallowed K8s User, tag:mitre_privilege_escalation", True),
        ("Disallowed K8s User", False),
        ("tag:mitre_privilege_escalation", False),
        ("", False),
    ],
)
def test_disabling_every_rule_is_told_apart(value: str, every_rule: bool):
    assert parse_disabled_rules(value).disables_every_rule(rule_names(STOCK)) is every_rule


def test_a_custom_rule_left_on_keeps_detection_on():
    custom = read_custom_rules(CI_RULE).rules

    assert not parse_disabled_rules("tag:k8s").disables_every_rule(rule_names(STOCK), custom)
