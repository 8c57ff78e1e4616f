"""How alert delivery is going, in a few words for the unit status.

The forwarder counts every alert it delivers or drops, and each sink's backlog, on its
``/metrics`` (pod loopback).
Reading them on each hook puts a failing sink or a lost alert in ``juju status``, where
operators look, and not only in the forwarder's log. A loss shows until an hour passes
without a new one (`DropHistory`, kept in the unit's peer data).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping

from constants import MIB
from falco_forwarder.metrics import DeliveryState, parse_delivery
from peer_memory import UnitMemory
from pod_metrics import read_metrics
from sinks._drop_history import DropHistory

logger = logging.getLogger(__name__)

DROP_HISTORY_KEY = "forwarder-drops"
clock = time.time  # the tests move it on


def forwarder_notes(port: int, sinks: Collection[str], memory: UnitMemory) -> list[str]:
    """Failing sinks and recent losses, from the forwarder's own counts on ``port``."""
    delivery = read_delivery(port)
    if delivery is None:
        logger.warning("the forwarder's metrics did not answer; delivery state unknown")
        return ["forwarder not answering"]
    now = clock()
    history = DropHistory.recall(memory.recall(DROP_HISTORY_KEY)).after(delivery.dropped, now)
    memory.remember(DROP_HISTORY_KEY, history.text())
    return delivery_notes(delivery, sinks, history.recent(now))


def read_delivery(port: int) -> DeliveryState | None:
    """The forwarder's delivery counts, or None while it does not answer (starting, or down)."""
    text = read_metrics(port)
    return None if text is None else parse_delivery(text)


def delivery_notes(
    state: DeliveryState, sinks: Collection[str], recent_drops: Mapping[str, Mapping[str, int]]
) -> list[str]:
    """Notes for the status: failing sinks, recent losses; none when all is well.

    One note per configured sink in trouble (a removed sink's counters linger in the forwarder
    until it restarts, and stay out of the status).
    """
    notes: list[str] = []
    for sink in sorted(set(sinks) & (state.down | recent_drops.keys() | state.unsaved)):
        parts: list[str] = []
        # Failing with nothing queued: the alert it was retrying was dropped, nothing waits.
        if sink in state.down and (backlog := state.backlog.get(sink, 0)):
            parts.append(f"failing, {_size(backlog)} queued")
        if dropped := recent_drops.get(sink):
            parts.append(f"{sum(dropped.values())} dropped ({_by_reason(dropped)})")
        if sink in state.unsaved:
            parts.append("checkpoint not saved")
        if parts:
            notes.append(f"{sink} {', '.join(parts)}")
    return notes


def _size(count: int) -> str:
    """Bytes in the unit an operator reads at a glance: ``812 B``, ``3.4 KiB``, ``1.2 MiB``."""
    if count < 1024:
        return f"{count} B"
    if count < MIB:
        return f"{count / 1024:.1f} KiB"
    return f"{count / MIB:.1f} MiB"


def _by_reason(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))
