"""The forwarder's config file: what it reads, where it keeps state, and every sink.

Pure: the sinks (already in the forwarder's own `SinkConfig` shape) and the options in, the
forwarder's JSON text out; no ``ops``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from constants import ALERT_LOG, ALERT_STATE_DIR, FORWARDER_LISTEN_HOST, FORWARDER_PORT, MIB
from falco_forwarder.config import (
    AlertLogConfig,
    ConfigError,
    ForwarderConfig,
    JujuTopology,
    ListenConfig,
    RetryConfig,
    SinkConfig,
)
from options import InvalidStateError, option_error

RETENTION_MB = range(16, 1_000_001)


@dataclass(frozen=True)
class ForwarderOptions:
    """The options that shape the forwarder's work, whatever the sinks."""

    alert_log_retention_mb: int = 512

    def __post_init__(self) -> None:
        if self.alert_log_retention_mb not in RETENTION_MB:
            problem = f"must be {RETENTION_MB.start} to {RETENTION_MB.stop - 1} (MiB)"
            raise option_error("alert_log_retention_mb", problem, self.alert_log_retention_mb)


def segment_bytes(retention_bytes: int) -> int:
    """Rotation size: 1/16 of retention (the log stays within 17/16 of it), 1 to 64 MiB."""
    return min(max(retention_bytes // 16, MIB), 64 * MIB)


def forwarder_config(
    sinks: tuple[SinkConfig, ...], topology: JujuTopology, retention_mb: int
) -> ForwarderConfig:
    """The forwarder's whole configuration: what it reads, where it keeps state, and sinks."""
    retention = retention_mb * MIB
    return ForwarderConfig(
        listen=ListenConfig(host=FORWARDER_LISTEN_HOST, port=FORWARDER_PORT),
        alert_log=AlertLogConfig(
            file=Path(ALERT_LOG),
            state_dir=Path(ALERT_STATE_DIR),
            retention_bytes=retention,
            segment_bytes=segment_bytes(retention),
        ),
        juju=topology,
        # Backoff capped at 15 s: a sink that comes back is caught up within seconds.
        retry=RetryConfig(initial_seconds=0.5, max_seconds=15.0, timeout_seconds=10.0),
        sinks=sinks,
    )


def render_forwarder_config(
    sinks: tuple[SinkConfig, ...], topology: JujuTopology, retention_mb: int
) -> str:
    """The forwarder's config file; its types checked themselves as they were built.

    Raises InvalidStateError, for a Blocked status, when the forwarder would refuse it.
    """
    try:
        settings = forwarder_config(sinks, topology, retention_mb).to_dict()
    except ConfigError as exc:
        raise InvalidStateError(f"alert sinks: {exc}") from None
    return json.dumps(settings, indent=1, sort_keys=True)
