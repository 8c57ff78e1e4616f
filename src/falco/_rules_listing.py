"""What show-rules answers: Falco's ``-L`` listing, with falco.yaml's ``rules:`` selection applied.

Pure: data in, plain data out. ``falco -L`` reports each rule's ``enabled`` from the rule files
only; the ``rules:`` selection in falco.yaml changes the running ruleset after loading
(``load_rules_files.cpp`` @ 0.44.1). So the selection is applied here the way Falco's engine
applies it, in order, by name with Falco's ``*`` wildcard or by tag (``indexable_ruleset.h``,
``falco_utils.cpp::matches_wildcard``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import yaml

from constants import PRIORITIES
from falco._cli_answers import LoadedRule, RulesListingError


@dataclass(frozen=True)
class RuleSelection:
    """One entry of falco.yaml's ``rules:`` list: enable or disable by rule name and/or tag."""

    enable: bool
    rule: str = ""
    tag: str = ""

    def selects(self, rule: LoadedRule) -> bool:
        """Whether this entry switches ``rule``; an entry with both keys does both, as Falco."""
        by_name = bool(self.rule) and matches_wildcard(self.rule, rule.name)
        return by_name or (bool(self.tag) and self.tag in rule.tags)


def parse_rules_selection(falco_yaml: bytes) -> list[RuleSelection]:
    """Read the ``rules:`` selection from falco.yaml; entries Falco ignores are skipped."""
    config = yaml.safe_load(falco_yaml)
    rules = cast("dict[str, Any]", config).get("rules") if isinstance(config, dict) else None
    entries = cast("list[Any]", rules) if isinstance(rules, list) else []
    selection: list[RuleSelection] = []
    for entry in entries:
        for operation, target in (
            cast("dict[str, Any]", entry).items() if isinstance(entry, dict) else ()
        ):
            if operation in ("enable", "disable") and isinstance(target, dict):
                target = cast("dict[str, Any]", target)
                selection.append(
                    RuleSelection(
                        operation == "enable",
                        str(target.get("rule", "")),
                        str(target.get("tag", "")),
                    )
                )
    return selection


def apply_selection(
    rules: Iterable[LoadedRule], selection: list[RuleSelection]
) -> list[LoadedRule]:
    """Each rule's ``enabled`` as Falco runs it: the files' value, then each entry in order."""
    result: list[LoadedRule] = []
    for rule in rules:
        enabled = rule.enabled
        for entry in selection:
            if entry.selects(rule):
                enabled = entry.enable
        result.append(
            rule if enabled == rule.enabled else dataclasses.replace(rule, enabled=enabled)
        )
    return result


def matches_wildcard(pattern: str, name: str) -> bool:
    """Falco's rule-name match: ``*`` stands for any text, found at its first occurrence.

    Like Falco's own matcher, each literal part after a ``*`` binds to its first occurrence
    without backtracking, so e.g. ``*ab`` does not match ``abab``: what Falco does counts.
    A loop, not recursion: an option may hold thousands of ``*``.
    """
    first, *rest = pattern.split("*")
    if not rest:
        return pattern == name
    if not name.startswith(first):
        return False
    at = len(first)
    *middle, last = rest
    for literal in middle:
        found = name.find(literal, at)
        if found < 0:
            return False
        at = found + len(literal)
    if not last:
        return True
    found = name.find(last, at)
    return found >= 0 and found + len(last) == len(name)


def filter_rules(
    rules: list[LoadedRule],
    *,
    name: str = "",
    tag: str = "",
    minimum_priority: str = "",
    enabled: bool | None = None,
) -> list[LoadedRule]:
    """Rules matching every filter given: name contains, tag, priority floor, enabled state."""
    threshold = _severity(minimum_priority) if minimum_priority else len(PRIORITIES)
    needle = name.lower()
    return [
        rule
        for rule in rules
        if needle in rule.name.lower()
        and (not tag or tag in rule.tags)
        and _severity(rule.priority) <= threshold
        and (enabled is None or rule.enabled == enabled)
    ]


def _severity(priority: str) -> int:
    """Syslog order: 0 is the most severe. Falco prints 'Info' or 'Informational'."""
    key = priority.strip().lower()
    key = "informational" if key == "info" else key
    if key not in PRIORITIES:
        raise RulesListingError(
            f"unknown priority {priority!r}: expected one of {', '.join(PRIORITIES)}"
        )
    return PRIORITIES.index(key)


# Juju passes each action result as one command-line argument, which Linux caps at 128 KiB.
ACTION_RESULT_MAX_CHARS = 100_000


def show_rules_result(
    loaded: list[LoadedRule], params: Mapping[str, Any], raw: str | None = None
) -> dict[str, str]:
    """The action's results: the rules its ``params`` select, and, if given, the files' text."""
    enabled = params.get("enabled")
    rules = filter_rules(
        loaded,
        name=str(params.get("name", "")),
        tag=str(params.get("tag", "")),
        minimum_priority=str(params.get("minimum-priority", "")),
        enabled=None if enabled is None else bool(enabled),
    )
    results = {"count": str(len(rules))}
    results.update(fit_result("rules", json.dumps([rule.as_result() for rule in rules], indent=1)))
    if raw is not None:
        results.update(fit_result("raw", raw))
    return results


def fit_result(key: str, text: str) -> dict[str, str]:
    """One action result, cut to what Juju can carry and saying so rather than failing."""
    if len(text) <= ACTION_RESULT_MAX_CHARS:
        return {key: text}
    return {key: text[:ACTION_RESULT_MAX_CHARS], f"{key}-truncated": f"{len(text)} characters"}
