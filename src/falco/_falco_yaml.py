"""Build falco.yaml for audit-only mode from typed settings.

Pure: data in, YAML text out, no ``ops``. The output passes Falco 0.44.1's schema and the
audit-only traps checked by ``falco-config-check``; tests hold it to that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from constants import (
    ALERT_LOG,
    K8SAUDIT_LOOPBACK,
    K8SAUDIT_MAX_BATCH_BYTES,
    K8SAUDIT_PATH,
    K8SAUDIT_PORT,
    WEBSERVER_PORT,
)
from falco_forwarder.alert_fields import CLUSTER_FIELD

# Bounded so a stalled output cannot grow Falco's memory without limit; at the usual few
# hundred bytes per alert this is a few MiB.
OUTPUTS_QUEUE_CAPACITY = 10_000

# The k8saudit plugin's own defaults, made explicit: one event up to 256 KiB, one webhook
# batch up to 12 MiB (the apiserver flags handed to the admin are sized to stay under it).
K8SAUDIT_MAX_EVENT_BYTES = 262_144

# Both plugins default to plugin-sdk-go's async extractor, whose Go worker and Falco's thread
# hand each field over by spin-waiting: on real Falco it collapsed throughput to about one
# event per second (2 CPUs, or a one-CPU quota as a pod limit sets). Plain calls instead.
PLUGIN_SYNC_EXTRACTION = {"useAsync": False}


# First line of every falco.yaml the charm writes. The image ships a falco.yaml of its own
# (syscall source, container plugin) that would not start here: only a file with this
# line is one Falco accepted from the charm.
MANAGED_HEADER = "# Written by the falco-k8s charm once Falco accepted it; local edits are lost.\n"


def is_managed(text: bytes) -> bool:
    """Whether ``text`` is a falco.yaml the charm wrote, rather than the image's own."""
    return text.startswith(MANAGED_HEADER.encode())


@dataclass(frozen=True)
class FalcoSettings:
    """Everything falco.yaml depends on, validated before it gets here."""

    priority: str = "debug"
    rules_selection: Sequence[dict[str, dict[str, str]]] = ()
    cluster_name: str = ""
    """Named on every rule's alert when set; checked (`check_cluster_name`) to need no quoting."""


def render_falco_yaml(settings: FalcoSettings, rules_files: Sequence[str]) -> str:
    """Return falco.yaml loading ``rules_files``; identical inputs give identical bytes.

    k8saudit listens on the pod's loopback only, in plain HTTP: the audit intake in front of it
    holds the webhook's TLS and token, and is the only client that reaches it.
    """
    k8saudit_init: dict[str, Any] = {
        **PLUGIN_SYNC_EXTRACTION,
        "maxEventSize": K8SAUDIT_MAX_EVENT_BYTES,
        "webhookMaxBatchSize": K8SAUDIT_MAX_BATCH_BYTES,
    }
    config: dict[str, Any] = {
        # The image's /etc/falco/config.d would load the container plugin: read nothing else.
        "config_files": [],
        "watch_config_files": True,
        "rules_files": list(rules_files),
        "load_plugins": ["k8saudit", "json"],
        "plugins": [
            {
                "name": "k8saudit",
                "library_path": "libk8saudit.so",
                "init_config": k8saudit_init,
                "open_params": f"http://{K8SAUDIT_LOOPBACK}:{K8SAUDIT_PORT}{K8SAUDIT_PATH}",
            },
            {
                "name": "json",
                "library_path": "libjson.so",
                "init_config": dict(PLUGIN_SYNC_EXTRACTION),
            },
        ],
        "plugins_hostinfo": False,
        # Every matching rule alerts, not only the first in file order (Falco's default):
        # custom rules and specific stock rules are never shadowed by an earlier broad one.
        "rule_matching": "all",
        "engine": {"kind": "nodriver"},
        "priority": settings.priority,
        "json_output": True,
        "json_include_output_property": True,
        "json_include_message_property": True,
        "json_include_output_fields_property": True,
        "json_include_tags_property": True,
        "time_format_iso_8601": True,
        "buffered_outputs": False,
        "outputs_queue": {"capacity": OUTPUTS_QUEUE_CAPACITY},
        "stdout_output": {"enabled": True},
        "syslog_output": {"enabled": False},
        # The alert log is the forwarder's queue. Without keep_alive Falco opens, appends one
        # line and closes for every alert, so the forwarder rotates it by rename, no signal.
        "file_output": {"enabled": True, "keep_alive": False, "filename": ALERT_LOG},
        # Nothing in Falco waits on the network: the forwarder delivers from the log.
        "http_output": {"enabled": False},
        "webserver": {
            "enabled": True,
            "listen_address": "0.0.0.0",  # noqa: S104 - Pebble checks and Prometheus scrape it
            "listen_port": WEBSERVER_PORT,
            "k8s_healthz_endpoint": "/healthz",
            "prometheus_metrics_enabled": True,
        },
        "metrics": {
            "enabled": True,
            "interval": "1m",
            "output_rule": False,
            "rules_counters_enabled": True,
            "resource_utilization_enabled": True,
            "state_counters_enabled": True,
            "kernel_event_counters_enabled": False,
            "libbpf_stats_enabled": False,
            "plugins_metrics_enabled": True,
            "convert_memory_to_mb": True,
            "include_empty_values": False,
        },
        "log_stderr": True,
        "log_syslog": False,
        "log_level": "info",
    }
    if settings.rules_selection:
        config["rules"] = list(settings.rules_selection)
    if settings.cluster_name:
        # Falco adds it to every rule's output_fields itself (not to the text), so the name
        # travels with the alert from the log on. No match: every source, tag and rule.
        config["append_output"] = [{"extra_fields": [{CLUSTER_FIELD: settings.cluster_name}]}]
    return MANAGED_HEADER + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
