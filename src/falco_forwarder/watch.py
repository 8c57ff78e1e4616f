"""Wake the forwarder as soon as Falco writes: inotify on the alert log's directory.

Standard library only: inotify through ``ctypes`` from the C library. An idle forwarder then
sleeps in one blocking call and spends nothing; an alert reaches the sink's worker within a
millisecond of Falco's write. Where inotify is not available (no ``ctypes``, no inotify, no
instance left, or the directory does not exist yet) the watch falls back to waking everyone
every `POLL_SECONDS`, the latency the forwarder had before.
"""

import contextlib
import logging
import os
import select
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger(__name__)

POLL_SECONDS: Final = 0.05
_IN_NONBLOCK: Final = 0o4000
_IN_CLOEXEC: Final = 0o2000000
# Writes, closes, creations, deletions and renames in the directory; the directory itself going.
_EVENTS: Final = 0x2 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800
_IN_IGNORED: Final = 0x8000  # the watch is gone (the directory was deleted or moved)
_EVENT_HEADER: Final = struct.Struct("iIII")


def _load_libc() -> Any:
    try:
        import ctypes  # noqa: PLC0415 - optional: a minimal image may lack it

        libc = ctypes.CDLL(None, use_errno=True)
        _ = libc.inotify_init1, libc.inotify_add_watch
    except (ImportError, OSError, AttributeError):
        return None
    return libc


class LogWatch:
    """Calls every subscriber (cheap, non-blocking callbacks) when the directory changes."""

    def __init__(self, directory: Path):
        self._directory = directory
        self._subscribers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stop_read, self._stop_write = os.pipe()
        self._libc = _load_libc()
        self._fd: int | None = None
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        if self._libc is None:
            logger.warning("inotify is not available: looking for alerts every %gs", POLL_SECONDS)

    @property
    def watching(self) -> bool:
        """Whether inotify watches the directory (else everyone is woken on a timer)."""
        return self._fd is not None

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on every change from now on."""
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback`` (if it was subscribed)."""
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and release the descriptors."""
        os.write(self._stop_write, b"x")
        self._thread.join()
        for fd in (self._fd, self._stop_read, self._stop_write):
            if fd is not None:
                os.close(fd)
        self._fd = None

    def _notify(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._stop_read, select.POLLIN)
        while True:
            if self._fd is None and self._watch():
                poller.register(self._fd, select.POLLIN)  # pyright: ignore[reportArgumentType]
            events = poller.poll(None if self._fd is not None else POLL_SECONDS * 1000)
            if any(fd == self._stop_read for fd, _ in events):
                return
            if self._fd is not None and events and not self._drain():
                poller.unregister(self._fd)
                os.close(self._fd)
                self._fd = None
            self._notify()

    def _watch(self) -> bool:
        """Set up the inotify watch; False (the timer goes on) if it cannot be done now."""
        if self._libc is None:
            return False
        fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return False
        if self._libc.inotify_add_watch(fd, os.fsencode(self._directory), _EVENTS) < 0:
            os.close(fd)  # the directory does not exist yet, most likely
            return False
        self._fd = fd
        logger.debug("watching %s with inotify", self._directory)
        return True

    def _drain(self) -> bool:
        """Read the pending events; False once the watch is gone (the directory went)."""
        assert self._fd is not None
        alive = True
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self._fd, 65536):
                offset = 0
                while offset < len(data):
                    _, mask, _, length = _EVENT_HEADER.unpack_from(data, offset)
                    alive = alive and not mask & _IN_IGNORED
                    offset += _EVENT_HEADER.size + length
        return alive
