"""Where alerts go, as one service: every sink from config and relations, and the forwarder.

The kinds in `SINK_KINDS` each read their option or relation; the forwarder then runs on all
of them. A bad option or relation datum, or a retention cap the alert-log storage cannot hold,
holds back the forwarder's config, so the running forwarder keeps delivering to the sinks it
has.
"""

from __future__ import annotations

import dataclasses

import ops

from constants import FORWARDER_CONTAINER, FORWARDER_PORT, FORWARDER_SERVICE, PEER_RELATION
from falco_forwarder.config import ConfigError, JujuTopology
from options import InvalidStateError, load_options
from payload import Payload
from peer_memory import UnitMemory
from report import Report
from sinks import _forwarder_service
from sinks._alert_log_storage import STORAGE, Volume, measure, retention_problem, space_note
from sinks._forwarder_config import ForwarderOptions
from sinks._kinds import SINK_KINDS
from workload import Workload

# Where the charm reads the forwarder's metrics (pod loopback); tests point it elsewhere.
METRICS_PORT = FORWARDER_PORT
# Longer lists are counted instead of named in the status.
SINK_NAMES_MAX_CHARS = 40


class AlertSinks:
    """The sinks of this unit and the forwarder container that delivers to them."""

    def __init__(self, charm: ops.CharmBase):
        self._charm = charm
        self._kinds = [kind(charm) for kind in SINK_KINDS]
        self.forwarder = Workload(charm.unit.get_container(FORWARDER_CONTAINER), FORWARDER_SERVICE)

    def events(self) -> list[ops.BoundEvent]:
        """The relation events after which the sinks may have changed."""
        return [event for kind in self._kinds for event in kind.events()]

    def converge(self, payload: Payload | None) -> Report:
        """Run the forwarder on every current sink; a change reloads it and spares Falco."""
        if payload is None:
            return Report()
        try:
            options = load_options(ForwarderOptions, self._charm.config)
            sinks = tuple(sink for kind in self._kinds for sink in kind.read())
        except InvalidStateError as exc:
            return Report.refused(exc)
        except ConfigError as exc:  # the forwarder's types check what a relation brought
            return Report(blocked=f"alert sinks: {exc}")
        volume = self._alert_log_volume()
        retention = options.alert_log_retention_mb
        if volume is not None and (problem := retention_problem(retention, volume)):
            return Report(blocked=problem)  # the running forwarder keeps its cap
        model, unit = self._charm.model, self._charm.unit
        topology = JujuTopology(model.name, model.uuid, self._charm.app.name, unit.name)
        report = _forwarder_service.reconcile(
            self.forwarder,
            sinks,
            topology,
            options,
            payload,
            memory=UnitMemory(model, PEER_RELATION),
            metrics_port=METRICS_PORT,
        )
        if volume is not None and (note := space_note(volume)):
            report = dataclasses.replace(report, notes=(note, *report.notes))
        if not sinks:
            return report
        names = ", ".join(sink.name for sink in sinks)
        if len(names) > SINK_NAMES_MAX_CHARS:
            names = f"{len(sinks)} sinks"
        return dataclasses.replace(report, summary=(f"alerts to {names}",))

    def _alert_log_volume(self) -> Volume | None:
        """The alert-log storage as mounted in the charm's container, if attached."""
        storages = self._charm.model.storages[STORAGE]
        return measure(storages[0].location) if storages else None
