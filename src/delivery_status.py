"""How alert delivery is going, in a few words for the unit status.

The forwarder counts every alert it queues, drops or refuses on its ``/metrics`` (pod loopback).
Reading them on each hook puts a failing sink or a lost alert in ``juju status``, where
operators look, and not only in the forwarder's log.
"""

from __future__ import annotations

from collections.abc import Collection

from falco_forwarder.metrics import DeliveryState, parse_delivery
from pod_metrics import read_metrics


def read_delivery(port: int) -> DeliveryState | None:
    """The forwarder's delivery counts, or None while it does not answer (starting, or down)."""
    text = read_metrics(port)
    return None if text is None else parse_delivery(text)


def delivery_notes(state: DeliveryState, sinks: Collection[str]) -> list[str]:
    """Notes for the status: failing sinks, lost alerts; none when all is well.

    One note per configured sink in trouble (a removed sink's counters linger in the forwarder
    until it restarts), one for posts from Falco the forwarder refused. Counts run from the
    forwarder's start, so a past loss stays visible until then.
    """
    notes: list[str] = []
    for sink in sorted(set(sinks) & (state.down | state.dropped.keys())):
        parts: list[str] = []
        # Failing with nothing queued: the alert it was retrying was dropped, nothing waits.
        if sink in state.down and (queued := state.queued.get(sink, 0)):
            parts.append(f"failing, {queued} queued")
        if dropped := state.dropped.get(sink):
            parts.append(f"{sum(dropped.values())} dropped ({_by_reason(dropped)})")
        if parts:
            notes.append(f"{sink} {'; '.join(parts)}")
    if state.rejected:
        notes.append(f"{sum(state.rejected.values())} refused ({_by_reason(state.rejected)})")
    return notes


def _by_reason(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))
