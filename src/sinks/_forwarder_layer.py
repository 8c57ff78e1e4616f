"""The forwarder's Pebble layer: pure data, so tests and the charm agree on it."""

from __future__ import annotations

from typing import Any

from constants import FORWARDER_CONFIG, FORWARDER_PKG_DIR, FORWARDER_PORT, FORWARDER_SERVICE


def forwarder_layer(code_digest: str) -> dict[str, Any]:
    """The alert forwarder; its code digest in the environment restarts it on a charm upgrade.

    Config changes do not restart it: the charm sends SIGHUP and it reloads in place.
    """
    return {
        "summary": "Falco alert forwarder",
        "services": {
            FORWARDER_SERVICE: {
                "override": "replace",
                "summary": "Delivers Falco alerts to every sink with retries",
                "command": f"python3 -m falco_forwarder --config {FORWARDER_CONFIG}",
                "startup": "enabled",
                "environment": {
                    "PYTHONPATH": FORWARDER_PKG_DIR,
                    "FORWARDER_CODE_SHA256": code_digest,
                },
                "on-check-failure": {"forwarder-healthz": "restart"},
            }
        },
        "checks": {
            "forwarder-healthz": {
                "override": "replace",
                "level": "alive",
                "period": "10s",
                "threshold": 3,
                "http": {"url": f"http://127.0.0.1:{FORWARDER_PORT}/healthz"},
            }
        },
    }
