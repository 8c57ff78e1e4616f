"""Where alerts go, and the forwarder's config file that says so: built here, nowhere else.

Pure: plain endpoints in (from config and relation data, read by ``sink_relations``), the
forwarder's JSON text out; no ``ops``. The sink registry (`SINK_KINDS`) names each source of
sinks, the forwarder format it is fed and how its sinks are named. A new kind of sink is one
entry here, its reader in ``sink_relations`` and one encoder in ``falco_forwarder``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from constants import (
    ALERT_LOG,
    ALERT_STATE_DIR,
    FORWARDER_LISTEN_HOST,
    FORWARDER_PORT,
    LOKI_SINK_RELATION,
    MIB,
    OTLP_SINK_RELATION,
)
from falco_forwarder.config import (
    FORMAT_FALCO_JSON,
    FORMAT_GELF,
    FORMAT_LOKI,
    FORMAT_OTLP,
    AlertLogConfig,
    ConfigError,
    ForwarderConfig,
    JujuTopology,
    ListenConfig,
    RetryConfig,
    SinkConfig,
)
from state import InvalidStateError

HTTP_OUTPUT = "http_output"
GRAYLOG = "graylog"
FALCOSIDEKICK = "falcosidekick"
OTLP_LOGS_PATH = "/v1/logs"


@dataclass(frozen=True)
class Endpoint:
    """One place alerts go, as an option or a relation describes it: plain data only.

    ``key`` tells the endpoints of one source apart (a Loki unit name, a relation id).
    """

    url: str
    key: str = ""
    headers: Mapping[str, str] = field(default_factory=dict[str, str], repr=False)
    ca_cert: str | None = field(default=None, repr=False)
    max_message_bytes: int | None = None


@dataclass(frozen=True)
class SinkKind:
    """What the forwarder does with one source's endpoints: its format, the sinks' names."""

    format: str
    name: Callable[[Endpoint], str]
    url: Callable[[str], str] = str


def _otlp_logs_url(endpoint: str) -> str:
    """The collector's base OTLP/HTTP URL (``http://host:4318``) plus the logs path."""
    base = endpoint.rstrip("/")
    return base if base.endswith(OTLP_LOGS_PATH) else base + OTLP_LOGS_PATH


def _named(name: str) -> Callable[[Endpoint], str]:
    return lambda _: name


# The sink registry, in the order sinks are listed (the status names them in this order).
SINK_KINDS: Mapping[str, SinkKind] = {
    # The operator's own endpoint, fed Falco's JSON unchanged as before the forwarder existed.
    HTTP_OUTPUT: SinkKind(FORMAT_FALCO_JSON, _named(HTTP_OUTPUT)),
    GRAYLOG: SinkKind(FORMAT_GELF, _named(GRAYLOG)),
    FALCOSIDEKICK: SinkKind(FORMAT_FALCO_JSON, _named(FALCOSIDEKICK)),
    # One per Loki unit (they do not share what they store), named after it: loki/0 -> loki-0.
    LOKI_SINK_RELATION: SinkKind(FORMAT_LOKI, lambda e: e.key.replace("/", "-")),
    # One per send-otlp relation, on the collector's OTLP/HTTP JSON logs endpoint.
    OTLP_SINK_RELATION: SinkKind(FORMAT_OTLP, lambda e: f"otlp-{e.key}", _otlp_logs_url),
}


def build_sinks(endpoints: Mapping[str, Sequence[Endpoint]]) -> tuple[SinkConfig, ...]:
    """Every sink, in registry order, from each source's endpoints (by `SINK_KINDS` key)."""
    unknown = endpoints.keys() - SINK_KINDS.keys()
    if unknown:
        raise ValueError(f"no sink kind registered for {', '.join(sorted(unknown))}")
    try:  # the forwarder's types check themselves: the reason is the forwarder's own
        return tuple(
            SinkConfig(
                kind.name(endpoint),
                kind.format,
                kind.url(endpoint.url),
                endpoint.headers,
                endpoint.ca_cert,
                endpoint.max_message_bytes,
            )
            for source, kind in SINK_KINDS.items()
            for endpoint in endpoints.get(source, ())
        )
    except ConfigError as exc:
        raise InvalidStateError(f"alert sinks: {exc}") from None


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
    """The forwarder's config file (its types checked themselves when they were built).

    Raises InvalidStateError, for a Blocked status, when the forwarder would refuse it.
    """
    try:
        settings = forwarder_config(sinks, topology, retention_mb).to_dict()
    except ConfigError as exc:
        raise InvalidStateError(f"alert sinks: {exc}") from None
    return json.dumps(settings, indent=1, sort_keys=True)
