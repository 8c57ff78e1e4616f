"""One sink's reader of the alert log: complete lines, in order, across rotated segments.

A line still being written (no newline yet) is left for the next read. A segment is left
only once the next one holds a line (`AlertLog.successor`) and a last read found nothing
more; a last line cut short there (a writer killed mid-line) is handed over as it is, and
the worker drops it as malformed. Memory is one read chunk plus one line, whatever the
backlog.
"""

import logging
import os
from dataclasses import dataclass
from typing import Final

from falco_forwarder.alert_log import AlertLog
from falco_forwarder.checkpoint import Position

logger = logging.getLogger(__name__)

CHUNK_BYTES: Final = 64 * 1024
# Far above any Falco alert (k8saudit caps an event at 256 KiB): a longer "line" is garbage,
# handed over in pieces of this size so that it cannot hold the memory.
MAX_LINE_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class Line:
    """One line without its newline, and the position right after it (the next checkpoint)."""

    data: bytes
    end: Position


class LogReader:
    """Reads from ``position`` on; not thread-safe (one per sink worker)."""

    def __init__(self, log: AlertLog, position: Position):
        self._log = log
        self._segment = position.segment
        self._offset = position.offset  # of the first byte in the buffer
        self._buf = bytearray()
        self._fd: int | None = None

    def read(self, max_lines: int) -> list[Line]:
        """Up to ``max_lines`` complete lines; an empty list when none is complete yet."""
        lines: list[Line] = []
        while len(lines) < max_lines:
            end = self._buf.find(b"\n")
            taken = end + 1
            if end < 0 and len(self._buf) >= MAX_LINE_BYTES:
                end = taken = MAX_LINE_BYTES
            if end >= 0:
                data = bytes(self._buf[:end])
                del self._buf[:taken]
                self._offset += taken
                lines.append(Line(data, Position(self._segment, self._offset)))
            elif not self._fill():
                break
        return lines

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
        elif self._buf:
            self._buf += b"\n"  # a last line cut short: the worker drops it as malformed
            return True
        self.close()
        self._segment, self._offset = following, 0
        return True

    def _more(self) -> bool:
        assert self._fd is not None
        chunk = os.pread(self._fd, CHUNK_BYTES, self._offset + len(self._buf))
        self._buf += chunk
        return bool(chunk)

    def close(self) -> None:
        """Close the open segment, if any."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
