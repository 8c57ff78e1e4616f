"""The delivery loop of one sink: its spooled alerts, in order, each until delivered or dropped.

An alert leaves the spool only after a 2xx (delivered) or a non-retryable status
(dropped), so each one reaches the sink once in normal operation. Delivery is
at-least-once otherwise: an alert is sent again if the sink took it but its answer
was lost (timeout, reset), or after a hard crash between the 2xx and the removal.
"""

import json
import logging
import random
import threading

from falco_forwarder.burstlog import BurstLog
from falco_forwarder.config import JujuTopology, RetryConfig, SinkConfig, encoder
from falco_forwarder.metrics import DELIVERED, DROPPED, RETRIED, Metrics
from falco_forwarder.sinks import HttpSender, Outcome
from falco_forwarder.spool import Entry, Spool

logger = logging.getLogger(__name__)

# 2**60 times any sane initial delay is past any cap; stops the float from overflowing.
_MAX_DOUBLINGS = 60


class SinkWorker:
    """A thread delivering one sink's queue, with exponential backoff and full jitter.

    Its settings are fixed: a reload replaces the worker, which hands over the queue.
    """

    def __init__(
        self,
        sink: SinkConfig,
        *,
        spool: Spool,
        metrics: Metrics,
        retry: RetryConfig,
        juju: JujuTopology,
    ):
        self._sink = sink
        self._spool = spool
        self._metrics = metrics
        self._retry = retry
        self._juju = juju
        self._stop = threading.Event()
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._sender = HttpSender(sink, retry.timeout_seconds)
        self._encode = encoder(sink.format)
        self._outage = BurstLog(logger)
        self._refusals = BurstLog(logger)
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}")

    def start(self) -> None:
        """Start delivering."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to exit: a POST in flight completes, a backoff wait is cut short."""
        self._stop.set()
        self._spool.wake()

    def join(self) -> None:
        """Wait until the loop has exited (after `stop`); undelivered alerts stay spooled."""
        self._thread.join()

    def _run(self) -> None:
        try:
            while (entry := self._spool.head(self._sink.name, self._stop)) is not None:
                try:
                    self._deliver(entry)
                except Exception:
                    # A bug or an OS error must not silently end this sink's deliveries: log,
                    # count, wait, and try the same alert again.
                    logger.exception("sink %s: delivery failed unexpectedly", self._sink.name)
                    self._metrics.inc(RETRIED, sink=self._sink.name)
                    self._stop.wait(self._retry.max_seconds)
        finally:
            self._sender.close()

    def _deliver(self, entry: Entry) -> None:
        body = self._render(entry)
        attempts = 0
        while body is not None:
            attempt = self._sender.post(body)
            self._metrics.set_up(self._sink.name, attempt.outcome is not Outcome.RETRY)
            if attempt.outcome is Outcome.DELIVERED:
                self._spool.remove(entry)
                self._metrics.inc(DELIVERED, sink=self._sink.name)
                self._outage.end("sink %s: delivering again", self._sink.name)
                self._refusals.end("sink %s: accepting alerts again", self._sink.name)
                return
            if attempt.outcome is Outcome.DROP:
                self._drop(entry, attempt.drop_reason)
                self._refusals.event(
                    "sink %s (%s) refused an alert with %s; dropped it, not retrying",
                    self._sink.name,
                    self._sink.safe_url,
                    attempt.detail,
                )
                return
            self._metrics.inc(RETRIED, sink=self._sink.name)
            self._outage.event(
                "sink %s (%s) failed: %s; retrying with backoff",
                self._sink.name,
                self._sink.safe_url,
                attempt.detail,
            )
            delay = backoff_delay(attempts, attempt.retry_after, self._retry, self._rng)
            attempts += 1
            if self._stop.wait(delay) or not self._spool.contains(entry):
                return  # shutting down (the entry stays spooled), or dropped as too old

    def _render(self, entry: Entry) -> bytes | None:
        """The request body for this sink, or None if the entry is gone or unreadable."""
        data = self._spool.read(entry)
        if data is None:
            if self._spool.contains(entry):  # its file vanished: do not spin on it
                logger.error("sink %s: spool entry %s is gone", self._sink.name, entry.path)
                self._drop(entry, "missing")
            return None
        try:
            alert = json.loads(data)
        except (ValueError, RecursionError):
            alert = None
        if not isinstance(alert, dict):
            logger.error("sink %s: dropping corrupt spool entry %s", self._sink.name, entry.path)
            self._drop(entry, "corrupt")
            return None
        if self._encode is None:
            return data
        try:
            return self._encode(alert, self._juju, self._sink.max_message_bytes)  # pyright: ignore[reportUnknownArgumentType]
        except Exception:
            # Retrying cannot help a mapping bug, and would hold back every later alert.
            logger.exception(
                "sink %s: cannot map spool entry %s to %s; dropping it",
                self._sink.name,
                entry.path,
                self._sink.format,
            )
            self._drop(entry, "unmappable")
            return None

    def _drop(self, entry: Entry, reason: str) -> None:
        self._spool.remove(entry)
        self._metrics.inc(DROPPED, sink=self._sink.name, reason=reason)


def backoff_delay(
    attempts: int, retry_after: float | None, retry: RetryConfig, rng: random.Random
) -> float:
    """Seconds to wait after ``attempts`` failures: full jitter, stretched to any Retry-After.

    Full jitter draws uniformly below ``initial * 2**attempts``; a ``Retry-After: 0`` therefore
    never turns into a tight loop. Both are capped at ``max_seconds``.
    """
    ceiling = retry.initial_seconds * 2 ** min(attempts, _MAX_DOUBLINGS)
    delay = rng.uniform(0, min(ceiling, retry.max_seconds))
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry.max_seconds))
    return delay
