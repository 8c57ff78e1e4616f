"""Which sinks dropped alerts lately, from the forwarder's counters read hook after hook.

The forwarder's drop counters only grow until it restarts, so a status built on them alone
would show a loss fixed long ago for as long as the forwarder runs. The unit remembers the
counters it last read and when each sink last dropped: a sink's drops stay in the status
until `DROP_NOTE_HOLD_SECONDS` pass without a new one. Pure: text in, text out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

DROP_NOTE_HOLD_SECONDS = 3600
"""An hour: several update-status runs see it, and a fixed sink's status clears by itself."""

Counts = dict[str, dict[str, int]]
"""Alerts dropped, per sink and reason."""


@dataclass(frozen=True)
class DropHistory:
    """The counters as last read, and each sink's drops since its latest spell of drops began."""

    counted: Counts = field(default_factory=Counts)
    """The forwarder's counters at the last read (they restart from 0 with the forwarder)."""
    spell: Counts = field(default_factory=Counts)
    """Drops of each sink's latest spell: from its first new drop after a quiet hold."""
    last_drop: dict[str, float] = field(default_factory=dict[str, float])
    """When each sink last dropped, in seconds since the epoch."""

    @classmethod
    def recall(cls, text: str) -> DropHistory:
        """The history remembered as ``text``; an empty or unreadable one starts afresh."""
        try:
            data = json.loads(text)
            return cls(
                _counts(data["counted"]),
                _counts(data["spell"]),
                {str(sink): float(at) for sink, at in data["last_drop"].items()},
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls()

    def text(self) -> str:
        """What to remember; the same history gives the same text, so nothing is rewritten."""
        data = {"counted": self.counted, "spell": self.spell, "last_drop": self.last_drop}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def after(self, dropped: Mapping[str, Mapping[str, int]], now: float) -> DropHistory:
        """The history once the forwarder reports ``dropped`` (its counters) at ``now``.

        A counter lower than last read means the forwarder restarted: all of it is new.
        """
        spell = {sink: dict(counts) for sink, counts in self.spell.items()}
        last_drop = dict(self.last_drop)
        for sink, counts in dropped.items():
            before = self.counted.get(sink, {})
            new = {
                reason: count - before.get(reason, 0) if count >= before.get(reason, 0) else count
                for reason, count in counts.items()
            }
            new = {reason: count for reason, count in new.items() if count > 0}
            if not new:
                continue
            if not self._holds(sink, now):
                spell[sink] = {}
            for reason, count in new.items():
                spell[sink][reason] = spell[sink].get(reason, 0) + count
            last_drop[sink] = now
        held = {sink for sink in last_drop if now - last_drop[sink] < DROP_NOTE_HOLD_SECONDS}
        return DropHistory(
            counted={sink: dict(counts) for sink, counts in dropped.items() if counts},
            spell={sink: spell[sink] for sink in held},
            last_drop={sink: last_drop[sink] for sink in held},
        )

    def recent(self, now: float) -> Counts:
        """Each sink's drops while they are held in the status: none once the hold has passed."""
        return {sink: counts for sink, counts in self.spell.items() if self._holds(sink, now)}

    def _holds(self, sink: str, now: float) -> bool:
        return sink in self.last_drop and now - self.last_drop[sink] < DROP_NOTE_HOLD_SECONDS


def _counts(value: object) -> Counts:
    """Counts read back from JSON; anything else raises, and the history starts afresh."""
    found = cast("dict[str, dict[str, int]]", value)
    return {
        str(sink): {str(reason): int(count) for reason, count in counts.items()}
        for sink, counts in found.items()
    }
