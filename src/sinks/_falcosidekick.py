"""`http-endpoint`: Canonical's falcosidekick-k8s, fed every alert as Falco's JSON.

Requirer side of ``falcosidekick_http_endpoint``, named ``http-endpoint`` as Canonical's falco
charm and falcosidekick-k8s name it. That charm's leader writes ``url`` (and, in newer
releases, ``ca_cert``) to its app databag, each value JSON-encoded as ``ops.Relation.save``
writes it. The sink keeps the name ``falcosidekick`` (status, metrics, checkpoint).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import ops

from falco_forwarder.config import FORMAT_FALCO_JSON, ConfigError, SinkConfig, url_problem
from options import InvalidStateError
from sinks._source import SinkSource

logger = logging.getLogger(__name__)

RELATION = "http-endpoint"
SINK = "falcosidekick"


@dataclass(frozen=True)
class FalcosidekickEndpoint:
    """Where falcosidekick accepts Falco's JSON alerts."""

    url: str
    ca_cert: str | None = None


class Falcosidekick(SinkSource):
    """One sink per falcosidekick application related."""

    relation = RELATION

    def read(self) -> list[SinkConfig]:
        sinks: list[SinkConfig] = []
        for relation in self._charm.model.relations[RELATION]:
            if found := falcosidekick_endpoint(relation):
                try:
                    sinks.append(
                        SinkConfig(SINK, FORMAT_FALCO_JSON, found.url, ca_cert=found.ca_cert)
                    )
                except ConfigError as exc:  # a ca_cert that does not load, say
                    raise InvalidStateError(f"{RELATION} relation {relation.id}: {exc}") from None
        return sinks


def falcosidekick_endpoint(relation: ops.Relation) -> FalcosidekickEndpoint | None:
    """The endpoint the remote app published; None until it has; InvalidStateError if broken."""
    data = relation.data[relation.app]
    if not data.get("url"):
        logger.debug("http-endpoint relation %d: no url published yet", relation.id)
        return None
    url, ca_cert = _lenient_json(data["url"]), _lenient_json(data.get("ca_cert", "null"))
    problem = ""
    if not isinstance(url, str):
        problem = "url: must be a string"
    elif problem := url_problem(url.strip()):
        problem = f"url: {problem}"
    elif ca_cert is not None and not isinstance(ca_cert, str):
        problem = "ca_cert: must be a string"
    if problem:
        raise InvalidStateError(f"{RELATION} relation {relation.id}: {problem}")
    return FalcosidekickEndpoint(str(url).strip(), ca_cert if isinstance(ca_cert, str) else None)


def _lenient_json(value: str) -> object:
    """JSON as Relation.save writes it; a bare string written by hand is taken as-is.

    JSON nested past the parser's depth is no URL either: taken as-is, the URL rule refuses it.
    """
    try:
        return json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        return value
