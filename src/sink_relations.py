"""Read where alerts go from config and relations, as plain `alert_sinks.Endpoint` data.

The only sink code that knows ``ops``: one reader per relation in `RELATION_READERS`, next to
the kinds in `alert_sinks.SINK_KINDS`. Relation libraries stay here; what leaves is plain data.
Light on purpose: every hook imports it (the OTLP library only with a ``send-otlp`` relation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import ops

from alert_sinks import FALCOSIDEKICK, GRAYLOG, HTTP_OUTPUT, Endpoint, build_sinks
from charms.falco_k8s.v0.gelf import GelfEndpointError, GelfEndpointRequirer
from constants import LOKI_SINK_RELATION, OTLP_SINK_RELATION
from falco_forwarder.config import SinkConfig
from falcosidekick import falcosidekick_endpoint
from loki_push import push_endpoints
from state import InvalidStateError


def read_sinks(
    charm: ops.CharmBase, http_output: str, graylog: GelfEndpointRequirer
) -> tuple[SinkConfig, ...]:
    """Every sink from the ``http_output`` option and the relations; InvalidStateError if bad."""
    found = {relation: read(charm) for relation, read in RELATION_READERS.items()}
    found[HTTP_OUTPUT] = [Endpoint(http_output)] if http_output else []
    found[GRAYLOG] = _graylog_endpoints(graylog)
    return build_sinks(found)


def _graylog_endpoints(graylog: GelfEndpointRequirer) -> list[Endpoint]:
    try:
        endpoints = graylog.endpoints()
    except GelfEndpointError as exc:
        raise InvalidStateError(str(exc)) from None
    return [
        Endpoint(e.url, str(e.relation_id), e.headers, e.ca_cert, e.max_message_bytes)
        for e in endpoints
    ]


def _falcosidekick_endpoints(charm: ops.CharmBase) -> list[Endpoint]:
    return [
        Endpoint(endpoint.url, str(relation.id), ca_cert=endpoint.ca_cert)
        for relation in charm.model.relations[FALCOSIDEKICK]
        if (endpoint := falcosidekick_endpoint(relation))
    ]


def _loki_endpoints(charm: ops.CharmBase) -> list[Endpoint]:
    return [
        Endpoint(url, unit)
        for relation in charm.model.relations[LOKI_SINK_RELATION]
        for unit, url in push_endpoints(relation).items()
    ]


def _otlp_endpoints(charm: ops.CharmBase) -> list[Endpoint]:
    """One endpoint per ``send-otlp`` relation that offers OTLP/HTTP for logs."""
    if not charm.model.relations[OTLP_SINK_RELATION]:
        return []
    from charmlibs.interfaces.otlp import OtlpRequirer  # noqa: PLC0415 - only with send-otlp

    endpoints = OtlpRequirer(
        charm, OTLP_SINK_RELATION, protocols=["http"], telemetries=["logs"]
    ).endpoints
    return [
        Endpoint(endpoint.endpoint, str(relation_id))
        for relation_id, endpoint in sorted(endpoints.items())
    ]


# The reader of each relation that brings sinks, by relation name (the charm reconciles on their
# events). graylog is read through its library, whose own events the charm observes.
RELATION_READERS: Mapping[str, Callable[[ops.CharmBase], list[Endpoint]]] = {
    FALCOSIDEKICK: _falcosidekick_endpoints,
    LOKI_SINK_RELATION: _loki_endpoints,
    OTLP_SINK_RELATION: _otlp_endpoints,
}
