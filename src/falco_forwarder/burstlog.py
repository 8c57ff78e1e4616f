"""Rate-limited logging for repeated failures: one line per burst instead of one per alert."""

import logging
import threading
import time
from collections.abc import Callable


class BurstLog:
    """Log the first event of a burst at once, then a count of the rest every ``interval``.

    `end` closes the burst with a message and the count not reported yet, so the
    log accounts for every event without repeating one line per alert.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._active = False
        self._suppressed = 0
        self._last_report = 0.0

    def event(self, msg: str, *args: object) -> None:
        """Record one occurrence; log it if it starts a burst or a report is due."""
        with self._lock:
            now = self._clock()
            if not self._active:
                self._active = True
                self._last_report = now
                self._logger.warning(msg, *args)
                return
            self._suppressed += 1
            if now - self._last_report >= self._interval:
                self._logger.warning(
                    "%d more occurrences since the last report, latest: " + msg,
                    self._suppressed,
                    *args,
                )
                self._suppressed = 0
                self._last_report = now

    def end(self, msg: str, *args: object) -> None:
        """Close the burst, if one is on, logging ``msg`` and the count not reported yet."""
        if not self._active:  # the usual case, asked after every delivery: no lock
            return
        with self._lock:
            if self._active:
                self._logger.info(
                    msg + " (%d more occurrences not logged)", *args, self._suppressed
                )
                self._active = False
                self._suppressed = 0
