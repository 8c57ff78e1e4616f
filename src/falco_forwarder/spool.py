"""Per-sink FIFO queues of alerts kept on disk, so they survive restarts and sink outages.

Each alert is written once to a temporary file that is then hard-linked as
``<dir>/<sink>/<seq>.json`` for every sink (a link is an atomic rename that can be
repeated), so a crashed process leaves whole entries or none; a temporary file left
behind was never acknowledged to Falco and is removed at start. There is no fsync:
after a kernel crash an entry may be empty, and the worker drops it as corrupt.
Sequence numbers are shared by all sinks, so the lowest one anywhere is the oldest
alert; while the spool is over ``max_bytes`` (counting each sink's copy, although
the links share one copy on disk) the oldest entries are dropped. Directories of
sinks no longer configured are left alone (not loaded, not counted) in case the sink
comes back; delete them by hand if it will not.
"""

import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_ENTRY = re.compile(r"(\d{20})\.json")
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Entry:
    """One spooled alert for one sink."""

    sink: str
    seq: int
    path: Path
    size: int


class Spool:
    """Disk-backed queues, one per sink, sharing a byte cap; safe to use from many threads.

    Writers call `put`; each sink's single consumer takes `head`, then `remove`s it
    once delivered or given up. ``on_drop`` is called (outside the lock) for every
    entry dropped because the spool is full.
    """

    def __init__(
        self,
        root: Path,
        sinks: Sequence[str],
        max_bytes: int,
        on_drop: Callable[[Entry], None],
    ):
        self._root = root
        self._sinks = tuple(sinks)
        self._max_bytes = max_bytes
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # keeps queue order equal to sequence order
        self._ready = threading.Condition(self._lock)
        self._queues: dict[str, deque[Entry]] = {sink: deque() for sink in self._sinks}
        self._bytes = 0
        self._closed = False
        self._next_seq = 1
        self._load()

    def _load(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        for path in sorted(self._root.iterdir()):
            if path.name.startswith(_TMP_PREFIX):
                path.unlink()  # an interrupted write: the alert was never acknowledged
            elif path.name not in self._queues:
                logger.warning("leaving %s alone: not a configured sink", path)
        for sink in self._sinks:
            directory = self._root / sink
            directory.mkdir(exist_ok=True)
            entries: list[Entry] = []
            for path in directory.iterdir():
                if match := _ENTRY.fullmatch(path.name):
                    entries.append(Entry(sink, int(match[1]), path, path.stat().st_size))
            entries.sort(key=lambda entry: entry.seq)
            self._queues[sink].extend(entries)
            self._bytes += sum(entry.size for entry in entries)
            if entries:
                logger.info("sink %s: %d spooled alerts to deliver", sink, len(entries))
                self._next_seq = max(self._next_seq, entries[-1].seq + 1)
        with self._lock:
            dropped = self._enforce_cap()
        self._report(dropped)

    def put(self, data: bytes) -> None:
        """Persist ``data`` for every sink; raise `OSError` (spooling nothing) if that fails."""
        with self._write_lock:
            seq = self._next_seq
            self._next_seq += 1
            written: list[Entry] = []
            tmp = self._root / f"{_TMP_PREFIX}{seq:020d}"
            try:
                tmp.write_bytes(data)
                for sink in self._sinks:
                    path = self._root / sink / f"{seq:020d}.json"
                    os.link(tmp, path)
                    written.append(Entry(sink, seq, path, len(data)))
            except OSError:
                for entry in written:
                    entry.path.unlink(missing_ok=True)
                raise
            finally:
                tmp.unlink(missing_ok=True)
            with self._lock:
                for entry in written:
                    self._queues[entry.sink].append(entry)
                    self._bytes += entry.size
                self._ready.notify_all()
                dropped = self._enforce_cap()
        self._report(dropped)

    def _enforce_cap(self) -> list[Entry]:
        dropped: list[Entry] = []
        while self._bytes > self._max_bytes:
            # The oldest entry is the lowest sequence number at the head of any queue.
            oldest = min(
                (queue[0] for queue in self._queues.values() if queue),
                key=lambda entry: entry.seq,
            )
            self._pop(oldest)
            dropped.append(oldest)
        return dropped

    def _pop(self, entry: Entry) -> None:
        self._queues[entry.sink].popleft()
        self._bytes -= entry.size
        entry.path.unlink(missing_ok=True)

    def _report(self, dropped: list[Entry]) -> None:
        for entry in dropped:
            self._on_drop(entry)

    def head(self, sink: str) -> Entry | None:
        """Block until ``sink`` has an entry and return the oldest; None once closed."""
        with self._ready:
            queue = self._queues[sink]
            while not queue and not self._closed:
                self._ready.wait()
            return None if self._closed else queue[0]

    def read(self, entry: Entry) -> bytes | None:
        """The entry's bytes, or None if it was dropped meanwhile."""
        if not self.contains(entry):
            return None
        try:
            return entry.path.read_bytes()
        except FileNotFoundError:  # dropped between the check and the read
            return None

    def contains(self, entry: Entry) -> bool:
        """Whether ``entry`` is still queued (at the head of its sink's queue)."""
        with self._lock:
            return self._is_head(entry)

    def remove(self, entry: Entry) -> bool:
        """Remove ``entry`` from the head of its queue; False if it was already dropped."""
        with self._lock:
            if not self._is_head(entry):
                return False
            self._pop(entry)
            return True

    def _is_head(self, entry: Entry) -> bool:
        queue = self._queues[entry.sink]
        return bool(queue) and queue[0] == entry

    def depths(self) -> dict[str, int]:
        """Number of queued entries per sink."""
        with self._lock:
            return {sink: len(queue) for sink, queue in self._queues.items()}

    def total_bytes(self) -> int:
        """Bytes held by all queued entries."""
        with self._lock:
            return self._bytes

    def close(self) -> None:
        """Wake every consumer blocked in `head`; they get None from now on."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
