"""What the charm tells COS on each hook: scrape jobs, rules, dashboards, log forwarding.

Imported only on hooks where a COS relation exists (or a logging one just went away): the
libraries it needs cost import time every other hook can skip.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

import ops
from charmlibs.interfaces.otlp import OtlpRequirer, RuleStore
from cosl import JujuTopology

from constants import (
    DASHBOARD_RELATION,
    LOGGING_RELATION,
    LOKI_SINK_RELATION,
    METRICS_RELATION,
    OTLP_SINK_RELATION,
)
from cos import _grafana_dashboard as grafana_dashboard
from cos import _loki_push as loki_push
from cos import _prometheus_scrape as prometheus_scrape
from cos._alert_rules import load_rules, rule_labels
from cos._log_forwarding import LAYER, target_changes
from options import InvalidStateError
from report import Report
from workload import Workload, WorkloadError

if TYPE_CHECKING:
    from cosl.types import OfficialRuleFileFormat

logger = logging.getLogger(__name__)

# What the charm ships for COS, beside this module.
_HERE = Path(__file__).parent
PROMETHEUS_RULES_DIR = _HERE / "prometheus_alert_rules"
LOKI_RULES_DIR = _HERE / "loki_alert_rules"
OTLP_RULES_DIR = _HERE / "otlp_alert_rules"
DASHBOARDS_DIR = _HERE / "grafana_dashboards"


def publish_cos(charm: ops.CharmBase, workloads: list[Workload]) -> Report:
    """Bring every COS relation's data, and the containers' log forwarding, up to date."""
    cos_topology = JujuTopology.from_charm(charm)
    topology = {key: str(value) for key, value in cos_topology.as_dict().items()}
    _publish_scrape(charm, topology)
    if charm.unit.is_leader():
        _publish_app_data(charm, cos_topology, topology)
    return _forward_logs(charm, workloads, topology)


def _publish_scrape(charm: ops.CharmBase, topology: Mapping[str, str]) -> None:
    relations = charm.model.relations[METRICS_RELATION]
    if not relations:
        return
    leader = charm.unit.is_leader()
    app_fields: Mapping[str, str] = {}
    if leader:  # only the leader writes the app databag: others need not read the rules
        rules = load_rules(PROMETHEUS_RULES_DIR, topology)
        app_fields = prometheus_scrape.app_data(topology, rules)
    prometheus_scrape.publish(
        relations,
        app=charm.app,
        unit=charm.unit,
        leader=leader,
        app_fields=app_fields,
        unit_fields=prometheus_scrape.unit_data(socket.getfqdn(), charm.unit.name),
    )


def _publish_app_data(
    charm: ops.CharmBase, cos_topology: JujuTopology, topology: Mapping[str, str]
) -> None:
    """The leader's part: dashboards, and the rules that go with the log relations."""
    relations = charm.model.relations
    if relations[DASHBOARD_RELATION]:
        dashboards = grafana_dashboard.app_data(DASHBOARDS_DIR, topology)
        for relation in relations[DASHBOARD_RELATION]:
            relation.data[charm.app].update(dashboards)
    # The Loki rules read the alert streams, which only send-loki-logs creates.
    for relation in relations[LOGGING_RELATION]:
        relation.data[charm.app].update(loki_push.app_data(topology, {}))
    if relations[LOKI_SINK_RELATION]:
        data = loki_push.app_data(topology, load_rules(LOKI_RULES_DIR, topology))
        for relation in relations[LOKI_SINK_RELATION]:
            relation.data[charm.app].update(data)
    if relations[OTLP_SINK_RELATION]:
        rules = load_rules(OTLP_RULES_DIR, topology)
        store = RuleStore(cos_topology).add_logql(cast("OfficialRuleFileFormat", rules))
        OtlpRequirer(charm, OTLP_SINK_RELATION, rules=store).publish()


def _forward_logs(
    charm: ops.CharmBase, workloads: list[Workload], topology: Mapping[str, str]
) -> Report:
    """Point each container's Pebble at the Loki units of the ``logging`` relations.

    A Loki unit's bad endpoint blocks, naming it, and leaves the log targets as they were.
    """
    endpoints: dict[str, str] = {}
    try:
        for relation in charm.model.relations[LOGGING_RELATION]:
            endpoints.update(loki_push.push_endpoints(relation))
    except InvalidStateError as exc:
        return Report.refused(exc)
    labels = {**rule_labels(topology), "juju_unit": topology["unit"]}
    for workload in workloads:
        if not workload.can_connect():
            continue
        try:
            if changes := target_changes(workload.log_targets(), endpoints, labels):
                workload.add_log_targets(LAYER, changes)
        except WorkloadError as exc:
            # The next hook converges again; a log target is not worth a failed hook.
            logger.warning("log forwarding not updated: %s", exc)
    return Report()
