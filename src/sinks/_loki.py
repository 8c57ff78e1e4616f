"""`send-loki-logs`: every alert pushed to each Loki unit related (they store apart)."""

from __future__ import annotations

from constants import LOKI_SINK_RELATION
from cos import loki_push_endpoints
from falco_forwarder.config import FORMAT_LOKI, SinkConfig
from sinks._source import SinkSource


class Loki(SinkSource):
    """One sink per Loki unit, named after it: loki/0 -> loki-0."""

    relation = LOKI_SINK_RELATION

    def read(self) -> list[SinkConfig]:
        return [
            SinkConfig(unit.replace("/", "-"), FORMAT_LOKI, url)
            for relation in self._charm.model.relations[LOKI_SINK_RELATION]
            for unit, url in loki_push_endpoints(relation).items()
        ]
