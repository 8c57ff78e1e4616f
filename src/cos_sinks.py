"""Alert sinks that come from COS relations: Loki (``send-loki-logs``) and OTLP (``send-otlp``).

Each related Loki unit is one sink (Loki units do not share what they store); each ``send-otlp``
relation is one sink, on the collector's OTLP/HTTP endpoint, which takes JSON at ``/v1/logs``.
"""

from __future__ import annotations

import ops

from constants import LOKI_SINK_RELATION, OTLP_SINK_RELATION
from falco_forwarder.config import FORMAT_LOKI, FORMAT_OTLP, SinkConfig
from loki_push import push_endpoints

OTLP_LOGS_PATH = "/v1/logs"


def loki_sinks(relations: list[ops.Relation]) -> list[SinkConfig]:
    """One Loki push sink per Loki unit, named after it (``loki-0`` for ``loki/0``)."""
    return [
        SinkConfig(unit.replace("/", "-"), FORMAT_LOKI, url)
        for relation in relations
        for unit, url in push_endpoints(relation).items()
    ]


def otlp_sinks(charm: ops.CharmBase) -> list[SinkConfig]:
    """One OTLP/HTTP JSON logs sink per ``send-otlp`` relation that offers HTTP for logs."""
    from charmlibs.interfaces.otlp import OtlpRequirer  # noqa: PLC0415 - only with send-otlp

    endpoints = OtlpRequirer(
        charm, OTLP_SINK_RELATION, protocols=["http"], telemetries=["logs"]
    ).endpoints
    return [
        SinkConfig(f"otlp-{relation_id}", FORMAT_OTLP, _logs_url(endpoint.endpoint))
        for relation_id, endpoint in sorted(endpoints.items())
    ]


def cos_sinks(charm: ops.CharmBase) -> list[SinkConfig]:
    """Every COS sink; the OTLP library is imported only when a ``send-otlp`` relation exists.

    Light on purpose: charm.py imports it on every hook.
    """
    sinks = loki_sinks(charm.model.relations[LOKI_SINK_RELATION])
    if charm.model.relations[OTLP_SINK_RELATION]:
        sinks += otlp_sinks(charm)
    return sinks


def _logs_url(endpoint: str) -> str:
    """The collector's base OTLP/HTTP URL (``http://host:4318``) plus the logs path."""
    base = endpoint.rstrip("/")
    return base if base.endswith(OTLP_LOGS_PATH) else base + OTLP_LOGS_PATH
