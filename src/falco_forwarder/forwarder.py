"""The running service: the alert log, one delivery worker per sink, upkeep, and the endpoint.

`Forwarder.reload` applies a new configuration in place: workers whose settings did not
change keep running, and a replaced one resumes exactly at its sink's checkpoint.
"""

import logging
import threading
import time
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from falco_forwarder.alert_log import AlertLog
from falco_forwarder.burstlog import BurstLog
from falco_forwarder.config import ConfigError, ForwarderConfig, SinkConfig, load_config
from falco_forwarder.metrics import CONFIG_RELOADS, RETENTION, Metrics
from falco_forwarder.server import StatusServer
from falco_forwarder.worker import SinkWorker

logger = logging.getLogger(__name__)

# Rotation and retention are checked this often; the log can outgrow its cap by what Falco
# writes meanwhile.
UPKEEP_SECONDS: Final = 0.1
# Checkpoints reach the disk at least this often (group commit), and at every clean stop.
SYNC_SECONDS: Final = 1.0
# How often the endpoint loop checks for shutdown: bounds the stop latency.
_POLL_SECONDS: Final = 0.1


class Forwarder:
    """Delivers the alert log to every sink; binds its port on construction, runs after `start`.

    `reload` applies a changed configuration while running. `close` stops the workers (a
    POST in flight completes), syncs every checkpoint, and leaves the log for the next start.
    """

    def __init__(self, config: ForwarderConfig):
        self._config = config
        names = [sink.name for sink in config.sinks]
        self.metrics = Metrics(names)
        self._retention_drops = BurstLog(logger)
        self._lock = threading.Lock()  # serialises `reload` and `close`: both change workers
        self._stopping = threading.Event()
        self.log = AlertLog(
            config.alert_log.file,
            config.alert_log.state_dir,
            retention_bytes=config.alert_log.retention_bytes,
            segment_bytes=config.alert_log.segment_bytes,
            on_drop=self._on_retention_drop,
        )
        try:
            self.log.add_sinks(names)
            self._server = StatusServer((config.listen.host, config.listen.port), self._render)
        except BaseException:
            self.log.close()
            raise
        self._workers = {sink.name: self._worker(sink, config) for sink in config.sinks}
        self._serving = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_SECONDS,), name="endpoint"
        )
        self._upkeep = threading.Thread(target=self._keep, name="upkeep")

    @property
    def port(self) -> int:
        """The bound TCP port (useful when the configuration asks for port 0)."""
        return self._server.server_address[1]

    def start(self) -> None:
        """Start the delivery workers, the upkeep and the endpoint."""
        for worker in self._workers.values():
            worker.start()
        self._upkeep.start()
        self._serving.start()
        for sink in self._config.sinks:
            _log_sink(sink)
        logger.info(
            "delivering %s; endpoint on %s:%d",
            self._config.alert_log.file,
            self._config.listen.host,
            self.port,
        )

    def _keep(self) -> None:
        """Rotate and apply retention often, sync checkpoints every second."""
        synced = time.monotonic()
        while not self._stopping.wait(UPKEEP_SECONDS):
            try:
                self.log.maintain()
                if time.monotonic() - synced >= SYNC_SECONDS - UPKEEP_SECONDS:
                    self.log.sync()
                    synced = time.monotonic()
            except Exception:
                # Rotation and retention must outlive any error: log it and try again.
                logger.exception("alert log upkeep failed; trying again")

    def _render(self) -> str:
        return self.metrics.render(self.log.backlog_bytes(), self.log.disk_bytes())

    def reload(self, path: Path) -> None:
        """Apply the configuration file at ``path`` while running.

        An added sink gets a worker from its checkpoint (or the oldest alert kept); a removed
        one loses its worker, its checkpoint staying on disk. A sink whose worker's inputs
        changed (its settings, the retry settings or the Juju topology) gets a new worker that
        resumes at the checkpoint; other workers run on untouched. Retention and segment size
        apply at once. A new listen address, log file or state directory needs a restart: that
        is logged and the rest applied. If the file is invalid, or a new sink cannot be set
        up, nothing changes.
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
                self.log.add_sinks(added)
            except OSError as e:
                self._refuse(e)
                return
            self.metrics.add_sinks(added)
            # What only a restart can change keeps its running value.
            self._config = replace(
                config,
                listen=old.listen,
                alert_log=replace(
                    config.alert_log,
                    file=old.alert_log.file,
                    state_dir=old.alert_log.state_dir,
                ),
            )
            _stop_all([self._workers.pop(name) for name in removed + replaced])
            self.log.remove_sinks(removed)
            self.log.retention_bytes = config.alert_log.retention_bytes
            self.log.segment_bytes = config.alert_log.segment_bytes
            self._workers.update(workers)
            for worker in workers.values():
                worker.start()
        for name in removed:
            logger.info("sink %s removed; its checkpoint stays in case it comes back", name)
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
        """Stop gracefully: workers finish their POST in flight, checkpoints are synced."""
        if self._stopping.is_set():
            return
        if self._serving.is_alive():
            self._server.shutdown()
        self._server.server_close()
        with self._lock:
            _stop_all(self._workers.values())
            self._stopping.set()
            if self._upkeep.is_alive():
                self._upkeep.join()
            backlog = self.log.backlog_bytes()
            self.log.close()
        logger.info("stopped; bytes left to deliver per sink: %s", backlog)

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
            sink, log=self.log, metrics=self.metrics, retry=config.retry, juju=config.juju
        )

    def _on_retention_drop(self, sink: str, count: int) -> None:
        self.metrics.drop(sink, RETENTION, count)
        self._retention_drops.event(
            "sink %s lagged beyond the %d-byte alert log retention: dropped %d unread alerts"
            " (raise alert_log_retention_mb to keep more)",
            sink,
            self.log.retention_bytes,
            count,
        )


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
            ("alert_log.file", old.alert_log.file, new.alert_log.file),
            ("alert_log.state_dir", old.alert_log.state_dir, new.alert_log.state_dir),
        )
        if before != after
    ]
    if pending:
        logger.warning(
            "%s changed: restart the forwarder to apply it (the rest is applied)",
            " and ".join(pending),
        )
