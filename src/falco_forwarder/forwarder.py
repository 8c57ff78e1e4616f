"""The running service: receiver, disk spool and one delivery worker per sink, wired together."""

import logging
import threading
from types import TracebackType
from typing import Self

from falco_forwarder.burstlog import BurstLog
from falco_forwarder.config import ForwarderConfig
from falco_forwarder.metrics import DROPPED, Metrics
from falco_forwarder.server import REJECT_REASONS, AlertServer
from falco_forwarder.spool import Entry, Spool
from falco_forwarder.worker import SinkWorker

logger = logging.getLogger(__name__)

DROP_REASONS = ("spool_full", "http_4xx", "http_other", "corrupt")
# How often the receiver loop checks for shutdown: bounds the stop latency.
_POLL_SECONDS = 0.1


class Forwarder:
    """Receives alerts and fans them out; binds its port on construction, serves after `start`.

    `close` stops accepting, finishes in-flight requests and deliveries, and leaves
    every undelivered alert in the spool for the next start.
    """

    def __init__(self, config: ForwarderConfig):
        self._config = config
        names = [sink.name for sink in config.sinks]
        self.metrics = Metrics(names, REJECT_REASONS, DROP_REASONS)
        self._spool_full = BurstLog(logger)
        self.spool = Spool(config.spool.dir, names, config.spool.max_bytes, self._on_spool_full)
        self._stop = threading.Event()
        self._workers = [
            SinkWorker(
                sink,
                spool=self.spool,
                metrics=self.metrics,
                retry=config.retry,
                juju=config.juju,
                stop=self._stop,
            )
            for sink in config.sinks
        ]
        self._server = AlertServer(
            (config.listen.host, config.listen.port),
            self.spool,
            self.metrics,
            config.max_body_bytes,
        )
        self._serving = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_SECONDS,), name="receiver"
        )

    @property
    def port(self) -> int:
        """The bound TCP port (useful when the configuration asks for port 0)."""
        return self._server.server_address[1]

    def start(self) -> None:
        """Start the delivery workers and the receiver."""
        for worker in self._workers:
            worker.start()
        self._serving.start()
        for sink in self._config.sinks:
            logger.info("sink %s: %s %s", sink.name, sink.format, sink.safe_url)
        logger.info("listening on %s:%d", self._config.listen.host, self.port)

    def close(self) -> None:
        """Shut down gracefully; undelivered alerts stay spooled."""
        self._server.stop()
        self._stop.set()
        self.spool.close()
        for worker in self._workers:
            worker.join()
        logger.info("stopped with %s alerts spooled", self.spool.depths())

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _on_spool_full(self, entry: Entry) -> None:
        self.metrics.inc(DROPPED, sink=entry.sink, reason="spool_full")
        self._spool_full.event(
            "spool over %d bytes: dropped the oldest alert for sink %s",
            self._config.spool.max_bytes,
            entry.sink,
        )
