"""Falco's JSON alert log as a durable queue: segments, rotation, retention, sink positions.

Falco appends one line per alert to the active file (``file_output`` with ``keep_alive:
false``: open, one write, close, for every alert). Only the forwarder renames or deletes
files, so the active file is always segment number ``active``; rotation renames it to
``<name>.<number>`` and the next alert Falco writes creates a new active file. Falco writes
from a single output thread, one alert after the other, so once a later segment holds a
line no more can arrive in an earlier one: that is when a reader may leave a segment (see
`AlertLog.successor`).

Each sink has a `Checkpoint`. Retention deletes the oldest rotated segments while all of them
together exceed the cap; every sink that had not finished one is moved past it and its unread
lines are reported to ``on_drop``, with the count exact (the sink's in-flight alert included:
its delivery no longer commits, see `AlertLog.commit`).
"""

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from falco_forwarder.checkpoint import Checkpoint, Position

logger = logging.getLogger(__name__)

_ACTIVE_RECORD: Final = "active-segment"
_CHECKPOINT_SUFFIX: Final = ".checkpoint"
_COUNT_CHUNK: Final = 1024 * 1024


@dataclass
class _Cursor:
    checkpoint: Checkpoint
    generation: int = 0
    """Bumped whenever retention moves the position, so a worker knows to start over."""


