"""One sink's fold state on disk, beside its checkpoint: after a kill it is what was committed.

Before the worker moves the checkpoint, it appends one line: the position and the ops
(`folding.Op`) of the alerts before it. At start only the lines up to the checkpoint are
replayed, so the state matches the checkpoint exactly: the alerts it covers stay folded into
their summary, and no summary is lost or sent for lines the sink will read again. Once no
window is open the journal is emptied; past `COMPACT_BYTES` and twice its last snapshot it is
rewritten as one snapshot. A journal that cannot be written never stops delivery: the state is
kept in memory, nothing more is appended (a gap would spoil what follows), and the next
`settle` rewrites it whole; a kill before that loses what was folded since the failure.
"""

import contextlib
import errno
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from falco_forwarder.burstlog import BurstLog
from falco_forwarder.checkpoint import Position
from falco_forwarder.folding import FoldState, Op

logger = logging.getLogger(__name__)

COMPACT_BYTES: Final = 4 * 1024 * 1024
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class FoldJournal:
    """The journal file of one sink; its descriptor is opened at the first write."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self._size = 0
        self._snapshot = 0  # the size of the last snapshot written: compaction's headroom
        self._broken = False  # a write failed: the file is not the state; rewrite it whole
        self._problem = BurstLog(logger)

    def load(self, upto: Position) -> FoldState:
        """The state the lines up to ``upto`` (the checkpoint) leave; empty if none or damaged."""
        state = FoldState()
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return state
        except OSError as e:
            logger.error("cannot read %s (%s): open fold windows are lost", self.path, e)
            return state
        lines = text.splitlines()
        replayed = 0
        for raw in lines:
            try:
                segment, offset, _, ops = json.loads(raw)
                if (segment, offset) > (upto.segment, upto.offset):
                    break  # written, but the checkpoint never got there: read again
                for op in ops:
                    state.apply(tuple(op))
            except (ValueError, TypeError, KeyError, IndexError, RecursionError):
                break  # cut short by a kill (the checkpoint cannot be past it), or damaged
            replayed += 1
        self._size = len(text)
        if replayed < len(lines):  # what was not replayed must not stand before what comes
            self._rewrite(_line([*upto, state.snapshot()]) if state.windows else b"")
        return state

    def record(self, end: Position, ops: Sequence[Op]) -> None:
        """Append ``ops``, which lead to ``end``; call before the checkpoint moves there."""
        if not self._broken:
            self._append(_line([*end, list(ops)]))

    def settle(self, end: Position, state: FoldState) -> None:
        """After the checkpoint moved to ``end`` with ``state``: empty, compact or repair it."""
        if not state.windows:
            if self._size or self._broken:
                self._rewrite(b"")
        elif self._broken or self._size > max(COMPACT_BYTES, 2 * self._snapshot):
            self._rewrite(_line([*end, state.snapshot()]))

    def descriptor(self) -> int | None:
        """A descriptor of its own on the file to fsync (the caller closes it); None if none."""
        if self._fd is None:
            return None
        try:
            return os.dup(self._fd)
        except OSError as e:
            self.failed(e)
            return None

    def close(self) -> None:
        """Close the file (it stays on disk)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, data: bytes) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            _write_all(self._fd, data)
        except OSError as e:
            self.failed(e)
            return
        self._size += len(data)

    def _rewrite(self, data: bytes) -> None:
        """Replace the whole journal with ``data``, atomically (a new file renamed over it)."""
        staging = self.path.with_name(self.path.name + ".new")
        try:
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(staging, self.path)
        except OSError as e:
            with contextlib.suppress(OSError):  # a part written: give the full volume its room
                staging.unlink()
            self.failed(e)
            return
        self.close()
        self._size = self._snapshot = len(data)
        if self._broken:
            self._broken = False
            self._problem.end("%s is written whole again", self.path)

    def failed(self, error: OSError) -> None:
        """A write or sync failed: say so, append nothing more, rewrite it whole at `settle`."""
        self._broken = True
        self._problem.event(
            "cannot write %s (%s): until it is written whole again, a restart loses the "
            "repeats folded since",
            self.path,
            error.strerror or error,
        )


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: a short write is carried on (a full volume then raises ENOSPC)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if not written:
            raise OSError(errno.EIO, "nothing written")
        view = view[written:]


def _line(entry: list[object]) -> bytes:
    return _ENCODER.encode(entry).encode("utf-8", "replace") + b"\n"
