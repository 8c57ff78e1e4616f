"""`send-otlp`: every alert as an OTLP/HTTP JSON log record, to each collector related.

The relation library (charmlibs-interfaces-otlp) loads only with a ``send-otlp`` relation. It
decodes ``endpoints`` with ``json.loads`` and catches only pydantic's ValidationError, and it
skips (with a log line) a collector whose data it refuses: both are checked here first, so a
collector's bad data blocks naming the relation instead of failing the hook or going unseen.
"""

from __future__ import annotations

import json

import ops

from constants import OTLP_SINK_RELATION
from falco_forwarder.config import FORMAT_OTLP, SinkConfig, url_problem
from options import InvalidStateError
from sinks._source import SinkSource

OTLP_LOGS_PATH = "/v1/logs"


class Otlp(SinkSource):
    """One sink per ``send-otlp`` relation that offers OTLP/HTTP for logs."""

    relation = OTLP_SINK_RELATION

    def read(self) -> list[SinkConfig]:
        relations = [r for r in self._charm.model.relations[OTLP_SINK_RELATION] if _published(r)]
        if not relations:
            return []
        from charmlibs.interfaces.otlp import OtlpRequirer  # noqa: PLC0415 - only with send-otlp

        endpoints = OtlpRequirer(
            self._charm, OTLP_SINK_RELATION, protocols=["http"], telemetries=["logs"]
        ).endpoints
        sinks: list[SinkConfig] = []
        for relation in relations:
            where = f"{OTLP_SINK_RELATION} relation {relation.id}"
            if relation.id not in endpoints:
                raise InvalidStateError(f"{where}: no valid OTLP/HTTP endpoint for logs offered")
            url = otlp_logs_url(endpoints[relation.id].endpoint)
            if problem := url_problem(url):
                raise InvalidStateError(f"{where}: endpoint: {problem}")
            sinks.append(SinkConfig(f"otlp-{relation.id}", FORMAT_OTLP, url))
        return sinks


def _published(relation: ops.Relation) -> bool:
    """Whether the collector published its endpoints; InvalidStateError if not as JSON."""
    data = relation.app and relation.data[relation.app]
    if not data:
        return False
    try:
        json.loads(data.get("endpoints", "null"))
    except (ValueError, RecursionError):
        raise InvalidStateError(
            f"{OTLP_SINK_RELATION} relation {relation.id}: endpoints is not JSON"
        ) from None
    return True


def otlp_logs_url(endpoint: str) -> str:
    """The collector's base OTLP/HTTP URL (``http://host:4318``) plus the logs path."""
    base = endpoint.rstrip("/")
    return base if base.endswith(OTLP_LOGS_PATH) else base + OTLP_LOGS_PATH
