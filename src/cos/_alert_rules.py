"""The alert rules the charm ships, made specific to one application before they are sent.

Rule files use ``%%juju_topology%%`` where the application's label matchers go; each rule also
gets the topology as labels, and each group a name unique to the application, as COS expects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PLACEHOLDER = "%%juju_topology%%"
_INVALID_GROUP_CHARS = re.compile(r"[^a-zA-Z0-9_:]")


def expression_matchers(topology: Mapping[str, str]) -> str:
    """PromQL/LogQL label matchers for the application: model, model UUID, application.

    Never the unit: rules go over app data, one copy for every unit.
    """
    keys = ("model", "model_uuid", "application")
    return ", ".join(f'juju_{key}="{topology[key]}"' for key in keys)


def rule_labels(topology: Mapping[str, str]) -> dict[str, str]:
    """The topology labels every rule carries (COS routes and groups alerts by them)."""
    labels = {f"juju_{key}": topology[key] for key in ("model", "model_uuid", "application")}
    labels["juju_charm"] = topology["charm_name"]
    return labels


def load_rules(directory: Path, topology: Mapping[str, str]) -> dict[str, Any]:
    """Every ``*.rules`` file in ``directory`` as one rules document, made specific to the app."""
    matchers = expression_matchers(topology)
    labels = rule_labels(topology)
    prefix = f"{topology['model']}_{topology['model_uuid'][:8]}_{topology['application']}"
    groups: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.rules")):
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            rules = [
                {
                    **rule,
                    "expr": rule["expr"].replace(PLACEHOLDER, matchers),
                    "labels": {**rule.get("labels", {}), **labels},
                }
                for rule in group["rules"]
            ]
            name = _INVALID_GROUP_CHARS.sub("_", f"{prefix}_{group['name']}_alerts")
            groups.append({"name": name, "rules": rules})
    return {"groups": groups}
