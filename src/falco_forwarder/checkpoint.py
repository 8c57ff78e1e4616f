"""A sink's read position in the alert log, kept in a small file and synced in groups.

Each position is one fixed-width record rewritten in place with a single ``pwrite`` (a
fraction of one disk sector, so it is never torn), which costs a couple of microseconds:
cheap enough to do after every delivery. Durability across a node crash comes from
``fsync``, which is slow, so `Checkpoint.sync` is called at most once a second for all
sinks together, and at every clean stop (group commit). A process killed at any moment
therefore repeats at most the alert it was delivering.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self

logger = logging.getLogger(__name__)

_WIDTH: Final = 20
_RECORD: Final = _WIDTH * 2 + 2  # "<segment> <offset>\n", both zero-padded


@dataclass(frozen=True, order=True)
class Position:
    """A byte offset in one segment of the alert log (segments are numbered upwards)."""

    segment: int
    offset: int


class Checkpoint:
    """The file holding one position; not thread-safe (the alert log serialises access)."""

    def __init__(self, fd: int, position: Position | None):
        self._fd = fd
        self.position = position
        self._dirty = False

    @classmethod
    def open(cls, path: Path) -> Self:
        """Open (or create) the file; ``position`` is None if it is new or unreadable."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            raw = os.pread(fd, _RECORD, 0)
        except OSError:
            os.close(fd)
            raise
        position = _parse(raw)
        if raw and position is None:
            logger.warning("checkpoint %s is unreadable (%r); starting over", path, raw[:64])
        return cls(fd, position)

    def write(self, position: Position) -> None:
        """Record ``position``; it reaches the disk at the next `sync`."""
        record = b"%0*d %0*d\n" % (_WIDTH, position.segment, _WIDTH, position.offset)
        os.pwrite(self._fd, record, 0)
        self.position = position
        self._dirty = True

    def sync(self) -> None:
        """Flush the last write to the disk, if anything changed since the last sync."""
        if self._dirty:
            os.fsync(self._fd)
            self._dirty = False

    def close(self) -> None:
        """Sync and close."""
        try:
            self.sync()
        finally:
            os.close(self._fd)


def _parse(raw: bytes) -> Position | None:
    parts = raw.split()
    if len(raw) != _RECORD or len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return Position(int(parts[0]), int(parts[1]))
