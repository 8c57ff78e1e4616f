"""The delivery loop of one sink: the alert log's lines, in order, each until delivered or dropped.

The sink's checkpoint moves past a line only after a 2xx (delivered) or a non-retryable
answer (dropped, counted), so each alert reaches the sink once in normal operation.
Delivery is at least once otherwise: a killed forwarder repeats the one alert it was
delivering, and an alert is sent again if the sink took it but its answer was lost.
"""

import json
import logging
import random
import threading
from typing import Final

from falco_forwarder.alert_log import AlertLog
from falco_forwarder.burstlog import BurstLog
from falco_forwarder.config import JujuTopology, RetryConfig, SinkConfig, encoder
from falco_forwarder.metrics import DELIVERED, MALFORMED, RETRIED, UNMAPPABLE, Metrics
from falco_forwarder.reader import Line, LogReader
from falco_forwarder.sinks import HttpSender, Outcome

logger = logging.getLogger(__name__)

# 2**60 times any sane initial delay is past any cap; stops the float from overflowing.
_MAX_DOUBLINGS = 60
# How often an idle worker looks for new lines: bounds the delivery latency.
POLL_SECONDS: Final = 0.05
_BATCH_LINES: Final = 256


class SinkWorker:
    """A thread delivering one sink's alerts, with exponential backoff and full jitter.

    Its settings are fixed: a reload replaces the worker, which resumes at the checkpoint.
    """

    def __init__(
        self,
        sink: SinkConfig,
        *,
        log: AlertLog,
        metrics: Metrics,
        retry: RetryConfig,
        juju: JujuTopology,
    ):
        self._sink = sink
        self._log = log
        self._metrics = metrics
        self._retry = retry
        self._juju = juju
        self._stop = threading.Event()
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._sender = HttpSender(sink, retry.timeout_seconds)
        self._encode = encoder(sink.format)
        self._outage = BurstLog(logger)
        self._refusals = BurstLog(logger)
        self._malformed = BurstLog(logger)
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}")

    def start(self) -> None:
        """Start delivering."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to exit: a POST in flight completes, a backoff wait is cut short."""
        self._stop.set()

    def join(self) -> None:
        """Wait until the loop has exited (after `stop`); the checkpoint says where it was."""
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                position, generation = self._log.position(self._sink.name)
                reader = LogReader(self._log, position)
                try:
                    self._follow(reader, generation)
                except Exception:
                    # A bug or an OS error must not silently end this sink's deliveries: log,
                    # count, wait, and start again from the checkpoint.
                    logger.exception("sink %s: delivery failed unexpectedly", self._sink.name)
                    self._metrics.inc(RETRIED, sink=self._sink.name)
                    self._stop.wait(self._retry.max_seconds)
                finally:
                    reader.close()
        finally:
            self._sender.close()

    def _follow(self, reader: LogReader, generation: int) -> None:
        """Deliver from ``reader`` until stopped or until retention moves the sink on."""
        while not self._stop.is_set():
            lines = reader.read(_BATCH_LINES)
            if not lines:
                if self._log.generation(self._sink.name) != generation:
                    return
                self._stop.wait(POLL_SECONDS)
            for line in lines:
                if self._stop.is_set() or not self._deliver(line, generation):
                    return

    def _deliver(self, line: Line, generation: int) -> bool:
        """Deliver or drop ``line``; False if stopping or moved on (start over, or exit)."""
        body = self._render(line.data)
        if isinstance(body, str):
            return self._finish(line, generation, dropped=body)
        attempts = 0
        while True:
            attempt = self._sender.post(body)
            self._metrics.set_up(self._sink.name, attempt.outcome is not Outcome.RETRY)
            if attempt.outcome is Outcome.DELIVERED:
                self._outage.end("sink %s: delivering again", self._sink.name)
                self._refusals.end("sink %s: accepting alerts again", self._sink.name)
                return self._finish(line, generation)
            if attempt.outcome is Outcome.DROP:
                self._refusals.event(
                    "sink %s (%s) refused an alert with %s; dropped it, not retrying",
                    self._sink.name,
                    self._sink.safe_url,
                    attempt.detail,
                )
                return self._finish(line, generation, dropped=attempt.drop_reason)
            self._metrics.inc(RETRIED, sink=self._sink.name)
            self._outage.event(
                "sink %s (%s) failed: %s; retrying with backoff",
                self._sink.name,
                self._sink.safe_url,
                attempt.detail,
            )
            delay = backoff_delay(attempts, attempt.retry_after, self._retry, self._rng)
            attempts += 1
            if self._stop.wait(delay) or self._log.generation(self._sink.name) != generation:
                return False  # shutting down (resumed here later), or dropped by retention

    def _finish(self, line: Line, generation: int, *, dropped: str = "") -> bool:
        """Move the checkpoint past ``line`` and count it delivered, or ``dropped`` (the reason).

        Nothing is counted when retention got there first: it counted the line already.
        """
        if not self._log.commit(self._sink.name, generation, line.end):
            return False
        if dropped:
            self._metrics.drop(self._sink.name, dropped)
        else:
            self._metrics.inc(DELIVERED, sink=self._sink.name)
        return True

    def _render(self, data: bytes) -> bytes | str:
        """The request body for this sink, or the drop reason if the line cannot be sent."""
        try:
            alert = json.loads(data)
        except (ValueError, RecursionError):
            alert = None
        if not isinstance(alert, dict):
            self._malformed.event(
                "sink %s: skipped a line of the alert log that is not a JSON object: %r",
                self._sink.name,
                data[:120],
            )
            return MALFORMED
        if self._encode is None:
            return data
        try:
            return self._encode(alert, self._juju, self._sink.max_message_bytes)  # pyright: ignore[reportUnknownArgumentType]
        except Exception:
            # Retrying cannot help a mapping bug, and would hold back every later alert.
            logger.exception(
                "sink %s: cannot map an alert to %s; dropping it",
                self._sink.name,
                self._sink.format,
            )
            return UNMAPPABLE


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
