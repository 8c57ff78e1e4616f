"""Falco's Pebble layer: pure data, so tests and the charm agree on it."""

from __future__ import annotations

from typing import Any

from constants import (
    FALCO_BIN,
    FALCO_CONFIG,
    FALCO_SERVICE,
    K8SAUDIT_LOOPBACK,
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
                "tcp": {"port": K8SAUDIT_PORT, "host": K8SAUDIT_LOOPBACK},
            },
        },
    }
