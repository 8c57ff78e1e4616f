"""What the charm tells COS on each hook: scrape jobs, rules, dashboards, log forwarding.

Imported only on hooks where a COS relation exists (or a logging one just went away): the
libraries it needs cost import time every other hook can skip.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, cast

import ops
from charmlibs.interfaces.otlp import OtlpRequirer, RuleStore
from cosl import JujuTopology

import grafana_dashboard
import loki_push
import prometheus_scrape
from constants import (
    DASHBOARD_RELATION,
    DASHBOARDS_DIR,
    LOGGING_RELATION,
    LOKI_RULES_DIR,
    LOKI_SINK_RELATION,
    METRICS_RELATION,
    OTLP_RULES_DIR,
    OTLP_SINK_RELATION,
    PROMETHEUS_RULES_DIR,
)
from cos_rules import load_rules
from log_forwarding import forward_logs

if TYPE_CHECKING:
    from cosl.types import OfficialRuleFileFormat

logger = logging.getLogger(__name__)


def publish_cos(charm: ops.CharmBase, containers: list[ops.Container]) -> None:
    """Bring every COS relation's data, and the containers' log forwarding, up to date."""
    cos_topology = JujuTopology.from_charm(charm)
    topology = {key: str(value) for key, value in cos_topology.as_dict().items()}
    relations = charm.model.relations
    leader = charm.unit.is_leader()
    loki_rules = load_rules(charm.charm_dir / LOKI_RULES_DIR, topology)
    prometheus_scrape.publish(
        relations[METRICS_RELATION],
        app=charm.app,
        unit=charm.unit,
        leader=leader,
        app_fields=prometheus_scrape.app_data(
            topology, load_rules(charm.charm_dir / PROMETHEUS_RULES_DIR, topology)
        ),
        unit_fields=prometheus_scrape.unit_data(socket.getfqdn(), charm.unit.name),
    )
    if leader:
        dashboards = grafana_dashboard.app_data(charm.charm_dir / DASHBOARDS_DIR, topology)
        for relation in relations[DASHBOARD_RELATION]:
            relation.data[charm.app].update(dashboards)
        # The Loki rules read the alert streams, which only send-loki-logs creates.
        for name, rules in ((LOGGING_RELATION, {}), (LOKI_SINK_RELATION, loki_rules)):
            for relation in relations[name]:
                relation.data[charm.app].update(loki_push.app_data(topology, rules))
        if relations[OTLP_SINK_RELATION]:
            otlp_rules = load_rules(charm.charm_dir / OTLP_RULES_DIR, topology)
            store = RuleStore(cos_topology).add_logql(cast("OfficialRuleFileFormat", otlp_rules))
            OtlpRequirer(charm, OTLP_SINK_RELATION, rules=store).publish()
    endpoints: dict[str, str] = {}
    for relation in relations[LOGGING_RELATION]:
        endpoints.update(loki_push.push_endpoints(relation))
    labels = {f"juju_{key}": value for key, value in topology.items() if key != "charm_name"}
    labels["juju_charm"] = topology["charm_name"]
    for container in containers:
        try:
            if container.can_connect():
                forward_logs(container, endpoints, labels)
        except (ops.pebble.ConnectionError, ops.pebble.APIError) as exc:
            # The next hook converges again; a log target is not worth a failed hook.
            logger.warning("log forwarding in %s not updated: %s", container.name, exc)
