"""Falco's JSON alert log as a durable queue: segments, rotation, retention, sink positions.

Falco appends one line per alert to the active file (``file_output`` with ``keep_alive:
false``: open, one write, close, for every alert). The forwarder renames the active file to
``<name>.<number>`` to rotate it (the next alert Falco writes creates a new active file) and
deletes the oldest rotated segments beyond the retention cap. Falco writes from a single
output thread, one alert after the other, so once a later segment holds a line no more can
arrive in an earlier one: that is when a reader may leave a segment (see `AlertLog.successor`).

The log also counts the lines of every segment as they are written and knows the active file
by its inode and a fingerprint of its first line, as log shippers do, so that whatever else
happens to the files is noticed and every alert it costs is counted for each sink, by reason:

- retention removes a segment: its unread lines are dropped (``retention``), also for a sink
  that was not configured then, once it comes back;
- the active file is deleted or replaced while the forwarder runs: the old file stays open and
  is delivered to the end (nothing lost); the new file is the next segment;
- the active file is truncated, or replaced or deleted while the forwarder was stopped, or a
  rotated segment is deleted by hand: what was cut is dropped (``log_replaced``), a surviving
  first part is not read again, and delivery resumes at the right place in the new content.

Each sink has a `Checkpoint`; the log's own record (`RECORD`) keeps the active segment's
identity, the segments' line counts and each sink's segment, so a damaged checkpoint costs at
most one segment sent again. Nothing here stops delivery or upkeep for want of disk space or a
writable state directory: positions then live in memory and the problem is reported.
"""

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from falco_forwarder.burstlog import BurstLog
from falco_forwarder.checkpoint import Checkpoint, Position
from falco_forwarder.metrics import LOG_REPLACED, RETENTION

logger = logging.getLogger(__name__)

RECORD: Final = "alert-log.json"
_OLD_ACTIVE_RECORD: Final = "active-segment"  # the active number, before RECORD existed
_CHECKPOINT_SUFFIX: Final = ".checkpoint"
_COUNT_CHUNK: Final = 64 * 1024  # as a reader's: memory stays flat
# The first line identifies a file's content; a longer one is identified by its start.
_FINGERPRINT_BYTES: Final = 4096
# Line counts of removed segments kept for sinks that come back after a while.
_REMEMBERED_REMOVALS: Final = 1024

DropReport = Callable[[str, int, str], None]
"""Called with a sink, a number of alerts it will never get, and why (a drop reason)."""


@dataclass
class _Cursor:
    checkpoint: Checkpoint
    generation: int = 0
    """Bumped whenever the log moves the position, so a worker knows to start over."""

    @property
    def position(self) -> Position:
        assert self.checkpoint.position is not None  # set by add_sinks
        return self.checkpoint.position


@dataclass
class _Count:
    """Complete lines counted in a segment up to ``offset``; ``final`` once it can not grow."""

    offset: int = 0
    lines: int = 0
    final: bool = False


@dataclass(frozen=True)
class _Removed:
    """A segment no longer readable: its lines (None if unknown) and why it went.

    ``into`` is set when the segment's file lives on as a later segment (cut in place): the
    position there of the old content that survived.
    """

    lines: int | None
    reason: str
    into: Position | None = None


