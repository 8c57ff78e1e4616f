"""Provider side of ``prometheus_scrape``: where Prometheus scrapes each of the pod's services.

Written from charm-relation-interfaces ``interfaces/prometheus_scrape/v0`` (schema.py): the
leader puts ``scrape_jobs``, ``scrape_metadata`` and ``alert_rules`` (JSON) in the app databag;
each unit puts its address and name in its unit databag. ``*`` in a target is each unit's address.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import ops

from constants import (
    FALCO_SERVICE,
    FORWARDER_PORT,
    FORWARDER_SERVICE,
    INTAKE_METRICS_PORT,
    INTAKE_SERVICE,
    WEBSERVER_PORT,
)

_TARGETS = (
    (FALCO_SERVICE, WEBSERVER_PORT),
    (FORWARDER_SERVICE, FORWARDER_PORT),
    (INTAKE_SERVICE, INTAKE_METRICS_PORT),
)


def scrape_jobs() -> list[dict[str, Any]]:
    """Falco's webserver, the forwarder and the intake, each labelled with its Pebble service."""
    return [
        {
            "job_name": name,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [f"*:{port}"], "labels": {"service": name}}],
        }
        for name, port in _TARGETS
    ]


def app_data(topology: Mapping[str, str], rules: Mapping[str, Any]) -> dict[str, str]:
    """The leader's app databag."""
    return {
        "scrape_jobs": json.dumps(scrape_jobs(), sort_keys=True),
        "scrape_metadata": json.dumps(dict(topology), sort_keys=True),
        "alert_rules": json.dumps(rules, sort_keys=True),
    }


def unit_data(address: str, unit_name: str) -> dict[str, str]:
    """Each unit's databag: where this unit is scraped."""
    return {"prometheus_scrape_unit_address": address, "prometheus_scrape_unit_name": unit_name}


def publish(
    relations: list[ops.Relation],
    *,
    app: ops.Application,
    unit: ops.Unit,
    leader: bool,
    app_fields: Mapping[str, str],
    unit_fields: Mapping[str, str],
) -> None:
    """Write both databags on every relation (only what changed is sent)."""
    for relation in relations:
        relation.data[unit].update(unit_fields)
        if leader:
            relation.data[app].update(app_fields)
