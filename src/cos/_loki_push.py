"""Requirer side of ``loki_push_api``: where Loki takes pushes, and the rules we send it.

Written from loki-k8s's ``loki_push_api`` library (v1) documentation: each Loki unit puts
``endpoint`` = JSON ``{"url": ".../loki/api/v1/push"}`` in its unit databag; the requirer's
leader puts ``metadata`` (its Juju topology) and ``alert_rules`` (JSON rules document) in its app
databag.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import ops

from falco_forwarder.config import url_problem
from options import InvalidStateError


def push_endpoints(relation: ops.Relation) -> dict[str, str]:
    """Each remote unit's push URL, by unit name; units that published none yet are left out.

    Raises:
        InvalidStateError: a unit's endpoint is not ``{"url": "http(s)://..."}``, naming the
            relation and the unit.
    """
    endpoints: dict[str, str] = {}
    for unit in sorted(relation.units, key=lambda u: u.name):
        raw = relation.data[unit].get("endpoint")
        if not raw:
            continue
        where = f"{relation.name} relation {relation.id}: {unit.name}'s endpoint"
        try:
            url: object = json.loads(raw)["url"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise InvalidStateError(f"{where} is not JSON with a url") from None
        if not isinstance(url, str):
            raise InvalidStateError(f"{where}: url must be a string")
        if problem := url_problem(url):
            raise InvalidStateError(f"{where}: {problem}")
        endpoints[unit.name] = url
    return endpoints


def app_data(topology: Mapping[str, str], rules: Mapping[str, Any]) -> dict[str, str]:
    """The leader's app databag."""
    return {
        "metadata": json.dumps(dict(topology), sort_keys=True),
        "alert_rules": json.dumps(rules, sort_keys=True),
    }
