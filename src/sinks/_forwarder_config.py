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
    MAX_DEDUP_WINDOW_SECONDS,
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
DEDUP_WINDOW_SECONDS = range(MAX_DEDUP_WINDOW_SECONDS + 1)


@dataclass(frozen=True)
class ForwarderOptions:
    """The options that shape the forwarder's work, whatever the sinks."""

    alert_log_retention_mb: int = 512
    alert_dedup_window: int = 0

    def __post_init__(self) -> None:
        if self.alert_log_retention_mb not in RETENTION_MB:
            problem = f"must be {RETENTION_MB.start} to {RETENTION_MB.stop - 1} (MiB)"
            raise option_error("alert_log_retention_mb", problem, self.alert_log_retention_mb)
        if self.alert_dedup_window not in DEDUP_WINDOW_SECONDS:
            problem = f"must be 0 (off) to {DEDUP_WINDOW_SECONDS.stop - 1} (seconds)"
            raise option_error("alert_dedup_window", problem, self.alert_dedup_window)


def segment_bytes(retention_bytes: int) -> int:
    """Rotation size: 1/16 of retention (the log stays within 17/16 of it), 1 to 64 MiB."""
    return min(max(retention_bytes // 16, MIB), 64 * MIB)


def forwarder_config(
    sinks: tuple[SinkConfig, ...], topology: JujuTopology, options: ForwarderOptions
) -> ForwarderConfig:
    """The forwarder's whole configuration: what it reads, where it keeps state, and sinks."""
    retention = options.alert_log_retention_mb * MIB
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
        dedup_window_seconds=options.alert_dedup_window,
    )


def render_forwarder_config(
    sinks: tuple[SinkConfig, ...], topology: JujuTopology, options: ForwarderOptions
) -> str:
    """The forwarder's config file; its types checked themselves as they were built.

    Raises InvalidStateError, for a Blocked status, when the forwarder would refuse it.
    """
    try:
        settings = forwarder_config(sinks, topology, options).to_dict()
    except ConfigError as exc:
        raise InvalidStateError(f"alert sinks: {exc}") from None
    return json.dumps(settings, indent=1, sort_keys=True)
