"""One sink's reader of the alert log: complete lines, in order, across segments.

A line still being written (no newline yet) is left for the next read. A segment is left only
once the next one holds a line (`AlertLog.successor`) and a last read found nothing more; a
last line cut short there (a writer killed mid-line) is handed over as it is, and the worker
drops it as malformed. A line longer than `MAX_LINE_BYTES` is skipped to its end and handed
over once, marked ``oversized``. Memory is one read chunk plus one line, whatever the backlog.
"""

import logging
import os
from typing import Final, NamedTuple

from falco_forwarder.alert_log import AlertLog
from falco_forwarder.checkpoint import Position

logger = logging.getLogger(__name__)

CHUNK_BYTES: Final = 64 * 1024
# Far above any Falco alert (k8saudit caps an event at 256 KiB): a longer "line" is garbage.
MAX_LINE_BYTES: Final = 16 * 1024 * 1024
_SHOWN_BYTES: Final = 120  # of an oversized line, for the log


class Line(NamedTuple):
    """One line without its newline, and the position right after it (the next checkpoint).

    An ``oversized`` line holds only its first bytes.
    """

    data: bytes
    end: Position
    oversized: bool = False


class LogReader:
    """Reads from ``position`` on; not thread-safe (one per sink worker)."""

    def __init__(self, log: AlertLog, position: Position):
        self._log = log
        self._segment = position.segment
        self._line = position.line
        self._base = position.offset  # the file offset of the buffer's first byte
        self._buf = bytearray()
        self._start = 0  # bytes of the buffer already handed over
        self._oversized: bytes | None = None  # the start of a line being skipped
        self._fd: int | None = None

    @property
    def position(self) -> Position:
        """Where the next line starts."""
        return Position(self._segment, self._base + self._start, self._line)

    def read(self, max_lines: int) -> list[Line]:
        """Up to ``max_lines`` complete lines; an empty list when none is complete yet."""
        lines: list[Line] = []
        while len(lines) < max_lines:
            end = self._buf.find(b"\n", self._start)
            if end >= 0:
                lines.append(self._take(end))
            elif len(self._buf) - self._start >= MAX_LINE_BYTES or (
                self._oversized is not None and len(self._buf) > self._start
            ):
                self._skip()
            elif not self._fill():
                break
        return lines

    def _take(self, end: int) -> Line:
        data = self._oversized or bytes(self._buf[self._start : end])
        oversized = self._oversized is not None
        self._oversized = None
        self._start = end + 1
        self._line += 1
        if self._start > CHUNK_BYTES and self._start * 2 > len(self._buf):
            self._compact()
        return Line(data, Position(self._segment, self._base + self._start, self._line), oversized)

    def _skip(self) -> None:
        """Drop what is buffered of a line too long to hold, keeping its start for the log."""
        if self._oversized is None:
            self._oversized = bytes(self._buf[self._start : self._start + _SHOWN_BYTES])
        self._start = len(self._buf)
        self._compact()

    def _compact(self) -> None:
        del self._buf[: self._start]
        self._base += self._start
        self._start = 0

    def _fill(self) -> bool:
        """Read more, moving to the next segment once this one is done; False if nothing new."""
        if self._fd is None:
            self._fd = self._log.open(self._segment)
        if self._fd is not None and self._more():
            return True
        following = self._log.successor(self._segment)
        if following is None:
            return False
        if self._fd is None:
            logger.error("segment %d of the alert log is missing: skipped", self._segment)
        elif self._more():  # written before the next segment's first line
            return True
        elif len(self._buf) > self._start or self._oversized is not None:
            self._buf += b"\n"  # a last line cut short: the worker drops it as malformed
            return True
        self.close()
        self._segment, self._line, self._base = following, 0, 0
        self._buf.clear()
        self._start = 0
        return True

    def _more(self) -> bool:
        assert self._fd is not None
        chunk = os.pread(self._fd, CHUNK_BYTES, self._base + len(self._buf))
        self._buf += chunk
        return bool(chunk)

    def close(self) -> None:
        """Close the open segment, if any."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
