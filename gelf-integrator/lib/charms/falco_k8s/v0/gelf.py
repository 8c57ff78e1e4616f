"""Relation interface ``gelf``: where a log sender posts GELF messages over HTTP.

The **provider** (the Graylog side) publishes in its application databag the
endpoint of a GELF HTTP input. The **requirer** (the log sender) publishes its
Juju topology so that the provider can create an input and a stream for it.

Every value is JSON-encoded per key (the ``ops`` default for ``Relation.save``).

Provider application databag:

- ``url``: GELF HTTP input URL, ``http(s)://host:port/gelf``.
- ``auth_header_name`` and ``auth_secret_id`` (both or neither): HTTP header to
  send (Graylog >= 6.1 input authentication) and the ID of a Juju secret,
  granted to the relation, whose ``value`` key holds the header value.
- ``ca_cert``: optional PEM CA certificate to verify an ``https`` URL.
- ``max_message_bytes``: largest GELF message the input accepts (default 65536).

Requirer application databag: ``model``, ``model_uuid``, ``application`` and
``charm`` (the charm name), and optionally ``cluster``: the name of the Kubernetes
cluster the sender watches, which its messages also carry as the GELF field
``_cluster``, so that a provider shared by several clusters can route on it
(LIBPATCH 3; providers of earlier patches ignore it).

Provider side (Graylog)::

    from charms.falco_k8s.v0.gelf import GelfEndpointProvider

    class GraylogCharm(ops.CharmBase):
        def __init__(self, framework: ops.Framework):
            super().__init__(framework)
            self.gelf = GelfEndpointProvider(self, relation_name="gelf")
            framework.observe(self.on["gelf"].relation_joined, self._publish)
            framework.observe(self.gelf.on.sender_changed, self._publish)

        def _publish(self, _: ops.EventBase):
            for sender in self.gelf.senders():
                ...  # e.g. create a stream for sender.application
            secret = self.model.get_secret(label="gelf-auth")
            self.gelf.publish(
                "https://graylog.example:12201/gelf",
                auth_header_name="Authorization",
                auth_secret=secret,
            )

Requirer side (log sender)::

    from charms.falco_k8s.v0.gelf import GelfEndpointError, GelfEndpointRequirer

    class SenderCharm(ops.CharmBase):
        def __init__(self, framework: ops.Framework):
            super().__init__(framework)
            cluster = str(self.config.get("cluster_name", "")) or None
            self.graylog = GelfEndpointRequirer(self, relation_name="graylog", cluster=cluster)
            framework.observe(self.graylog.on.endpoint_changed, self._reconcile)
            framework.observe(self.graylog.on.endpoint_removed, self._reconcile)

        def _reconcile(self, _: ops.EventBase):
            try:
                endpoints = self.graylog.endpoints()
            except GelfEndpointError as e:
                self.unit.status = ops.BlockedStatus(str(e))
            else:
                for endpoint in endpoints:
                    ...  # POST to endpoint.url with endpoint.headers
"""

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import ops
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# The unique Charmhub library identifier, never change it.
LIBID = "4dfafbabc71e489f85f2c84c86e2fbe4"

# Increment this major API version when introducing breaking changes.
LIBAPI = 0

# Increment this PATCH version before using `charmcraft publish-lib` or reset
# to 0 if you are raising the major API version.
LIBPATCH = 3