@dataclass(frozen=True)
class _Identity:
    """Which file the active segment is: its inode, and a fingerprint of its first line."""

    device: int
    inode: int
    fingerprint: str = ""


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
        on_drop: DropReport,
    ):
        self._file = file
        self._state_dir = state_dir
        self.retention_bytes = retention_bytes
        self.segment_bytes = segment_bytes
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._pattern = re.compile(re.escape(file.name) + r"\.(\d{12})")
        self._record_problem = BurstLog(logger)
        self._cursors: dict[str, _Cursor] = {}
        self._counts: dict[int, _Count] = {}
        self._orphans: dict[int, int] = {}  # segments gone from the directory, held open
        self._removed: dict[int, _Removed] = {}
        self._progress: dict[str, int] = {}  # each sink's segment, as last recorded
        self._drops: list[tuple[str, int, str]] = []  # reported outside the lock
        self._active_fd: int | None = None
        self._identity: _Identity | None = None
        self._seen = 0  # the active file's largest size seen
        self._changed = True  # a change of files, saved at once
        self._counted = False  # new lines counted, saved with the next sync
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            logger.error("cannot create the state directory %s: %s", state_dir, e.strerror)
        self._rotated = self._scan()
        record = self._load_record()
        self._active = max(
            [int(record.get("active", 1)), *(number + 1 for number in self._rotated)]
        )
        self._restore(record)
        with self._lock:
            self._refresh()
        self._report_drops()

    @property
    def file(self) -> Path:
        """The file Falco appends to."""
        return self._file

    @property
    def state_dir(self) -> Path:
        """Where the checkpoints are, and whatever else moves with them."""
        return self._state_dir

    # -- the record -----------------------------------------------------------------------------

    def _load_record(self) -> dict[str, Any]:
        """The record of the last run ({} if none); an older forwarder's active number too."""
        try:
            data = json.loads((self._state_dir / RECORD).read_text())
        except FileNotFoundError:
            data = None
        except (OSError, ValueError) as e:
            logger.warning("the alert log's record is unreadable (%s): counting afresh", e)
            data = None
        if isinstance(data, dict):
            return data  # pyright: ignore[reportUnknownVariableType]
        if not (self._state_dir / _OLD_ACTIVE_RECORD).exists():
            return {}
        old = Checkpoint(self._state_dir / _OLD_ACTIVE_RECORD)
        old.close()
        return {"active": old.position.segment} if old.position else {}

    def _restore(self, record: dict[str, Any]) -> None:
        """Take over what the last run knew: counts, removals, progress, the active identity."""
        counts = record.get("counts", {})
        for number in self._rotated:
            if (kept := counts.get(str(number))) is not None:
                self._counts[number] = _Count(*kept, final=True)
        for number, (lines, reason, into) in record.get("removed", {}).items():
            self._removed[int(number)] = _Removed(lines, reason, into and Position(*into))
        self._progress = dict(record.get("sinks", {}))
        recorded = int(record.get("active", 0))
        # Segments the last run held open, or counted but now missing: their content is gone.
        for number in sorted({int(n) for n in [*record.get("orphans", {}), *counts]}):
            if number != recorded and number not in self._rotated and number < self._active:
                lines = counts.get(str(number), [0, None])[1]
                self._removed[number] = _Removed(lines, LOG_REPLACED)
                logger.warning(
                    "segment %d of the alert log is gone since the last run: alerts a sink had "
                    "not delivered from it are counted as dropped (log_replaced)",
                    number,
                )
        if recorded == self._active and (identity := record.get("identity")):
            self._identity = _Identity(*identity)
            self._seen = int(record.get("seen", 0))
            if (active := counts.get(str(recorded))) is not None:
                self._counts[recorded] = _Count(*active)

    def _record(self) -> dict[str, Any]:
        identity = self._identity
        return {
            "active": self._active,
            "identity": None if identity is None else list(vars(identity).values()),
            "seen": self._seen,
            "counts": {str(n): [c.offset, c.lines] for n, c in sorted(self._counts.items())},
            "orphans": {str(n): True for n in self._orphans},
            "removed": {
                str(n): [r.lines, r.reason, r.into and list(r.into)]
                for n, r in sorted(self._removed.items())
            },
            "sinks": self._progress,
        }

    def _write_record(self, record: dict[str, Any]) -> None:
        """Replace the record atomically, outside the lock; a failure is logged once.

        Only the upkeep writes it; a failed write is tried again at the next sync.
        """
        path = self._state_dir / RECORD
        staged = path.with_name(RECORD + ".new")
        try:
            with staged.open("w") as stream:
                json.dump(record, stream, separators=(",", ":"))
                stream.flush()
                os.fsync(stream.fileno())
            staged.replace(path)
        except OSError as e:
            self._changed = True
            self._record_problem.event(
                "cannot save the alert log's record in %s (%s): delivery goes on",
                self._state_dir,
                e.strerror,
            )
            return
        self._record_problem.end("the alert log's record is saved again")

    def _take_record(self) -> dict[str, Any]:
        """The record to write now (under the lock); what changes from here is saved later."""
        self._changed = self._counted = False
        return self._record()

    # -- files ----------------------------------------------------------------------------------

    def _scan(self) -> list[int]:
        try:
            names = os.listdir(self._file.parent)
        except OSError:
            return []
        return sorted(int(match[1]) for name in names if (match := self._pattern.fullmatch(name)))

    def _rotated_path(self, segment: int) -> Path:
        return self._file.with_name(f"{self._file.name}.{segment:012d}")

    def _segments(self) -> list[int]:
        """Every segment that can be read, oldest first (the active one even when empty)."""
        return sorted({*self._rotated, *self._orphans, self._active})

    def _oldest(self) -> int:
        return self._segments()[0]

    def _open(self, segment: int) -> int | None:
        """A read-only descriptor on ``segment`` (the caller closes it), or None."""
        if segment in self._orphans:
            return os.dup(self._orphans[segment])
        if segment == self._active:
            return None if self._active_fd is None else os.dup(self._active_fd)
        if segment in self._rotated:
            try:
                return os.open(self._rotated_path(segment), os.O_RDONLY)
            except FileNotFoundError:
                return None
        return None

    def _size(self, segment: int) -> int:
        fd = self._open(segment)
        if fd is None:
            return 0
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    # -- sinks ----------------------------------------------------------------------------------

    def add_sinks(self, names: Iterable[str]) -> None:
        """Track ``names`` from their checkpoints; a new sink starts at the oldest alert kept.

        A sink whose checkpoint is damaged resumes at the start of the segment the record saw
        it in; one that comes back after retention removed its alerts has them counted.
        """
        for name in names:
            checkpoint = Checkpoint(self._state_dir / f"{name}{_CHECKPOINT_SUFFIX}")
            if checkpoint.error:
                logger.error(
                    "sink %s: cannot open its checkpoint %s (%s): its position is kept in memory"
                    " until it can be saved",
                    name,
                    checkpoint.path,
                    checkpoint.error,
                )
            with self._lock:
                position = self._start(name, checkpoint)
                checkpoint.write(position)
                self._cursors[name] = _Cursor(checkpoint)
                self._changed = True
        self._report_drops()

    def _start(self, name: str, checkpoint: Checkpoint) -> Position:
        """Where sink ``name`` starts, from its checkpoint or the record."""
        position = checkpoint.position
        oldest = self._oldest()
        if position is None:
            recorded = self._progress.get(name)
            if not (checkpoint.damaged and recorded is not None):
                return Position(oldest, 0, 0)
            logger.warning(
                "sink %s: its checkpoint is damaged; resuming at the start of segment %d, where "
                "it was (at most that segment is sent again)",
                name,
                recorded,
            )
            position = Position(recorded, 0, 0)
        elif position.line < 0:  # saved by an older forwarder
            position = Position(position.segment, position.offset, self._lines_before(position))
        position = self._past_removed(name, position)
        if not oldest <= position.segment <= self._active:
            logger.warning(
                "sink %s: its checkpoint %s is outside the log (segments %d-%d): "
                "reading from the oldest kept",
                name,
                position,
                oldest,
                self._active,
            )
            return Position(oldest, 0, 0)
        return position

    def _past_removed(self, name: str, position: Position) -> Position:
        """``position`` moved past removed segments, what they cost the sink counted."""
        while (removed := self._removed.get(position.segment)) is not None:
            read = position.line
            if removed.into is None:
                position = Position(position.segment + 1, 0, 0)
            else:  # the file lives on as a later segment: skip what survived and was read
                into = removed.into
                read = max(read, into.line)
                position = (
                    into
                    if position.offset > into.offset
                    else Position(into.segment, position.offset, position.line)
                )
            if removed.lines is not None and removed.lines > read:
                self._drops.append((name, removed.lines - read, removed.reason))
        return position

    def _lines_before(self, position: Position) -> int:
        fd = self._open(position.segment)
        if fd is None:
            return 0
        try:
            return _count_lines(fd, 0, position.offset)[0]
        finally:
            os.close(fd)

    def remove_sinks(self, names: Iterable[str]) -> None:
        """Stop tracking ``names`` (their workers must have stopped); checkpoints stay on disk."""
        with self._lock:
            cursors = [self._cursors.pop(name) for name in names]
            self._changed = True
        for cursor in cursors:
            cursor.checkpoint.close()

    def position(self, name: str) -> tuple[Position, int]:
        """Where ``name`` resumes, and the generation a `commit` from there must quote."""
        with self._lock:
            cursor = self._cursors[name]
            return cursor.position, cursor.generation

    def generation(self, name: str) -> int:
        """The sink's generation: it changes when the log moves the sink forward.

        Read without the lock (asked before every request): an int is read whole, and a value
        read just before a change is caught by the `commit` that follows.
        """
        return self._cursors[name].generation

    def commit(self, name: str, generation: int, position: Position) -> bool:
        """Record that ``name`` is done with everything before ``position``.

        False (nothing recorded) when the log moved the sink meanwhile: the alert was counted
        as dropped then, and the worker must start over from the new position.
        """
        with self._lock:
            cursor = self._cursors.get(name)
            if cursor is None or cursor.generation != generation:
                return False
            cursor.checkpoint.write(position)
            return True

    def _move(self, cursor: _Cursor, position: Position) -> None:
        cursor.checkpoint.write(position)
        cursor.generation += 1

    # -- readers --------------------------------------------------------------------------------

    def open(self, segment: int) -> int | None:
        """A read-only descriptor on ``segment`` (the caller closes it), or None if it is gone."""
        with self._lock:
            if segment == self._active and self._active_fd is None:
                self._refresh()  # Falco may have created it just now
            return self._open(segment)

    def successor(self, segment: int) -> int | None:
        """The segment after ``segment`` once it holds a line; None while none does.

        From then on nothing more is written to ``segment`` (one writer, one alert at a time).
        The active file is looked at first, so a replaced one is noticed at once.
        """
        with self._lock:
            self._refresh()
            return self._successor(segment)

    def _successor(self, segment: int) -> int | None:
        later = [number for number in self._segments() if number > segment]
        if not later:
            return None
        if later[0] != self._active or self._size(self._active) > 0:
            return later[0]
        return None

    # -- upkeep ---------------------------------------------------------------------------------

    def maintain(self) -> None:
        """Notice what happened to the files, count lines, rotate, and apply retention."""
        with self._lock:
            self._refresh()
            if self._active_fd is not None and self._size(self._active) >= self.segment_bytes:
                self._rotate()
            self._enforce_retention()
            self._release_orphans()
            self._count()
            record = self._take_record() if self._changed else None
        if record is not None:
            self._write_record(record)
        self._report_drops()

    def _refresh(self) -> None:
        """Compare the active file with what the log knows of it, and act on any difference."""
        try:
            current = os.stat(self._file)
        except FileNotFoundError:
            current = None
        if self._active_fd is not None:
            held = os.fstat(self._active_fd)
            if current is not None and (current.st_dev, current.st_ino) == (
                held.st_dev,
                held.st_ino,
            ):
                if held.st_size < self._seen or self._fingerprint_changed(self._active_fd):
                    self._rewrite_active(held.st_size)
                else:
                    self._seen = max(self._seen, held.st_size)
                    self._fingerprint()
                return
            self._orphan_active(replaced=current is not None)
        if current is None:
            if self._identity is not None and self._seen:  # gone while the forwarder was down
                self._active_gone()
            return
        self._adopt_active()

    def _adopt_active(self) -> None:
        """Hold the active file open; check it against what the last run recorded of it."""
        try:
            fd = os.open(self._file, os.O_RDONLY)
        except FileNotFoundError:
            return
        self._active_fd = fd
        held = os.fstat(fd)
        recorded = self._identity
        fingerprint = _fingerprint(fd)
        self._identity = _Identity(held.st_dev, held.st_ino, fingerprint)
        self._changed = True
        if recorded is None:
            return
        same_start = recorded.fingerprint in ("", fingerprint)
        if same_start and held.st_size >= self._seen:
            self._seen = held.st_size  # the same log (or a copy of it), grown meanwhile
            return
        logger.warning(
            "the alert log %s was replaced or truncated while the forwarder was stopped",
            self._file,
        )
        self._rewrite_active(held.st_size, kept_start=same_start)

    def _fingerprint(self) -> None:
        """Fingerprint the active file once its first line is complete."""
        identity, fd = self._identity, self._active_fd
        if identity and not identity.fingerprint and fd and (fingerprint := _fingerprint(fd)):
            self._identity = _Identity(identity.device, identity.inode, fingerprint)
            self._changed = True

    def _fingerprint_changed(self, fd: int) -> bool:
        known = self._identity.fingerprint if self._identity else ""
        return bool(known) and _fingerprint(fd) != known

    def _orphan_active(self, *, replaced: bool) -> None:
        """The active file was deleted or renamed by someone else: keep reading it, held open.

        Its alerts are all delivered; the file Falco creates next is the next segment.
        """
        assert self._active_fd is not None
        logger.warning(
            "the alert log %s was %s while the forwarder runs: the old file is still delivered "
            "to its end, alerts in the new one follow",
            self._file,
            "replaced" if replaced else "deleted",
        )
        self._orphans[self._active] = self._active_fd
        self._active_fd, self._identity, self._seen = None, None, 0
        self._active += 1
        self._changed = True

    def _active_gone(self) -> None:
        """The active file vanished while the forwarder was stopped: its alerts are lost."""
        logger.warning("the alert log %s was deleted while the forwarder was stopped", self._file)
        self._rewrite_active(0, kept_start=False)

    def _rewrite_active(self, size: int, *, kept_start: bool | None = None) -> None:
        """The active file was cut (to ``size`` bytes) or its content replaced in place.

        Its content from now on is the next segment. If the file still starts as before, its
        first ``size`` bytes are old content there: not read again by sinks that had read them.
        What sinks had not read of the rest is counted as dropped (``log_replaced``).
        """
        fd = self._active_fd
        if kept_start is None:
            kept_start = fd is not None and not self._fingerprint_changed(fd)
        kept = kept_lines = 0
        if kept_start and size and fd is not None:
            kept_lines, kept = _count_lines(fd, 0, size)
        old = self._active
        count = self._counts.get(old, _Count()).lines  # the content is gone: what was counted
        logger.warning(
            "the alert log %s was cut or rewritten in place (%d of %d bytes kept): alerts no "
            "sink can read any more are counted as dropped (log_replaced)",
            self._file,
            kept,
            self._seen,
        )
        self._active += 1
        self._counts[self._active] = _Count(kept, kept_lines)
        self._account(old, _Removed(count, LOG_REPLACED, Position(self._active, kept, kept_lines)))
        self._seen = size
        if fd is not None:
            held = os.fstat(fd)
            self._identity = _Identity(held.st_dev, held.st_ino, _fingerprint(fd))
        self._sync_checkpoints()  # moved positions reach the disk before the record says why
        self._changed = True

    def _rotate(self) -> None:
        assert self._active_fd is not None
        os.rename(self._file, self._rotated_path(self._active))
        _sync_dir(self._file.parent)
        os.close(self._active_fd)
        self._active_fd, self._identity, self._seen = None, None, 0
        self._rotated.append(self._active)
        self._active += 1
        self._changed = True
        logger.info("rotated %s to segment %d", self._file, self._rotated[-1])

    def _enforce_retention(self) -> None:
        for number in list(self._rotated):
            if not self._rotated_path(number).exists():
                logger.warning("segment %d of the alert log was deleted by hand", number)
                self._remove(number, LOG_REPLACED)
        sizes = {number: self._size(number) for number in (*self._rotated, *self._orphans)}
        total = sum(sizes.values()) + self._size(self._active)
        while total > self.retention_bytes and (self._rotated or self._orphans):
            victim = min([*self._rotated, *self._orphans])
            self._remove(victim, RETENTION)
            total -= sizes[victim]
            logger.info("retention: removed segment %d (%d bytes)", victim, sizes[victim])

    def _remove(self, victim: int, reason: str) -> None:
        """Remove segment ``victim``; count and move on every sink that had not finished it."""
        removed = _Removed(self._final_count(victim), reason)
        if victim in self._orphans:
            os.close(self._orphans.pop(victim))
        else:
            self._rotated.remove(victim)
            self._rotated_path(victim).unlink(missing_ok=True)
        self._account(victim, removed)

    def _account(self, number: int, removed: _Removed) -> None:
        """Segment ``number`` is gone: count what each sink loses, move those that were in it.

        A sink before it loses all of it but what survives in a later segment; a sink in it
        is moved past it (`_past_removed` counts).
        """
        self._removed[number] = removed
        self._counts.pop(number, None)
        survived = removed.into.line if removed.into else 0
        for name, cursor in self._cursors.items():
            position = cursor.position
            if position.segment == number:
                self._move(cursor, self._past_removed(name, position))
            elif position.segment < number and removed.lines and removed.lines > survived:
                self._drops.append((name, removed.lines - survived, removed.reason))
        for old in sorted(self._removed)[:-_REMEMBERED_REMOVALS]:
            del self._removed[old]
        self._changed = True

    def _final_count(self, segment: int) -> int:
        """Lines in a finished segment (a last one cut short included), counting if need be."""
        count = self._counts.get(segment)
        if count is not None and count.final:
            return count.lines
        fd = self._open(segment)
        if fd is None:
            return count.lines if count else 0
        try:
            start = count or _Count()
            lines, _ = _count_lines(fd, start.offset, None, partial=True)
            return start.lines + lines
        finally:
            os.close(fd)

    def _release_orphans(self) -> None:
        """Close held files every sink (and the count) has finished."""
        for number in list(self._orphans):
            count = self._counts.get(number)
            done = count is not None and count.final
            if done and all(c.position.segment > number for c in self._cursors.values()):
                os.close(self._orphans.pop(number))
                self._account(number, _Removed(count.lines if count else None, LOG_REPLACED))

    def _count(self) -> None:
        """Count the lines written since the last look, segment by segment."""
        for number in self._segments():
            count = self._counts.setdefault(number, _Count())
            if count.final:
                continue
            fd = self._open(number)
            if fd is None:
                continue
            try:
                final = self._successor(number) is not None
                lines, offset = _count_lines(fd, count.offset, None, partial=final)
            finally:
                os.close(fd)
            if lines or final:
                self._counts[number] = _Count(offset, count.lines + lines, final)
                self._counted = True

    def sync(self) -> None:
        """Flush every changed checkpoint and the record to disk (the group commit).

        The disk is waited for outside the lock: deliveries go on meanwhile.
        """
        with self._lock:
            checkpoints = [cursor.checkpoint for cursor in self._cursors.values()]
        for checkpoint in checkpoints:
            checkpoint.sync()
        with self._lock:
            progress = {name: cursor.position.segment for name, cursor in self._cursors.items()}
            moved = any(self._progress.get(name) != segment for name, segment in progress.items())
            self._progress.update(progress)
            changed = self._changed or self._counted or moved
            record = self._take_record() if changed else None
        if record is not None:
            self._write_record(record)

    def _sync_checkpoints(self) -> None:
        for cursor in self._cursors.values():
            cursor.checkpoint.sync()

    def close(self) -> None:
        """Sync, then close every checkpoint and held file."""
        self.sync()
        with self._lock:
            cursors = list(self._cursors.values())
            self._cursors.clear()
            for fd in [*self._orphans.values(), self._active_fd]:
                if fd is not None:
                    os.close(fd)
            self._orphans.clear()
            self._active_fd = None
        for cursor in cursors:
            cursor.checkpoint.close()

    def _report_drops(self) -> None:
        with self._lock:
            drops, self._drops = self._drops, []
        for name, count, reason in drops:
            self._on_drop(name, count, reason)

    # -- gauges ---------------------------------------------------------------------------------

    def disk_bytes(self) -> int:
        """Bytes of every segment, the active one and those held open included."""
        with self._lock:
            self._refresh()
            return sum(self._size(n) for n in self._segments())

    def backlog_bytes(self) -> dict[str, int]:
        """Bytes each sink has still to read."""
        with self._lock:
            self._refresh()
            sizes = {n: self._size(n) for n in self._segments()}
            backlog: dict[str, int] = {}
            for name, cursor in self._cursors.items():
                position = cursor.position
                ahead = sum(size for n, size in sizes.items() if n >= position.segment)
                backlog[name] = max(ahead - position.offset, 0)
            return backlog

    def checkpoint_errors(self) -> dict[str, str]:
        """Why each sink's checkpoint cannot be saved ("" where it is saved)."""
        with self._lock:
            return {name: cursor.checkpoint.error for name, cursor in self._cursors.items()}

    def volume(self) -> tuple[int, int]:
        """(bytes free, bytes in all) on the alert log's volume; (0, 0) if it cannot be read."""
        try:
            stats = os.statvfs(self._file.parent)
        except OSError:
            return 0, 0
        return stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize


def _fingerprint(fd: int) -> str:
    """A digest of the file's first line (or its first bytes), "" while it has no line yet."""
    head = os.pread(fd, _FINGERPRINT_BYTES, 0)
    end = head.find(b"\n")
    if end < 0 and len(head) < _FINGERPRINT_BYTES:
        return ""
    return hashlib.blake2b(head[: end + 1] if end >= 0 else head, digest_size=8).hexdigest()


def _count_lines(
    fd: int, start: int, end: int | None, *, partial: bool = False
) -> tuple[int, int]:
    """Complete lines from ``start`` to ``end`` (the file's end if None) and where they end.

    With ``partial``, a last line without its newline counts too (a finished segment whose
    writer was cut short), and the end is the file's.
    """
    count, offset, last = 0, start, start
    while end is None or offset < end:
        size = _COUNT_CHUNK if end is None else min(_COUNT_CHUNK, end - offset)
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        newlines = chunk.count(b"\n")
        if newlines:
            count += newlines
            last = offset + chunk.rindex(b"\n") + 1
        offset += len(chunk)
    if partial and offset > last:
        return count + 1, offset
    return count, last


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
