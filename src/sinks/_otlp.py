"""`send-otlp`: every alert as an OTLP/HTTP JSON log record, to each collector related.

The relation library (charmlibs-interfaces-otlp) loads only with a ``send-otlp`` relation.
"""

from __future__ import annotations

from constants import OTLP_SINK_RELATION
from falco_forwarder.config import FORMAT_OTLP, SinkConfig
from sinks._source import SinkSource

OTLP_LOGS_PATH = "/v1/logs"


class Otlp(SinkSource):
    """One sink per ``send-otlp`` relation that offers OTLP/HTTP for logs."""

    relation = OTLP_SINK_RELATION

    def read(self) -> list[SinkConfig]:
        if not self._charm.model.relations[OTLP_SINK_RELATION]:
            return []
        from charmlibs.interfaces.otlp import OtlpRequirer  # noqa: PLC0415 - only with send-otlp

        endpoints = OtlpRequirer(
            self._charm, OTLP_SINK_RELATION, protocols=["http"], telemetries=["logs"]
        ).endpoints
        return [
            SinkConfig(f"otlp-{relation_id}", FORMAT_OTLP, otlp_logs_url(endpoint.endpoint))
            for relation_id, endpoint in sorted(endpoints.items())
        ]


def otlp_logs_url(endpoint: str) -> str:
    """The collector's base OTLP/HTTP URL (``http://host:4318``) plus the logs path."""
    base = endpoint.rstrip("/")
    return base if base.endswith(OTLP_LOGS_PATH) else base + OTLP_LOGS_PATH
