"""The plugin fields a Falco rules file reads, and which plugin extracts each.

Shared by the plugin contract tests, the truncation rule's test and the extraction benchmark.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from falco_plugin_api import Plugin

# A field as the rules name it: ka.target.name, %ka.user.name, jevt.value[/stage].
FIELD_REFERENCE = re.compile(r"(?<![\w.])((?:ka|jevt|json)\.[\w.]*\w)(\[[^\]]*\])?")


def fields_used_by(rules: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """Each ka.*/jevt.*/json.* field in the rules' and macros' conditions and outputs: its args."""
    used: dict[str, set[str]] = {}
    for item in rules:
        texts = [item.get("condition", "")] if "macro" in item else []
        if "rule" in item:
            texts += [item.get("condition", ""), item.get("output", "")]
        for text in texts:
            for name, arg in FIELD_REFERENCE.findall(text):
                used.setdefault(name, set()).add(arg)
    return used


def field_requests(rules: Iterable[dict[str, Any]]) -> list[str]:
    """Every distinct ``name`` or ``name[arg]`` the rules read, sorted, as extract() takes them."""
    return sorted(name + arg for name, args in fields_used_by(rules).items() for arg in args)


def owner(name: str, k8saudit: Plugin, json_plugin: Plugin) -> Plugin:
    """The plugin that extracts ``name``: k8saudit for ka.*, json for jevt.* and json.*."""
    return k8saudit if name.startswith("ka.") else json_plugin
