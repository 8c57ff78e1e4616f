"""Per-sink FIFO queues of alerts kept on disk, so they survive restarts and sink outages.

Each alert is written once to a temporary file that is then hard-linked as
``<dir>/<sink>/<seq>.json`` for every sink (a link is an atomic rename that can be
repeated), so a crashed process leaves whole entries or none; a temporary file left
behind was never acknowledged to Falco and is removed at start. There is no fsync:
after a kernel crash an entry may be empty, and the worker drops it as corrupt.
Sequence numbers are shared by all sinks, so the lowest one anywhere is the oldest
alert; while the spool is over ``max_bytes`` (counting each sink's copy, although
the links share one copy on disk) the oldest entries are dropped. Directories of sinks
no longer configured are left alone (not loaded, not in the byte count) in case the sink
comes back. A reload changes the sink set live the same way: a removed sink's directory
stays as it is, an added one's is loaded first.

The volume can fill up before the cap (small alerts still take a whole block and an
inode each). Then the entries of removed sinks go first, since their links would keep
files in use; after that the oldest alert is dropped for every sink, which frees its
file. The write is retried each time, so new alerts keep displacing old ones.
"""

import errno
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_ENTRY = re.compile(r"(\d{20})\.json")
_TMP_PREFIX = ".tmp-"
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

