"""Requirer side of ``falcosidekick_http_endpoint``, as Canonical's falcosidekick-k8s provides it.

That charm's leader writes ``url`` (and, in newer releases, ``ca_cert``) to its app databag,
each value JSON-encoded as ``ops.Relation.save`` writes it.
"""

from __future__ import annotations

import json
import logging

import ops
import pydantic
from pydantic import BaseModel, ConfigDict, field_validator

from state import InvalidStateError, check_http_url, describe_validation_error

logger = logging.getLogger(__name__)


class FalcosidekickEndpoint(BaseModel):
    """Where falcosidekick accepts Falco's JSON alerts."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    url: str
    ca_cert: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value.strip())


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
