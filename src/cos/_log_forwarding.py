"""Pebble log forwarding to Loki: both services' output, labelled with the Juju topology.

One Pebble log target per Loki unit, in a layer of its own (so the services' own layers, and
their restart logic, are never touched). A target whose Loki unit went away is switched off
(``services: [-all]``) rather than removed: a layer cannot delete what another layer added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LAYER = "log-forwarding"
TARGET_PREFIX = "loki-"


def log_targets(endpoints: Mapping[str, str], labels: Mapping[str, str]) -> dict[str, Any]:
    """Targets sending every service's logs to each endpoint (by Loki unit name)."""
    return {
        _target_name(unit): {
            "override": "replace",
            "type": "loki",
            "location": url,
            "services": ["all"],
            "labels": dict(labels),
        }
        for unit, url in endpoints.items()
    }


def target_changes(
    current: Mapping[str, Any], endpoints: Mapping[str, str], labels: Mapping[str, str]
) -> dict[str, Any]:
    """The targets to add or replace so the plan forwards to exactly ``endpoints``."""
    wanted = log_targets(endpoints, labels)
    for name, target in current.items():
        stale = name.startswith(TARGET_PREFIX) and name not in wanted
        if stale and target.get("services") != ["-all"]:
            wanted[name] = {**target, "override": "replace", "services": ["-all"]}
    return {name: t for name, t in wanted.items() if not _same(current.get(name), t)}


def _same(current: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """Whether the plan already has ``wanted`` (the plan may leave out ``override``)."""
    if current is None:
        return False
    return {k: v for k, v in current.items() if k != "override"} == {
        k: v for k, v in wanted.items() if k != "override"
    }


def _target_name(unit: str) -> str:
    return TARGET_PREFIX + unit.replace("/", "-")
