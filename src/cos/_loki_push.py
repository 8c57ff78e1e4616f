"""Requirer side of ``loki_push_api``: where Loki takes pushes, and the rules we send it.

Written from loki-k8s's ``loki_push_api`` library (v1) documentation: each Loki unit puts
``endpoint`` = JSON ``{"url": ".../loki/api/v1/push"}`` in its unit databag; the requirer's
leader puts ``metadata`` (its Juju topology) and ``alert_rules`` (JSON rules document) in its app
databag.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import ops

logger = logging.getLogger(__name__)


def push_endpoints(relation: ops.Relation) -> dict[str, str]:
    """Each remote unit's push URL, by unit name; units without a usable one are left out."""
    endpoints: dict[str, str] = {}
    for unit in sorted(relation.units, key=lambda u: u.name):
        raw = relation.data[unit].get("endpoint")
        if not raw:
            continue
        try:
            url = json.loads(raw)["url"]
        except (ValueError, KeyError, TypeError):
            logger.warning("%s: ignoring %s's malformed endpoint", relation.name, unit.name)
            continue
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            endpoints[unit.name] = url
    return endpoints


def app_data(topology: Mapping[str, str], rules: Mapping[str, Any]) -> dict[str, str]:
    """The leader's app databag."""
    return {
        "metadata": json.dumps(dict(topology), sort_keys=True),
        "alert_rules": json.dumps(rules, sort_keys=True),
    }