class AlertLog:
    """The segments of one log file and the sinks' positions in them; thread-safe.

    A reader resolves a segment to a file with `open` under the same lock `maintain`
    renames under, so it never opens the new active file for the old segment.
    """

    def __init__(
        self,
        file: Path,
        state_dir: Path,
        *,
        retention_bytes: int,
        segment_bytes: int,
        on_drop: Callable[[str, int], None],
    ):
        self._file = file
        self._state_dir = state_dir
        self.retention_bytes = retention_bytes
        self.segment_bytes = segment_bytes
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._pattern = re.compile(re.escape(file.name) + r"\.(\d{12})")
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._record = Checkpoint.open(state_dir / _ACTIVE_RECORD)
        self._rotated = self._scan()
        recorded = self._record.position.segment if self._record.position else 1
        # A crash between a rename and the record leaves the rotated file as the witness.
        self._active = max([recorded, *(number + 1 for number in self._rotated)])
        if self._active != recorded:
            self._record_active()
        self._cursors: dict[str, _Cursor] = {}

    @property
    def file(self) -> Path:
        """The file Falco appends to."""
        return self._file

    def _scan(self) -> list[int]:
        if not self._file.parent.is_dir():
            return []
        return sorted(
            int(match[1])
            for name in os.listdir(self._file.parent)
            if (match := self._pattern.fullmatch(name))
        )

    def _record_active(self) -> None:
        self._record.write(Position(self._active, 0))
        self._record.sync()

    def _path(self, segment: int) -> Path:
        return self._file if segment == self._active else self._rotated_path(segment)

    def _rotated_path(self, segment: int) -> Path:
        return self._file.with_name(f"{self._file.name}.{segment:012d}")

    def _oldest(self) -> int:
        return self._rotated[0] if self._rotated else self._active

    # -- sinks ----------------------------------------------------------------------------------

    def add_sinks(self, names: Iterable[str]) -> None:
        """Track ``names`` from their checkpoints; a new sink starts at the oldest alert kept.

        Raise `OSError`, adding none, if a checkpoint cannot be opened.
        """
        opened: dict[str, Checkpoint] = {}
        try:
            for name in names:
                opened[name] = Checkpoint.open(self._state_dir / f"{name}{_CHECKPOINT_SUFFIX}")
        except OSError:
            for checkpoint in opened.values():
                checkpoint.close()
            raise
        with self._lock:
            for name, checkpoint in opened.items():
                position = checkpoint.position
                oldest = self._oldest()
                if position is not None and not oldest <= position.segment <= self._active:
                    logger.warning(
                        "sink %s: its checkpoint %s is outside the log (segments %d-%d): "
                        "alerts removed while it was not configured are not counted; "
                        "reading from the oldest kept",
                        name,
                        position,
                        oldest,
                        self._active,
                    )
                    position = None
                if position is None:
                    checkpoint.write(Position(oldest, 0))
                self._cursors[name] = _Cursor(checkpoint)

    def remove_sinks(self, names: Iterable[str]) -> None:
        """Stop tracking ``names`` (their workers must have stopped); checkpoints stay on disk."""
        with self._lock:
            cursors = [self._cursors.pop(name) for name in names]
        for cursor in cursors:
            cursor.checkpoint.close()

    def position(self, name: str) -> tuple[Position, int]:
        """Where ``name`` resumes, and the generation a `commit` from there must quote."""
        with self._lock:
            cursor = self._cursors[name]
            assert cursor.checkpoint.position is not None  # set by add_sinks
            return cursor.checkpoint.position, cursor.generation

    def generation(self, name: str) -> int:
        """The sink's generation: it changes when retention moves the sink forward."""
        with self._lock:
            return self._cursors[name].generation

    def commit(self, name: str, generation: int, position: Position) -> bool:
        """Record that ``name`` is done with everything before ``position``.

        False (nothing recorded) when retention moved the sink meanwhile: the alert was
        counted as dropped then, and the worker must start over from the new position.
        """
        with self._lock:
            cursor = self._cursors.get(name)
            if cursor is None or cursor.generation != generation:
                return False
            cursor.checkpoint.write(position)
            return True

    # -- readers --------------------------------------------------------------------------------

    def open(self, segment: int) -> int | None:
        """A read-only descriptor on ``segment``, or None if its file does not exist."""
        with self._lock:
            try:
                return os.open(self._path(segment), os.O_RDONLY)
            except FileNotFoundError:
                return None

    def successor(self, segment: int) -> int | None:
        """The segment after ``segment`` once it holds a line; None while none does.

        From then on nothing more is written to ``segment`` (one writer, one alert at a time).
        """
        with self._lock:
            later = [number for number in self._rotated if number > segment]
            if later:
                return later[0]
            if segment < self._active and _size(self._file) > 0:
                return self._active
            return None

    # -- upkeep ---------------------------------------------------------------------------------

    def maintain(self) -> None:
        """Rotate the active file once it reaches the segment size, then apply retention."""
        with self._lock:
            if _size(self._file) >= self.segment_bytes:
                self._rotate()
            drops = self._enforce_retention()
        for name, count in drops:
            self._on_drop(name, count)

    def _rotate(self) -> None:
        os.rename(self._file, self._rotated_path(self._active))
        _sync_dir(self._file.parent)
        self._rotated.append(self._active)
        self._active += 1
        self._record_active()
        logger.info("rotated %s to segment %d", self._file, self._rotated[-1])

    def _enforce_retention(self) -> list[tuple[str, int]]:
        sizes = {number: _size(self._path(number)) for number in self._rotated}
        total = sum(sizes.values()) + _size(self._file)
        drops: list[tuple[str, int]] = []
        while total > self.retention_bytes and self._rotated:
            victim = self._rotated.pop(0)
            following = self._oldest()
            for name, cursor in self._cursors.items():
                position = cursor.checkpoint.position
                if position is None or position.segment > victim:
                    continue
                unread = _count_lines(self._path(victim), position.offset)
                cursor.checkpoint.write(Position(following, 0))
                if unread:  # else the sink has read it all: its next line is in ``following``
                    cursor.generation += 1
                    drops.append((name, unread))
            self._path(victim).unlink(missing_ok=True)
            total -= sizes[victim]
            logger.info("retention: removed segment %d (%d bytes)", victim, sizes[victim])
        return drops

    def sync(self) -> None:
        """Flush every changed checkpoint to disk (the group commit)."""
        with self._lock:
            checkpoints = [cursor.checkpoint for cursor in self._cursors.values()]
            for checkpoint in checkpoints:
                checkpoint.sync()

    def close(self) -> None:
        """Sync and close every checkpoint."""
        with self._lock:
            cursors = list(self._cursors.values())
            self._cursors.clear()
        for cursor in cursors:
            cursor.checkpoint.close()
        self._record.close()

    # -- gauges ---------------------------------------------------------------------------------

    def disk_bytes(self) -> int:
        """Bytes of every segment on disk, the active one included."""
        with self._lock:
            return sum(_size(self._path(n)) for n in self._rotated) + _size(self._file)

    def backlog_bytes(self) -> dict[str, int]:
        """Bytes each sink has still to read."""
        with self._lock:
            sizes = {n: _size(self._path(n)) for n in (*self._rotated, self._active)}
            backlog: dict[str, int] = {}
            for name, cursor in self._cursors.items():
                position = cursor.checkpoint.position or Position(self._oldest(), 0)
                ahead = sum(size for n, size in sizes.items() if n >= position.segment)
                backlog[name] = max(ahead - position.offset, 0)
            return backlog


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _count_lines(path: Path, offset: int) -> int:
    """Lines from ``offset`` to the end, a last one without its newline included."""
    count, last = 0, b"\n"
    try:
        with path.open("rb") as stream:
            stream.seek(offset)
            while chunk := stream.read(_COUNT_CHUNK):
                count += chunk.count(b"\n")
                last = chunk[-1:]
    except FileNotFoundError:
        return 0
    return count + (last != b"\n")


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
