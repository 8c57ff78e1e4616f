"""`graylog`: a Graylog GELF HTTP input, over the `gelf` interface this repository defines.

The library (`charms.falco_k8s.v0.gelf`) does the relation's own bookkeeping (publishing this
application's topology, following the auth secret); it loads only once the relation exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ops

from falco_forwarder.config import FORMAT_GELF, SinkConfig
from options import InvalidStateError
from sinks._source import SinkSource

RELATION = "graylog"

if TYPE_CHECKING:
    from charms.falco_k8s.v0.gelf import GelfEndpointRequirer


class Graylog(SinkSource):
    """One GELF sink per Graylog endpoint related."""

    relation = RELATION

    def __init__(self, charm: ops.CharmBase):
        super().__init__(charm)
        self._requirer: GelfEndpointRequirer | None = None
        if charm.model.relations[RELATION]:  # listed from relation-created on
            from charms.falco_k8s.v0.gelf import GelfEndpointRequirer  # noqa: PLC0415

            # The integrator routes a stream per cluster on it, as alerts carry it in
            # `_cluster`; the falco wing blocks on a bad name, which the library leaves out.
            cluster = str(charm.config.get("cluster_name", "")) or None
            self._requirer = GelfEndpointRequirer(charm, relation_name=RELATION, cluster=cluster)

    def events(self) -> list[ops.BoundEvent]:
        """The library's own events: they also follow a rotated auth secret."""
        if self._requirer is None:
            return super().events()
        return [self._requirer.on.endpoint_changed, self._requirer.on.endpoint_removed]

    def read(self) -> list[SinkConfig]:
        if self._requirer is None:
            return []
        from charms.falco_k8s.v0.gelf import GelfEndpointError  # noqa: PLC0415

        try:
            endpoints = self._requirer.endpoints()
        except GelfEndpointError as exc:
            raise InvalidStateError(str(exc)) from None
        return [
            SinkConfig("graylog", FORMAT_GELF, e.url, e.headers, e.ca_cert, e.max_message_bytes)
            for e in endpoints
        ]
