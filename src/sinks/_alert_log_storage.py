"""The alert-log storage as the charm sees it: does the retention cap fit, is it filling up.

Juju mounts the storage in the charm's container too, so the charm measures the very volume
Falco writes to, whether or not the forwarder runs. Falco 0.44.1's ``file_output`` loses an
alert it cannot append (the write fails, nothing is logged or counted; only stdout has it),
so the cap must leave room, and a volume filling up (the forwarder down: nothing rotates) is
said in the status before it is full. Pure apart from one ``statvfs``; no ``ops``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from constants import MIB
from sinks._forwarder_config import segment_bytes

STORAGE = "alert-log"
# Kept free on the storage beyond the log's largest size: checkpoints, and room for Falco to
# go on writing while the forwarder is restarted.
HEADROOM_SHARE = 0.1
# Below this share free, the status says so.
LOW_SPACE_SHARE = 0.1


@dataclass(frozen=True)
class Volume:
    """Sizes in bytes of the filesystem the storage is."""

    size: int
    free: int


def measure(location: Path) -> Volume | None:
    """The storage mounted at ``location``, or None if it cannot be read."""
    try:
        stats = os.statvfs(location)
    except OSError:
        return None
    return Volume(stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize)


def largest_size(retention_mb: int) -> int:
    """Bytes the alert log may reach with ``retention_mb``: the cap and one segment."""
    retention = retention_mb * MIB
    return retention + segment_bytes(retention)


def retention_problem(retention_mb: int, volume: Volume) -> str:
    """Why ``alert_log_retention_mb`` cannot fit ``volume`` with headroom; "" when it fits."""
    room = volume.size * (1 - HEADROOM_SHARE)
    if largest_size(retention_mb) <= room:
        return ""
    fitting = int(room / MIB)
    while fitting > 0 and largest_size(fitting) > room:
        fitting -= 1
    advice = f"set it to at most {fitting}" if fitting >= 16 else "attach larger storage"
    segment = _size(segment_bytes(retention_mb * MIB))
    kept_free = "segment, and 10% must stay free):"  # HEADROOM_SHARE, as the status page says
    return (
        f"alert_log_retention_mb: {retention_mb} does not fit the {_size(volume.size)} "
        f"alert-log storage (the log reaches the cap plus one {segment} {kept_free} {advice}"
    )


def space_note(volume: Volume) -> str:
    """A status note once the storage is nearly full; "" while it has room."""
    if not volume.size or volume.free >= volume.size * LOW_SPACE_SHARE:
        return ""
    used, free = round(100 * (1 - volume.free / volume.size)), _size(volume.free)
    return f"alert-log storage {used}% full ({free} free): Falco loses alerts once it is full"


def _size(count: int) -> str:
    if count >= 1 << 30:
        return f"{count / (1 << 30):.1f} GiB"
    return f"{count / MIB:.0f} MiB"
