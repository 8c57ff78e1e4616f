"""Read the rules Falco reports it loaded (``falco -L`` JSON) and filter them for show-rules.

Pure: text in, plain data out. Falco is asked rather than the files parsed, so the answer
includes overrides, appends and ``rules:`` selection exactly as Falco applied them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, cast

from falco_config import PRIORITIES


class RulesListingError(ValueError):
    """Falco's answer could not be read."""


@dataclass(frozen=True)
class LoadedRule:
    """One rule as Falco loaded it."""

    name: str
    priority: str
    source: str
    enabled: bool
    tags: tuple[str, ...]

    def as_result(self) -> dict[str, Any]:
        """Plain JSON-ready form for action results."""
        result = asdict(self)
        result["tags"] = list(self.tags)
        return result


def parse_rules_listing(stdout: str) -> list[LoadedRule]:
    """Parse the JSON document ``falco -L -o json_output=true`` prints on stdout."""
    document = _last_json_object(stdout)
    rules = document.get("rules")
    if not isinstance(rules, list):
        raise RulesListingError("falco -L output has no rules list")
    loaded: list[LoadedRule] = []
    for entry in cast("list[Any]", rules):
        info = cast("dict[str, Any]", entry).get("info") if isinstance(entry, dict) else None
        if not isinstance(info, dict):
            raise RulesListingError("falco -L output has a rule without info")
        info = cast("dict[str, Any]", info)
        loaded.append(
            LoadedRule(
                name=str(info.get("name", "")),
                priority=str(info.get("priority", "")),
                source=str(info.get("source", "")),
                enabled=bool(info.get("enabled", True)),
                tags=tuple(str(tag) for tag in cast("list[Any]", info.get("tags") or [])),
            )
        )
    return loaded


def filter_rules(
    rules: list[LoadedRule],
    *,
    name: str = "",
    tag: str = "",
    minimum_priority: str = "",
) -> list[LoadedRule]:
    """Rules whose name contains ``name``, carrying ``tag``, at ``minimum_priority`` or above."""
    threshold = _severity(minimum_priority) if minimum_priority else len(PRIORITIES)
    needle = name.lower()
    return [
        rule
        for rule in rules
        if needle in rule.name.lower()
        and (not tag or tag in rule.tags)
        and _severity(rule.priority) <= threshold
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


def _last_json_object(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.lstrip().startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RulesListingError(f"falco -L printed invalid JSON: {exc}") from None
            if isinstance(value, dict):
                return cast("dict[str, Any]", value)
    raise RulesListingError("falco -L printed no JSON document")
