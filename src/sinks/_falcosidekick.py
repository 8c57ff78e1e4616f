"""`falcosidekick`: Canonical's falcosidekick-k8s, fed every alert as Falco's JSON.

Requirer side of ``falcosidekick_http_endpoint``: that charm's leader writes ``url`` (and, in
newer releases, ``ca_cert``) to its app databag, each value JSON-encoded as
``ops.Relation.save`` writes it.
"""

from __future__ import annotations

import json
import logging

import ops
import pydantic
from pydantic import BaseModel, ConfigDict, field_validator

from falco_forwarder.config import FORMAT_FALCO_JSON, SinkConfig, url_problem
from options import InvalidStateError, describe_validation_error
from sinks._source import SinkSource

logger = logging.getLogger(__name__)

RELATION = "falcosidekick"


class FalcosidekickEndpoint(BaseModel):
    """Where falcosidekick accepts Falco's JSON alerts."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    url: str
    ca_cert: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if problem := url_problem(value):
            raise ValueError(problem)
        return value


class Falcosidekick(SinkSource):
    """One sink per falcosidekick application related."""

    relation = RELATION

    def read(self) -> list[SinkConfig]:
        return [
            SinkConfig(RELATION, FORMAT_FALCO_JSON, found.url, ca_cert=found.ca_cert)
            for relation in self._charm.model.relations[RELATION]
            if (found := falcosidekick_endpoint(relation))
        ]


def falcosidekick_endpoint(relation: ops.Relation) -> FalcosidekickEndpoint | None:
    """The endpoint the remote app published; None until it has; InvalidStateError if broken."""
    if not relation.data[relation.app].get("url"):
        logger.debug("falcosidekick relation %d: no url published yet", relation.id)
        return None
    try:
        return relation.load(FalcosidekickEndpoint, relation.app, decoder=_lenient_json)
    except pydantic.ValidationError as exc:
        reason = describe_validation_error(exc)
        raise InvalidStateError(f"falcosidekick relation {relation.id}: {reason}") from None


def _lenient_json(value: str) -> object:
    """JSON as Relation.save writes it; a bare string written by hand is taken as-is."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
