"""Batches the intake answered 200 for, kept on the alert-log volume until Falco has them.

An append-only log of segments, each record a header (magic, sequence number, length, CRC-32)
and the body as the apiserver sent it. The cap counts unsettled batches; settled records stay
on disk until their segment is full and wholly settled (at most one segment's worth).
`Spool.append` returns once the record is on disk (``fdatasync``; concurrent appends share one
sync). Batches are settled in sequence order (the
watermark in ``settled``), and a segment goes once all its batches are settled. After a crash,
a torn last record (never answered 200) is cut off and every unsettled batch is `recovered`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

RECORD: Final = struct.Struct("<4sQII")  # magic, sequence number, body length, CRC-32 of body
MAGIC: Final = b"AIB1"
SEGMENT_BYTES: Final = 16 * 1024 * 1024
SETTLED_FILE: Final = "settled"
_SUFFIX: Final = ".seg"


class SpoolFullError(Exception):
    """The spool has no room for the batch: the apiserver should retry later (503)."""


@dataclass(frozen=True)
class SpooledBatch:
    """Where one batch's body is: its segment (by first sequence number) and byte range."""

    seq: int
    segment: int
    offset: int
    length: int


@dataclass
class _Segment:
    first: int
    path: Path
    fd: int
    size: int
    last: int
    synced: int = 0


class Spool:
    """The durable queue of batches in ``directory``, at most ``max_bytes`` on disk."""

    def __init__(
        self, directory: Path, max_bytes: int, *, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()  # segments, sizes, sequence numbers
        self._sync_lock = threading.Lock()  # one fdatasync at a time; later writers share it
        self._segments: dict[int, _Segment] = {}
        self._current: _Segment | None = None
        self._unsettled: deque[tuple[int, int]] = deque()  # (seq, record bytes)
        self._unsettled_bytes = 0
        self._disk_bytes = 0
        self._settled = self._read_settled()
        self.recovered = self._recover()
        last = max((segment.last for segment in self._segments.values()), default=0)
        self._next = max(last, self._settled) + 1

    @property
    def disk_bytes(self) -> int:
        """Bytes of the segments on disk (settled records of a live segment included)."""
        return self._disk_bytes

    @property
    def unsettled(self) -> tuple[int, int]:
        """How many batches Falco may not have yet, and their bytes (what the cap counts)."""
        with self._lock:
            return len(self._unsettled), self._unsettled_bytes

    def append(self, body: bytes) -> SpooledBatch:
        """Keep ``body`` on disk; SpoolFullError if it does not fit, OSError if the disk fails."""
        size = RECORD.size + len(body)
        crc = zlib.crc32(body)
        with self._lock:
            if self._unsettled_bytes + size > self.max_bytes:
                raise SpoolFullError(f"spool holds {self.max_bytes} bytes: no room for {size}")
            segment = self._writable(size)
            seq = self._next
            header = RECORD.pack(MAGIC, seq, len(body), crc)
            try:
                written = os.writev(segment.fd, [header, body])
                if written != size:
                    raise OSError(f"short write to {segment.path}: {written} of {size} bytes")
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(segment.fd, segment.size)  # no torn record left behind
                raise
            batch = SpooledBatch(seq, segment.first, segment.size + RECORD.size, len(body))
            segment.size += size
            segment.last = seq
            self._disk_bytes += size
            self._next += 1
            self._unsettled.append((seq, size))
            self._unsettled_bytes += size
        self._sync(segment, batch.offset + batch.length)
        return batch

    def read(self, batch: SpooledBatch) -> bytes:
        """The body of an unsettled batch."""
        with self._lock:
            fd = self._segments[batch.segment].fd
        return os.pread(fd, batch.length, batch.offset)

    def settle(self, through: int) -> None:
        """Falco has every batch up to ``through``: forget them, drop fully settled segments.

        The watermark is not synced: if a crash loses it, those batches come back as
        `recovered` and are sent again (duplicates, never losses).
        """
        with self._lock:
            if through <= self._settled:
                return
            self._settled = through
            while self._unsettled and self._unsettled[0][0] <= through:
                self._unsettled_bytes -= self._unsettled.popleft()[1]
            temporary = self.directory / f".{SETTLED_FILE}.tmp"
            temporary.write_text(f"{through}\n")
            temporary.replace(self.directory / SETTLED_FILE)
            for segment in list(self._segments.values()):
                if segment.last <= through and segment is not self._current:
                    self._drop(segment)

    def close(self) -> None:
        """Close every segment; the files stay for the next start."""
        with self._lock:
            for segment in self._segments.values():
                os.close(segment.fd)
            self._segments.clear()
            self._current = None

    def _writable(self, size: int) -> _Segment:
        """The segment to append ``size`` bytes to, a new one when the current is full."""
        current = self._current
        if current is not None and (
            current.size == 0 or current.size + size <= self._segment_bytes
        ):
            return current
        if current is not None and current.last <= self._settled:
            self._drop(current)
        path = self.directory / f"{self._next:020d}{_SUFFIX}"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        _sync_directory(self.directory)  # the new name survives a crash with its records
        segment = _Segment(self._next, path, fd, 0, self._next - 1)
        self._segments[segment.first] = self._current = segment
        return segment

    def _sync(self, segment: _Segment, end: int) -> None:
        """Return once ``segment`` is on disk up to ``end``; a sync serves all writes before it."""
        with self._sync_lock:
            if segment.synced >= end:
                return
            with self._lock:
                target = segment.size
            os.fdatasync(segment.fd)
            segment.synced = target

    def _drop(self, segment: _Segment) -> None:
        os.close(segment.fd)
        self._disk_bytes -= segment.size
        segment.path.unlink(missing_ok=True)
        del self._segments[segment.first]
        if segment is self._current:
            self._current = None

    def _read_settled(self) -> int:
        try:
            return int((self.directory / SETTLED_FILE).read_text())
        except (OSError, ValueError):
            return 0

    def _recover(self) -> list[SpooledBatch]:
        """Unsettled batches from the segments on disk; settled segments and torn tails go."""
        recovered: list[SpooledBatch] = []
        paths = sorted(self.directory.glob(f"*{_SUFFIX}"), key=lambda path: path.name)
        for path in paths:
            first = int(path.stem)
            data = path.read_bytes()
            batches = list(_records(data, first))
            end = batches[-1].offset + batches[-1].length if batches else 0
            if end < len(data):
                logger.warning("%s: %d bytes of a torn record cut off", path, len(data) - end)
                os.truncate(path, end)
            if not batches or batches[-1].seq <= self._settled:
                path.unlink()
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            self._segments[first] = _Segment(first, path, fd, end, batches[-1].seq, end)
            self._disk_bytes += end
            for batch in batches:
                if batch.seq > self._settled:
                    recovered.append(batch)
                    self._unsettled.append((batch.seq, RECORD.size + batch.length))
                    self._unsettled_bytes += RECORD.size + batch.length
        return recovered


def _records(data: bytes, first: int) -> list[SpooledBatch]:
    """The whole, intact records at the start of a segment's bytes."""
    batches: list[SpooledBatch] = []
    offset = 0
    while offset + RECORD.size <= len(data):
        magic, seq, length, crc = RECORD.unpack_from(data, offset)
        body = offset + RECORD.size
        if magic != MAGIC or body + length > len(data):
            break
        if zlib.crc32(data[body : body + length]) != crc:
            break
        batches.append(SpooledBatch(seq, first, body, length))
        offset = body + length
    return batches


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
