"""What every kind of sink has in common: where its endpoints come from, and the events to watch.

A kind reads one option or one relation and turns what it finds into the forwarder's own
`SinkConfig`, the one shape a sink has from the charm's config to the forwarder's file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import ops

from falco_forwarder.config import SinkConfig


class SinkSource(ABC):
    """One kind of sink; ``relation`` is the relation it reads, or None for an option."""

    relation: ClassVar[str | None] = None

    def __init__(self, charm: ops.CharmBase):
        self._charm = charm

    def events(self) -> list[ops.BoundEvent]:
        """The events after which this kind's sinks may have changed (config is always read)."""
        if self.relation is None:
            return []
        events = self._charm.on[self.relation]
        return [events.relation_changed, events.relation_broken]

    @abstractmethod
    def read(self) -> list[SinkConfig]:
        """The sinks this kind has now; InvalidStateError says what the operator must fix."""
