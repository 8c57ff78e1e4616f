"""The forwarder in its container: its code, its config file, its service; reloaded, not restarted.

Usable outside a charm: a `Workload`, plain data (the payload, the sinks, the topology) and
the unit's memory in, and a `Report` out, in the words the unit status needs.
"""

from __future__ import annotations

from constants import FORWARDER_CONFIG, FORWARDER_PKG_DIR
from falco_forwarder.config import JujuTopology, SinkConfig
from options import InvalidStateError
from payload import Payload, manifest_digest
from peer_memory import UnitMemory
from report import Report
from sinks._forwarder_config import ForwarderOptions, render_forwarder_config
from sinks._forwarder_layer import forwarder_layer
from workload import Workload, WorkloadError


def reconcile(
    forwarder: Workload,
    sinks: tuple[SinkConfig, ...],
    topology: JujuTopology,
    options: ForwarderOptions,
    payload: Payload,
    *,
    memory: UnitMemory,
    metrics_port: int,
) -> Report:
    """Run the forwarder on the current sinks; a sink change reloads it and spares Falco."""
    if not forwarder.can_connect():
        # With no sink there is nothing to deliver, so nothing to wait for.
        return Report(waiting="waiting for Pebble in the forwarder container" if sinks else "")
    try:
        text = render_forwarder_config(sinks, topology, options)
        settled = converge(forwarder, text, payload)
    except InvalidStateError as exc:
        return Report(blocked=str(exc))
    except WorkloadError as exc:
        return Report(waiting=f"forwarder container: {exc}; will retry")
    # A forwarder started or reloading just now has nothing to tell about these sinks yet.
    if not (sinks and settled):
        return Report()
    from sinks._delivery_status import forwarder_notes  # noqa: PLC0415 - only with settled sinks

    names = [sink.name for sink in sinks]
    return Report(notes=tuple(forwarder_notes(metrics_port, names, memory)))


def converge(forwarder: Workload, config_text: str, payload: Payload) -> bool:
    """Run the forwarder on ``config_text``; True when it was already running on it.

    A config change reloads it in place (SIGHUP): sinks that did not change keep delivering
    undisturbed. Raises WorkloadError when the container goes away or stalls mid-change.
    """
    forwarder.sync_tree(
        payload.forwarder,
        payload.forwarder_manifest,
        manifest_path=f"{FORWARDER_PKG_DIR}/.manifest",
    )
    # Mode 0600: the only file that may hold the sinks' auth headers.
    reconfigured = forwarder.push_if_changed(FORWARDER_CONFIG, config_text, permissions=0o600)
    started = forwarder.ensure_service(
        forwarder_layer(manifest_digest(payload.forwarder_manifest))
    )
    if reconfigured and not started:
        forwarder.signal("SIGHUP")
    return not started and not reconfigured
