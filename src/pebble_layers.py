"""Pebble layers for the two services: pure data, so tests and the charm agree on them."""

from __future__ import annotations

from typing import Any

from constants import (
    FALCO_BIN,
    FALCO_CONFIG,
    FALCO_SERVICE,
    FORWARDER_CONFIG,
    FORWARDER_PKG_DIR,
    FORWARDER_PORT,
    FORWARDER_SERVICE,
    K8SAUDIT_PORT,
    WEBSERVER_PORT,
)

FALCO_COMMAND = (FALCO_BIN, "-c", FALCO_CONFIG, "--disable-source", "syscall")


def falco_layer(plugins_digest: str) -> dict[str, Any]:
    """Falco in audit-only mode, restarted by Pebble when its health or listener checks fail.

    The plugins' digest in the environment restarts it when a charm upgrade brings new
    plugins: Falco loads them only at start (its hot reload re-reads config and rules).
    """
    return {
        "summary": "Falco on Kubernetes audit events",
        "services": {
            FALCO_SERVICE: {
                "override": "replace",
                "summary": "Falco (k8saudit source only)",
                "command": " ".join(FALCO_COMMAND),
                "startup": "enabled",
                "environment": {"FALCO_K8S_PLUGINS_SHA256": plugins_digest},
                "on-check-failure": {"falco-healthz": "restart", "falco-webhook": "restart"},
            }
        },
        "checks": {
            "falco-healthz": {
                "override": "replace",
                "level": "alive",
                "period": "10s",
                "threshold": 3,
                "http": {"url": f"http://localhost:{WEBSERVER_PORT}/healthz"},
            },
            "falco-webhook": {
                "override": "replace",
                "level": "alive",
                "period": "10s",
                "threshold": 3,
                "tcp": {"port": K8SAUDIT_PORT},
            },
        },
    }


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