PYDEPS = ["pydantic>=2"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES: Final = 65536
AUTH_CONTENT_KEY: Final = "value"
"""Key of the auth secret's content that holds the header value."""

# RFC 9110 token: the characters allowed in an HTTP header name.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Unambiguous (the body cannot contain "-"), so matching stays linear on hostile input.
# ASCII only: OpenSSL reads no other whitespace (Python's \s would take U+2028 and more).
_PEM_CERTS = re.compile(
    r"\s*(?:-----BEGIN CERTIFICATE-----\s*[A-Za-z0-9+/=][A-Za-z0-9+/=\s]*"
    r"-----END CERTIFICATE-----\s*)+",
    re.ASCII,
)
_TOPOLOGY_KEYS: Final = ("model", "model_uuid", "application", "charm")
# A cluster name as cloud providers and kubeconfig files commonly write one, kept short
# and free of separators so that it can name a stream or a label as it is.
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_cluster_name(value: str) -> str:
    """Return ``value`` if it is a cluster name the ``cluster`` field accepts.

    Raises:
        ValueError: naming the rule (never echoing the value), for a sender's own option.
    """
    if not _CLUSTER_NAME.fullmatch(value):
        raise ValueError(
            "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


class GelfEndpointError(ValueError):
    """GELF endpoint data is invalid; the message is meant for the operator."""


class GelfEndpointData(BaseModel):
    """Provider application databag: where and how to send GELF messages."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")

    url: str
    auth_header_name: str | None = None
    auth_secret_id: str | None = None
    ca_cert: str | None = None
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if any(char.isspace() for char in value):
            raise ValueError("must be an http(s) URL without whitespace")
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises ValueError when out of range or not a number
        except ValueError:
            raise ValueError("must be an http(s) URL with a valid host and port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host, e.g. https://graylog:12201/gelf")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not embed credentials; use the auth secret")
        if parts.path in ("", "/"):
            raise ValueError("must include the input path, e.g. /gelf")
        return value

    @field_validator("auth_header_name")
    @classmethod
    def _check_header_name(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.fullmatch(value):
            raise ValueError("must be an HTTP header name")
        return value

    @field_validator("auth_secret_id")
    @classmethod
    def _check_secret_id(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(char.isspace() for char in value)):
            raise ValueError("must be a Juju secret ID")
        return value

    @field_validator("ca_cert")
    @classmethod
    def _check_ca_cert(cls, value: str | None) -> str | None:
        if value is not None and not _PEM_CERTS.fullmatch(value):
            raise ValueError("must be one or more PEM certificates")
        return value

    @model_validator(mode="after")
    def _check_auth_pair(self) -> "GelfEndpointData":
        if (self.auth_header_name is None) != (self.auth_secret_id is None):
            raise ValueError("auth_header_name and auth_secret_id must be set together")
        return self


class GelfSenderTopology(BaseModel):
    """Requirer application databag: the Juju topology of the log sender."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore", protected_namespaces=())

    model: str = Field(min_length=1)
    model_uuid: str
    application: str = Field(min_length=1)
    charm: str = Field(min_length=1)
    cluster: str | None = None

    @field_validator("cluster")
    @classmethod
    def _check_cluster(cls, value: str | None) -> str | None:
        return None if value is None else check_cluster_name(value)

    @field_validator("model_uuid")
    @classmethod
    def _check_uuid(cls, value: str) -> str:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError("must be a UUID") from None
        return value


@dataclass(frozen=True)
class GelfEndpoint:
    """A provider's endpoint, ready to use: the auth header is already resolved.

    ``headers`` is left out of ``repr`` so the credential cannot leak into logs.
    """

    url: str
    headers: dict[str, str] = field(repr=False)
    ca_cert: str | None
    max_message_bytes: int
    relation_id: int
    app_name: str


class GelfEndpointChangedEvent(ops.RelationEvent):
    """The provider's endpoint data or its auth secret may have changed."""


class GelfEndpointRemovedEvent(ops.RelationEvent):
    """A provider relation is going away; its endpoint must no longer be used."""


class GelfSenderChangedEvent(ops.RelationEvent):
    """A requirer published (or republished) a valid topology."""


class GelfEndpointRequirerEvents(ops.ObjectEvents):
    """Events emitted by `GelfEndpointRequirer`."""

    endpoint_changed = ops.EventSource(GelfEndpointChangedEvent)
    endpoint_removed = ops.EventSource(GelfEndpointRemovedEvent)


class GelfEndpointProviderEvents(ops.ObjectEvents):
    """Events emitted by `GelfEndpointProvider`."""

    sender_changed = ops.EventSource(GelfSenderChangedEvent)


def _decode(raw: str) -> Any:
    """Decode a databag value as JSON, keeping non-JSON text as a plain string.

    Leniency lets a hand-written ``url=https://...`` through, while any wrong
    type is still reported by the model with the field's name.
    """
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # nesting past the parser's depth is no JSON either
        return raw


def _describe(error: ValidationError) -> str:
    """Summarise validation errors as ``field: problem``, never echoing values."""
    problems: list[str] = []
    for detail in error.errors(include_url=False, include_input=False):
        ctx = detail.get("ctx") or {}
        message = str(ctx["error"]) if detail["type"] == "value_error" else detail["msg"]
        location = ".".join(str(part) for part in detail["loc"])
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(problems)


def _secret_key(secret_id: str) -> str:
    """Return the model-independent part of a secret ID, for comparisons."""
    return secret_id.rsplit("/", 1)[-1].removeprefix("secret:")


def _where(relation: ops.Relation) -> str:
    return f"{relation.name} relation {relation.id} ({relation.app.name})"


class GelfEndpointProvider(ops.Object):
    """Graylog side: publishes the GELF endpoint and reads the senders' topologies."""

    on = GelfEndpointProviderEvents()

    def __init__(self, charm: ops.CharmBase, relation_name: str = "gelf"):
        super().__init__(charm, relation_name)
        self._charm = charm
        self._relation_name = relation_name
        charm.framework.observe(charm.on[relation_name].relation_changed, self._on_changed)

    def publish(
        self,
        url: str,
        *,
        auth_header_name: str | None = None,
        auth_secret: ops.Secret | None = None,
        ca_cert: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        relation: ops.Relation | None = None,
    ) -> None:
        """Write the endpoint to one relation, or to every relation by default.

        Only the leader validates and writes; on other units this does nothing.
        The auth secret is granted to each relation written, and a previously
        published secret that differs is revoked from it.

        Raises:
            GelfEndpointError: if the arguments do not make a valid endpoint.
        """
        if not self._charm.unit.is_leader():
            logger.debug("not the leader: not publishing the GELF endpoint")
            return
        secret_id = None
        if auth_secret is not None:
            secret_id = auth_secret.id or auth_secret.get_info().id
        try:
            data = GelfEndpointData(
                url=url,
                auth_header_name=auth_header_name,
                auth_secret_id=secret_id,
                ca_cert=ca_cert,
                max_message_bytes=max_message_bytes,
            )
        except ValidationError as e:
            raise GelfEndpointError(f"cannot publish GELF endpoint: {_describe(e)}") from None
        relations = (
            [relation] if relation is not None else self.model.relations[self._relation_name]
        )
        for target in relations:
            self._revoke_stale_secret(target, secret_id)
            if auth_secret is not None:
                auth_secret.grant(target)
            target.save(data, self._charm.app)

    def _revoke_stale_secret(self, relation: ops.Relation, new_id: str | None) -> None:
        old_id = _decode(relation.data[self._charm.app].get("auth_secret_id", "null"))
        if not isinstance(old_id, str) or (
            new_id is not None and _secret_key(old_id) == _secret_key(new_id)
        ):
            return
        try:
            self.model.get_secret(id=old_id).revoke(relation)
        except ops.ModelError:
            logger.debug("%s: could not revoke the previous auth secret", _where(relation))

    def sender(self, relation: ops.Relation) -> GelfSenderTopology | None:
        """Return the topology a requirer published, or None if absent or invalid."""
        try:
            return self.load_sender(relation)
        except GelfEndpointError as e:
            logger.warning("ignoring sender topology: %s", e)
            return None

    def load_sender(self, relation: ops.Relation) -> GelfSenderTopology | None:
        """Return the topology a requirer published, or None if it published none yet.

        Raises:
            GelfEndpointError: if the topology is invalid; the message names the relation
                and the field, never a value.
        """
        databag = relation.data[relation.app]
        if not any(key in databag for key in _TOPOLOGY_KEYS):
            logger.debug("%s: no sender topology yet", _where(relation))
            return None
        try:
            return relation.load(GelfSenderTopology, relation.app, decoder=_decode)
        except ValidationError as e:
            raise GelfEndpointError(f"{_where(relation)}: {_describe(e)}") from None

    def senders(self) -> list[GelfSenderTopology]:
        """Return the valid topologies of all related senders."""
        topologies = (self.sender(r) for r in self.model.relations[self._relation_name])
        return [t for t in topologies if t is not None]

    def _on_changed(self, event: ops.RelationChangedEvent) -> None:
        if self.sender(event.relation) is not None:
            self.on.sender_changed.emit(event.relation, app=event.app, unit=event.unit)


class GelfEndpointRequirer(ops.Object):
    """Log-sender side: publishes the topology and resolves the providers' endpoints."""

    on = GelfEndpointRequirerEvents()

    def __init__(
        self, charm: ops.CharmBase, relation_name: str = "graylog", cluster: str | None = None
    ):
        """``cluster``: the cluster name the sender's messages carry as ``_cluster``, if any.

        The topology is (re)published on relation-created/joined, leader-elected and
        config-changed. An invalid name is left out of it (and logged): check it first with
        `check_cluster_name`, as the sender's own option.
        """
        super().__init__(charm, relation_name)
        self._charm = charm
        self._relation_name = relation_name
        self._cluster = cluster
        events = charm.on[relation_name]
        observe = charm.framework.observe
        observe(events.relation_created, self._on_joined)
        observe(events.relation_joined, self._on_joined)
        observe(charm.on.leader_elected, self._publish_everywhere)
        observe(charm.on.config_changed, self._publish_everywhere)  # a new cluster name
        observe(events.relation_changed, self._on_changed)
        observe(events.relation_broken, self._on_broken)
        observe(charm.on.secret_changed, self._on_secret_changed)

    @property
    def topology(self) -> GelfSenderTopology:
        """This application's Juju topology and cluster name, as published to providers."""
        cluster = self._cluster
        if cluster is not None:
            try:
                check_cluster_name(cluster)
            except ValueError as e:
                logger.error("not publishing the cluster name: %s", e)
                cluster = None
        return GelfSenderTopology(
            model=self.model.name,
            model_uuid=self.model.uuid,
            application=self._charm.app.name,
            charm=self._charm.meta.name,
            cluster=cluster,
        )

    def publish_topology(self, relation: ops.Relation | None = None) -> None:
        """Write the topology to one relation, or to all; only the leader writes."""
        if not self._charm.unit.is_leader():
            return
        topology = self.topology
        relations = (
            [relation] if relation is not None else self.model.relations[self._relation_name]
        )
        for target in relations:
            databag = target.data[self._charm.app]
            for key, value in topology.model_dump().items():
                if value is None:  # absent, as LIBPATCH 2 wrote it: no `"cluster": null`
                    databag.pop(key, None)
                else:
                    databag[key] = json.dumps(value)

    def endpoints(self) -> list[GelfEndpoint]:
        """Return one resolved endpoint per related provider that is ready, by relation id.

        Relations whose provider has not published a ``url`` yet are skipped. The order
        is stable, so a sender's configuration does not change between identical hooks.

        Raises:
            GelfEndpointError: on the first relation with invalid data or an
                unreadable auth secret; the message names the relation.
        """
        endpoints: list[GelfEndpoint] = []
        for relation in sorted(self.model.relations[self._relation_name], key=lambda r: r.id):
            endpoint = self._endpoint(relation)
            if endpoint is not None:
                endpoints.append(endpoint)
        return endpoints

    def _endpoint(self, relation: ops.Relation) -> GelfEndpoint | None:
        if "url" not in relation.data[relation.app]:
            logger.debug("%s: GELF endpoint not published yet", _where(relation))
            return None
        try:
            data = relation.load(GelfEndpointData, relation.app, decoder=_decode)
        except ValidationError as e:
            raise self._invalid(relation, _describe(e)) from None
        headers: dict[str, str] = {}
        if data.auth_header_name is not None and data.auth_secret_id is not None:
            headers[data.auth_header_name] = self._auth_value(relation, data.auth_secret_id)
        return GelfEndpoint(
            url=data.url,
            headers=headers,
            ca_cert=data.ca_cert,
            max_message_bytes=data.max_message_bytes,
            relation_id=relation.id,
            app_name=relation.app.name,
        )

    def _auth_value(self, relation: ops.Relation, secret_id: str) -> str:
        try:
            content = self.model.get_secret(id=secret_id).get_content(refresh=True)
        except ops.ModelError:
            raise self._invalid(
                relation, "auth_secret_id: secret cannot be read; is it granted to this relation?"
            ) from None
        value = content.get(AUTH_CONTENT_KEY)
        if not value:
            raise self._invalid(relation, f"auth secret has no {AUTH_CONTENT_KEY!r} key")
        if any(char in value for char in "\r\n\0"):
            raise self._invalid(relation, "auth secret value is not a valid HTTP header value")
        return value

    @staticmethod
    def _invalid(relation: ops.Relation, problem: str) -> GelfEndpointError:
        error = GelfEndpointError(f"{_where(relation)}: {problem}")
        logger.error("invalid GELF endpoint: %s", error)
        return error

    def _referenced_secret(self, relation: ops.Relation) -> str | None:
        value = _decode(relation.data[relation.app].get("auth_secret_id", "null"))
        return value if isinstance(value, str) else None

    def _on_joined(self, event: ops.RelationEvent) -> None:
        self.publish_topology(event.relation)

    def _publish_everywhere(self, _: ops.EventBase) -> None:
        self.publish_topology()

    def _on_changed(self, event: ops.RelationChangedEvent) -> None:
        # Also when the provider emptied its databag: the sender must stop using the endpoint.
        self.on.endpoint_changed.emit(event.relation, app=event.app, unit=event.unit)

    def _on_broken(self, event: ops.RelationBrokenEvent) -> None:
        self.on.endpoint_removed.emit(event.relation, app=event.app)

    def _on_secret_changed(self, event: ops.SecretChangedEvent) -> None:
        changed = event.secret.id or ""
        for relation in self.model.relations[self._relation_name]:
            referenced = self._referenced_secret(relation)
            if referenced is not None and _secret_key(referenced) == _secret_key(changed):
                self.on.endpoint_changed.emit(relation, app=relation.app)
