"""The forwarder in its container: its code, its config file, its service; reloaded, not restarted.

Usable outside a charm: a `Workload` and plain data in (the bundle, the config text).
"""

from __future__ import annotations

from bundle import Bundle, manifest_digest
from constants import FORWARDER_CONFIG, FORWARDER_PKG_DIR
from pebble_layers import forwarder_layer
from workload import Workload


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
