"""The running service: receiver, disk spool and one delivery worker per sink, wired together.

`Forwarder.reload` applies a new configuration with the listener left open, because
Falco's http_output does not retry: an alert posted while nothing listens is lost.
"""

import logging
import threading
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Self

from falco_forwarder.burstlog import BurstLog
from falco_forwarder.config import ConfigError, ForwarderConfig, SinkConfig, load_config
from falco_forwarder.metrics import CONFIG_RELOADS, DROPPED, Metrics
from falco_forwarder.server import REJECT_REASONS, AlertServer
from falco_forwarder.spool import DISK_FULL, OVER_CAP, Entry, Spool
from falco_forwarder.worker import SinkWorker

logger = logging.getLogger(__name__)

DROP_REASONS = (
    OVER_CAP,
    DISK_FULL,
    "http_4xx",
    "http_other",
    "corrupt",
    "missing",
    "unmappable",
)
# How often the receiver loop checks for shutdown: bounds the stop latency.
_POLL_SECONDS = 0.1


class Forwarder:
    """Receives alerts and fans them out; binds its port on construction, serves after `start`.

    `reload` applies a changed configuration while serving. `close` stops accepting,
    finishes in-flight requests and deliveries, and leaves every undelivered alert in
    the spool for the next start.
    """

    def __init__(self, config: ForwarderConfig):
        self._config = config
        names = [sink.name for sink in config.sinks]
        self.metrics = Metrics(names, REJECT_REASONS, DROP_REASONS)
        self._spool_drops = {reason: BurstLog(logger) for reason in _SPOOL_DROP_MESSAGES}
        self.spool = Spool(config.spool.dir, config.spool.max_bytes, self._on_spool_drop)
        self._lock = threading.Lock()  # serialises `reload` and `close`: both change workers
        self._server = AlertServer(
            (config.listen.host, config.listen.port),
            self.spool,
            self.metrics,
            config.max_body_bytes,
        )
        # Bound and listening before the spool is loaded, which takes seconds when a long
        # outage left it full: Falco's post waits in the backlog rather than being refused
        # (Falco does not retry, so a refused alert is lost).
        try:
            self.spool.add_sinks(names)
            for name, entries in self.spool.unqueued().items():
                logger.warning(
                    "leaving %s alone: not a configured sink (%d alerts)",
                    config.spool.dir / name,
                    entries,
                )
            self._workers = {sink.name: self._worker(sink, config) for sink in config.sinks}
        except BaseException:
            self._server.server_close()
            raise
        self._serving = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_SECONDS,), name="receiver"
        )

    @property
    def port(self) -> int:
        """The bound TCP port (useful when the configuration asks for port 0)."""
        return self._server.server_address[1]

    def start(self) -> None:
        """Start the delivery workers and the receiver."""
        for worker in self._workers.values():
            worker.start()
        self._serving.start()
        for sink in self._config.sinks:
            _log_sink(sink)
        logger.info("listening on %s:%d", self._config.listen.host, self.port)

    def reload(self, path: Path) -> None:
        """Apply the configuration file at ``path`` while the receiver keeps serving.

        An added sink gets a spool queue (with what its directory already holds) and a
        worker; a removed one loses its worker, its queue staying on disk. A sink whose
        worker's inputs changed (its settings, the retry settings or the Juju topology)
        gets a new worker that takes over its queue in order; other workers run on
        untouched. The spool cap and max_body_bytes apply at once. A new listen address
        or spool directory needs a restart: that is logged and the rest applied. If the
        file is invalid, or a new sink cannot be set up, nothing changes. A retired
        worker's POST in flight is awaited (up to the retry timeout), never sent twice.
        """
        try:
            config = load_config(path)
        except ConfigError as e:
            self._refuse(e)
            return
        with self._lock:
            old = self._config
            added, removed, replaced = _changed_sinks(old, config)
            sinks = {sink.name: sink for sink in config.sinks}
            try:
                # Everything that can fail comes first, while nothing has changed yet.
                workers = {name: self._worker(sinks[name], config) for name in added + replaced}
                self.spool.add_sinks(added)
            except OSError as e:
                self._refuse(e)
                return
            self.metrics.add_sinks(added)
            # What only a restart can change keeps its running value.
            self._config = replace(
                config, listen=old.listen, spool=replace(config.spool, dir=old.spool.dir)
            )
            _stop_all([self._workers.pop(name) for name in removed + replaced])
            self.spool.remove_sinks(removed)
            self.spool.set_max_bytes(config.spool.max_bytes)
            self._server.max_body_bytes = config.max_body_bytes
            self._workers.update(workers)
            for worker in workers.values():
                worker.start()
        for name in removed:
            logger.info("sink %s removed; its undelivered alerts stay spooled", name)
        for name in added:
            _log_sink(sinks[name], " added")
        for name in replaced:
            _log_sink(sinks[name], " updated")
        _warn_restart_needed(old, config)
        logger.info("configuration reloaded from %s", path)
        self.metrics.inc(CONFIG_RELOADS, result="ok")

    def _refuse(self, error: Exception) -> None:
        logger.error("configuration not reloaded, keeping the running one: %s", error)
        self.metrics.inc(CONFIG_RELOADS, result="error")

    def close(self) -> None:
        """Shut down gracefully; undelivered alerts stay spooled."""
        self._server.stop()
        with self._lock:
            _stop_all(self._workers.values())
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

    def _worker(self, sink: SinkConfig, config: ForwarderConfig) -> SinkWorker:
        return SinkWorker(
            sink, spool=self.spool, metrics=self.metrics, retry=config.retry, juju=config.juju
        )

    def _on_spool_drop(self, entry: Entry, reason: str) -> None:
        self.metrics.inc(DROPPED, sink=entry.sink, reason=reason)
        self._spool_drops[reason].event(
            _SPOOL_DROP_MESSAGES[reason], self._config.spool.max_bytes, entry.sink
        )


_SPOOL_DROP_MESSAGES = {
    OVER_CAP: "spool over %d bytes: dropped the oldest alert for sink %s",
    DISK_FULL: "spool volume full before the %d-byte cap: dropped the oldest alert for sink %s"
    " (give storage alerts-spool more room, or lower forwarder_spool_max_mb)",
}


def _changed_sinks(
    old: ForwarderConfig, new: ForwarderConfig
) -> tuple[list[str], list[str], list[str]]:
    """Names of the sinks added, removed, and kept but needing a new worker."""
    before = {sink.name: sink for sink in old.sinks}
    after = {sink.name: sink for sink in new.sinks}
    shared_changed = (old.retry, old.juju) != (new.retry, new.juju)
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    replaced = [
        name
        for name, sink in after.items()
        if name in before and (shared_changed or sink != before[name])
    ]
    return added, removed, replaced


def _stop_all(workers: Collection[SinkWorker]) -> None:
    """Stop ``workers`` together, so that their in-flight POSTs finish in parallel."""
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.join()


def _log_sink(sink: SinkConfig, change: str = "") -> None:
    logger.info("sink %s%s: %s %s", sink.name, change, sink.format, sink.safe_url)


def _warn_restart_needed(old: ForwarderConfig, new: ForwarderConfig) -> None:
    pending = [
        key
        for key, before, after in (
            ("listen", old.listen, new.listen),
            ("spool.dir", old.spool.dir, new.spool.dir),
        )
        if before != after
    ]
    if pending:
        logger.warning(
            "%s changed: restart the forwarder to apply it (the rest is applied)",
            " and ".join(pending),
        )
