"""A sink's read position in the alert log, kept in a small file and synced in groups.

Each position is one fixed-width record with a CRC, rewritten in place with a single ``pwrite``
(a fraction of one disk sector, so it is never torn), which costs a couple of microseconds:
cheap enough to do after every delivery. Durability across a node crash comes from ``fsync``,
which is slow, so `Checkpoint.sync` is called at most once a second for all sinks together,
and at every clean stop (group commit). A process killed at any moment therefore repeats at
most what it was delivering.

A checkpoint never stops delivery: when its file cannot be opened or written (a read-only or
full volume, a permission problem) the position is kept in memory, `error` says why, and every
`sync` tries again.
"""

import logging
import os
import threading
import zlib
from pathlib import Path
from typing import Final, NamedTuple

logger = logging.getLogger(__name__)

_WIDTH: Final = 20
# "<segment> <offset> <line> <crc32>\n": numbers zero-padded, the CRC of what precedes it.
_RECORD: Final = _WIDTH * 3 + 3 + 8 + 1
_OLD_RECORD: Final = _WIDTH * 2 + 2  # before line numbers: "<segment> <offset>\n"


class Position(NamedTuple):
    """A byte offset in one segment of the alert log, and the lines before it there.

    Segments are numbered upwards; ``line`` counts the complete lines before ``offset`` in
    the segment, or is -1 where a position saved by an older forwarder did not record it.
    A tuple: one is made for every line read, and they compare in log order.
    """

    segment: int
    offset: int
    line: int = 0


class Checkpoint:
    """The file holding one position; a delivery writes it while the upkeep syncs it."""

    def __init__(self, path: Path):
        """Open (or create) ``path`` and read it; see `position`, `damaged` and `error`."""
        self.path = path
        self.position: Position | None = None
        """Where the sink is; None until known (a new sink, or a record that cannot be read)."""
        self.damaged = False
        """The file held something that is not a position (corrupt, or unreadable)."""
        self.error = ""
        """Why the last open or write failed; empty while the position is on disk."""
        self._lock = threading.Lock()  # held for a pwrite, never for an fsync
        self._fd: int | None = None
        self._writes = 0  # positions written: a sync clears `_dirty` only if none came since
        self._dirty = False
        self._closed = False
        self._open()
        if self._fd is None:
            return
        try:
            raw = os.pread(self._fd, _RECORD, 0)
        except OSError as e:
            self.damaged, self.error = True, e.strerror or str(e)
            return
        self.position = parse(raw)
        if raw and self.position is None:
            self.damaged = True
            logger.warning("checkpoint %s is unreadable (%r)", path, raw[:64])

    def _open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            self.error = e.strerror or str(e)

    def write(self, position: Position) -> None:
        """Record ``position``; it reaches the disk at the next `sync`. Never raises."""
        with self._lock:
            self.position = position
            self._dirty = True
            self._writes += 1
            if self._fd is not None and not self.error:
                self.error = _put(self._fd, position)

    def sync(self) -> None:
        """Flush the last write to the disk; retry a failed open or write. Never raises.

        The fsync runs on a descriptor of its own, outside the lock: a delivery writing the
        next position never waits for the disk.
        """
        with self._lock:
            if not self._dirty or self.position is None or self._closed:
                return
            if self._fd is None:
                self._open()
                if self._fd is None:
                    return
            fd, position, writes = os.dup(self._fd), self.position, self._writes
        try:
            error = _put(fd, position)
            if not error:
                os.fsync(fd)
        except OSError as e:
            error = e.strerror or str(e)
        finally:
            os.close(fd)
        with self._lock:
            self.error = error
            if not error and self._writes == writes:
                self._dirty = False

    def close(self) -> None:
        """Sync and close."""
        self.sync()
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _put(fd: int, position: Position) -> str:
    """Write ``position`` in place; why it failed, or ""."""
    try:
        os.pwrite(fd, render(position), 0)
    except OSError as e:
        return e.strerror or str(e)
    return ""


def render(position: Position) -> bytes:
    """The fixed-width record for ``position``."""
    head = b"%0*d %0*d %0*d " % (
        _WIDTH,
        position.segment,
        _WIDTH,
        position.offset,
        _WIDTH,
        max(position.line, 0),
    )
    return head + b"%08x\n" % zlib.crc32(head)


def parse(raw: bytes) -> Position | None:
    """The position in a record, or None if it is not a whole, intact one.

    A record of the forwarder before line numbers (``<segment> <offset>``) is read with
    ``line`` -1: the alert log counts the lines when it needs them.
    """
    if len(raw) == _OLD_RECORD and raw.endswith(b"\n"):
        parts = raw.split()
        if len(parts) == 2 and all(part.isdigit() for part in parts):
            return Position(int(parts[0]), int(parts[1]), -1)
        return None
    if len(raw) != _RECORD or not raw.endswith(b"\n"):
        return None
    head, crc = raw[:-9], raw[-9:-1]
    parts = head.split()
    if (
        len(parts) != 3
        or not all(part.isdigit() for part in parts)
        or crc != b"%08x" % zlib.crc32(head)
    ):
        return None
    return Position(int(parts[0]), int(parts[1]), int(parts[2]))
