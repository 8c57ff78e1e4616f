"""What a unit remembers across pod restarts: text in its own peer databag, kept by Juju."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import ops


def recalled_check(remembered: str, key: str) -> dict[str, object] | None:
    """A remembered check's JSON fields if it is for ``key``; None if absent, garbled or stale.

    Remembered checks are JSON objects with a ``key`` (what was checked, and by which code):
    one for another key is of no use, and whatever the databag holds must not fail a hook.
    """
    try:
        data: object = json.loads(remembered) if remembered else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or cast("dict[str, object]", data).get("key") != key:
        return None
    return cast("dict[str, object]", data)


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
