"""What a unit remembers across pod restarts: text in its own peer databag, kept by Juju."""

from __future__ import annotations

import ops


class UnitMemory:
    """This unit's keys in one peer relation; without the relation nothing is kept."""

    def __init__(self, model: ops.Model, peer_relation: str):
        self._model = model
        self._relation_name = peer_relation

    def recall(self, key: str) -> str:
        """What was remembered under ``key``, or "" if nothing."""
        peers = self._model.get_relation(self._relation_name)
        return peers.data[self._model.unit].get(key, "") if peers else ""

    def remember(self, key: str, text: str) -> None:
        """Keep ``text`` under ``key`` ("" forgets it); an unchanged value writes nothing."""
        peers = self._model.get_relation(self._relation_name)
        if peers is not None and peers.data[self._model.unit].get(key, "") != text:
            peers.data[self._model.unit][key] = text