OVER_CAP = "spool_full"
"""Drop reason: the queued bytes went over ``max_bytes``."""
DISK_FULL = "disk_full"
"""Drop reason: the volume ran out of space or inodes before the cap was reached."""


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
    entry dropped because the spool is full, with `OVER_CAP` or `DISK_FULL`. The sink
    set and the cap may change while alerts are written: `put` spools for exactly the
    sinks present when it runs.
    """

    def __init__(self, root: Path, max_bytes: int, on_drop: Callable[[Entry, str], None]):
        """Start with no sink: `add_sinks` loads each one's queue, which can take seconds.

        Only the spool's top directory is read here, so a caller can bind its listener
        first and let clients wait in the listen backlog instead of being refused.
        """
        self._root = root
        self._max_bytes = max_bytes
        self._on_drop = on_drop
        self._lock = threading.Lock()
        # Held by `put` from number to queue: keeps queue order equal to sequence order,
        # and the sink set steady while an alert is linked into every sink's directory.
        self._write_lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queues: dict[str, deque[Entry]] = {}
        self._bytes = 0
        self._next_seq = 1
        self._root.mkdir(parents=True, exist_ok=True)
        for path in self._root.glob(f"{_TMP_PREFIX}*"):
            path.unlink()  # an interrupted write: the alert was never acknowledged

    def add_sinks(self, sinks: Iterable[str]) -> None:
        """Queue alerts for ``sinks`` too, after the entries their directories already hold.

        Raise `OSError`, adding none of them, if a directory cannot be made or read.
        """
        loaded = {sink: self._scan(sink) for sink in sinks}
        with self._write_lock, self._lock:
            for sink, entries in loaded.items():
                self._queues[sink] = deque(entries)
                self._bytes += sum(entry.size for entry in entries)
                if entries:  # left by an earlier run: number new alerts after them
                    self._next_seq = max(self._next_seq, entries[-1].seq + 1)
            dropped = self._enforce_cap()
        for sink, entries in loaded.items():
            if entries:
                logger.info("sink %s: %d spooled alerts to deliver", sink, len(entries))
        self._report(dropped, OVER_CAP)

    def _scan(self, sink: str) -> list[Entry]:
        directory = self._root / sink
        directory.mkdir(exist_ok=True)
        found = (Entry(sink, seq, path, path.stat().st_size) for path, seq in _entries(directory))
        return sorted(found, key=lambda entry: entry.seq)

    def unqueued(self) -> dict[str, int]:
        """Directories of sinks not queued (removed from the configuration): entries in each."""
        with self._lock:
            directories = self._unqueued_dirs()
        return {path.name: len(_entries(path)) for path in directories}

    def _unqueued_dirs(self) -> list[Path]:
        return [
            path
            for path in sorted(self._root.iterdir())
            if path.is_dir() and path.name not in self._queues
        ]

    def remove_sinks(self, sinks: Iterable[str]) -> None:
        """Stop queueing alerts for ``sinks``, whose consumers must have stopped.

        Their entries stay on disk (and out of the byte count) until the sink is added again.
        """
        with self._write_lock, self._lock:
            for sink in sinks:
                self._bytes -= sum(entry.size for entry in self._queues.pop(sink))

    def set_max_bytes(self, max_bytes: int) -> None:
        """Change the cap, dropping the oldest entries at once if the spool is now over it."""
        with self._lock:
            self._max_bytes = max_bytes
            dropped = self._enforce_cap()
        self._report(dropped, OVER_CAP)

    def put(self, data: bytes) -> None:
        """Persist ``data`` for every sink; raise `OSError` (spooling nothing) if that fails.

        A full volume first costs the oldest queued alerts, one at a time; the error is
        raised only once nothing is left to drop, or for any other cause.
        """
        with self._write_lock:
            seq = self._next_seq
            self._next_seq += 1
            while True:
                try:
                    written = self._write(seq, data)
                    break
                except OSError as e:
                    if e.errno not in _FULL:
                        raise
                    with self._lock:
                        freed = self._drop_unqueued() or self._drop_oldest_alert()
                    if not freed:
                        raise
                    self._report(freed, DISK_FULL)
            with self._lock:
                for entry in written:
                    self._queues[entry.sink].append(entry)
                    self._bytes += entry.size
                self._ready.notify_all()
                dropped = self._enforce_cap()
        self._report(dropped, OVER_CAP)

    def _write(self, seq: int, data: bytes) -> list[Entry]:
        """Link ``data`` as entry ``seq`` of every sink, or leave no trace and raise."""
        written: list[Entry] = []
        tmp = self._root / f"{_TMP_PREFIX}{seq:020d}"
        try:
            tmp.write_bytes(data)
            for sink in self._queues:
                path = self._root / sink / f"{seq:020d}.json"
                os.link(tmp, path)
                written.append(Entry(sink, seq, path, len(data)))
        except OSError:
            for entry in written:
                entry.path.unlink(missing_ok=True)
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return written

    def _drop_unqueued(self) -> list[Entry]:
        """Delete what removed sinks left behind: their links pin files that nothing sends."""
        dropped: list[Entry] = []
        for directory in self._unqueued_dirs():
            for path, seq in _entries(directory):
                size = path.stat().st_size
                path.unlink()
                dropped.append(Entry(directory.name, seq, path, size))
        return dropped

    def _drop_oldest_alert(self) -> list[Entry]:
        """Drop every sink's link to the oldest queued alert, so that its file is freed."""
        dropped = self._oldest_heads()
        for entry in dropped:
            self._pop(entry)
        return dropped

    def _enforce_cap(self) -> list[Entry]:
        dropped: list[Entry] = []
        while self._bytes > self._max_bytes:
            oldest = self._oldest_heads()[0]  # one sink's copy: the cap counts each copy
            self._pop(oldest)
            dropped.append(oldest)
        return dropped

    def _oldest_heads(self) -> list[Entry]:
        """The queued links to the oldest alert: the lowest sequence number at a queue's head."""
        heads = [queue[0] for queue in self._queues.values() if queue]
        oldest = min((entry.seq for entry in heads), default=None)
        return [entry for entry in heads if entry.seq == oldest]

    def _pop(self, entry: Entry) -> None:
        self._queues[entry.sink].popleft()
        self._bytes -= entry.size
        entry.path.unlink(missing_ok=True)

    def _report(self, dropped: list[Entry], reason: str) -> None:
        for entry in dropped:
            self._on_drop(entry, reason)

    def head(self, sink: str, stop: threading.Event) -> Entry | None:
        """Block until ``sink`` has an entry and return the oldest; None once ``stop`` is set.

        Whoever sets ``stop`` calls `wake` next, so that a blocked consumer sees it.
        """
        with self._ready:
            queue = self._queues[sink]
            while not queue and not stop.is_set():
                self._ready.wait()
            return None if stop.is_set() else queue[0]

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

    def wake(self) -> None:
        """Wake every consumer blocked in `head`, to check its ``stop`` event."""
        with self._ready:
            self._ready.notify_all()


def _entries(directory: Path) -> list[tuple[Path, int]]:
    """The spool entries in ``directory`` with their sequence numbers, in no set order."""
    return [
        (path, int(match[1]))
        for path in directory.iterdir()
        if (match := _ENTRY.fullmatch(path.name))
    ]
