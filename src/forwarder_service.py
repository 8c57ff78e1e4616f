"""The forwarder in its container: its code, its config file, its service; reloaded, not restarted.

Usable outside a charm: a `Workload` and plain data in (the bundle, the sinks, the topology),
and a `ForwarderReport` out, in the words the unit status needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import alert_log_storage
from alert_log_storage import retention_problem, space_note
from alert_sinks import render_forwarder_config
from bundle import Bundle, manifest_digest
from constants import FORWARDER_CONFIG, FORWARDER_PKG_DIR
from falco_forwarder.config import JujuTopology, SinkConfig
from pebble_layers import forwarder_layer
from state import InvalidStateError
from workload import Workload, WorkloadError


@dataclass(frozen=True)
class ForwarderReport:
    """What converging the forwarder found; the charm maps it to statuses."""

    blocked: str = ""
    """An operator-fixable reason the forwarder's config cannot be written (Blocked)."""
    waiting: str = ""
    """Why the forwarder is not on the current sinks yet (Waiting); the next hook retries."""
    notes: tuple[str, ...] = ()
    """Failing sinks and lost alerts, worth saying in an Active status."""


def reconcile(
    forwarder: Workload,
    sinks: tuple[SinkConfig, ...],
    topology: JujuTopology,
    retention_mb: int,
    bundle: Bundle,
    *,
    metrics_port: int,
    storage: Path | None = None,
) -> ForwarderReport:
    """Run the forwarder on the current sinks; a sink change reloads it and spares Falco.

    ``storage`` is where the alert-log storage is mounted here: a retention cap that does not
    fit it is refused (the forwarder keeps its config), and a nearly full one is a note.
    """
    volume = None if storage is None else alert_log_storage.measure(storage)
    if volume is not None and (problem := retention_problem(retention_mb, volume)):
        return ForwarderReport(blocked=problem)
    space = () if volume is None else tuple(filter(None, [space_note(volume)]))
    if not forwarder.can_connect():
        # With no sink there is nothing to deliver, so nothing to wait for.
        return ForwarderReport(
            waiting="waiting for Pebble in the forwarder container" if sinks else ""
        )
    try:
        text = render_forwarder_config(sinks, topology, retention_mb)
        settled = converge(forwarder, text, bundle)
    except InvalidStateError as exc:
        return ForwarderReport(blocked=str(exc))
    except WorkloadError as exc:
        return ForwarderReport(waiting=f"forwarder container: {exc}; will retry")
    # A forwarder started or reloading just now has nothing to tell about these sinks yet.
    if not (sinks and settled):
        return ForwarderReport(notes=space)
    from delivery_status import forwarder_notes  # noqa: PLC0415 - only with settled sinks

    names = [sink.name for sink in sinks]
    return ForwarderReport(notes=(*space, *forwarder_notes(metrics_port, names)))


def converge(forwarder: Workload, config_text: str, bundle: Bundle) -> bool:
    """Run the forwarder on ``config_text``; True when it was already running on it.

    A config change reloads it in place (SIGHUP): sinks that did not change keep delivering
    undisturbed. Raises WorkloadError when the container goes away or stalls mid-change.
    """
    forwarder.sync_tree(
        bundle.forwarder, bundle.forwarder_manifest, manifest_path=f"{FORWARDER_PKG_DIR}/.manifest"
    )
    # Mode 0600: the only file that may hold the sinks' auth headers.
    reconfigured = forwarder.push_if_changed(FORWARDER_CONFIG, config_text, permissions=0o600)
    started = forwarder.ensure_service(forwarder_layer(manifest_digest(bundle.forwarder_manifest)))
    if reconfigured and not started:
        forwarder.signal("SIGHUP")
    return not started and not reconfigured
