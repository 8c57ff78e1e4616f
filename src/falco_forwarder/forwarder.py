"""The running service: the alert log, one delivery worker per sink, upkeep, and the endpoint.

`Forwarder.reload` applies a new configuration in place: workers whose settings did not
change keep running, and a replaced one resumes exactly at its sink's checkpoint. Neither a
reload nor a stop waits on a sink for more than a second: requests still in flight then are cut
off, and sent again from the checkpoint. An inotify watch on the
log's directory wakes the workers and the upkeep as soon as Falco writes.
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
from falco_forwarder.metrics import CONFIG_RELOADS, RETENTION, Gauges, Metrics
from falco_forwarder.server import StatusServer
from falco_forwarder.watch import LogWatch
from falco_forwarder.worker import SinkWorker

logger = logging.getLogger(__name__)

# Rotation, retention and the look at the files run when Falco writes, at most this often,
# and at least every SYNC_SECONDS; the log can outgrow its cap by what Falco writes meanwhile.
UPKEEP_SECONDS: Final = 0.05
# Checkpoints reach the disk at least this often (group commit), and at every clean stop.
SYNC_SECONDS: Final = 1.0
# A reload or a stop lets requests in flight finish for this long, then cuts them off: a sink
# that does not answer never holds either back.
STOP_GRACE_SECONDS: Final = 1.0
# A sink's fold journal, beside its checkpoint in the state directory.
FOLDS_SUFFIX: Final = ".folds"
# How often the endpoint loop checks for shutdown: bounds the stop latency.
_POLL_SECONDS: Final = 0.1
# Below this share of the volume free, say so (Falco loses alerts once it is full).
LOW_SPACE_SHARE: Final = 0.1


class Forwarder:
    """Delivers the alert log to every sink; binds its port on construction, runs after `start`.

    `reload` applies a changed configuration while running. `close` stops the workers (cutting
    off requests still in flight after a second), syncs every checkpoint, and leaves the log
    for the next start.
    """

    def __init__(self, config: ForwarderConfig):
        self._config = config
        names = [sink.name for sink in config.sinks]
        self.metrics = Metrics(names)
        self._retention_drops = BurstLog(logger)
        self._replaced_drops = BurstLog(logger)
        self._low_space = BurstLog(logger)
        self._unsaved: dict[str, BurstLog] = {}
        self._lock = threading.Lock()  # serialises `reload` and `close`: both change workers
        self._stopping = threading.Event()
        self._changed = threading.Event()  # the log's directory changed: upkeep is due
        self.log = AlertLog(
            config.alert_log.file,
            config.alert_log.state_dir,
            retention_bytes=config.alert_log.retention_bytes,
            segment_bytes=config.alert_log.segment_bytes,
            on_drop=self._on_drop,
        )
        try:
            self.log.add_sinks(names)
            self._server = StatusServer((config.listen.host, config.listen.port), self._render)
        except BaseException:
            self.log.close()
            raise
        self._watch = LogWatch(config.alert_log.file.parent)
        self._watch.subscribe(self._changed.set)
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
        """Start the delivery workers, the watch, the upkeep and the endpoint."""
        for worker in self._workers.values():
            self._watch.subscribe(worker.wake)
            worker.start()
        self._watch.start()
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
        """Rotate and apply retention when Falco writes, sync checkpoints every second."""
        synced = time.monotonic()
        while not self._stopping.is_set():
            self._changed.wait(SYNC_SECONDS)
            # After the workers: they deliver what Falco just wrote before the upkeep runs.
            self._stopping.wait(UPKEEP_SECONDS)
            self._changed.clear()
            try:
                self.log.maintain()
                if time.monotonic() - synced >= SYNC_SECONDS:
                    # Not under the lock, which `close` holds while it waits for this thread.
                    for worker in list(self._workers.values()):
                        worker.sync()  # fold journals first: never behind their checkpoints
                    self.log.sync()
                    synced = time.monotonic()
                    self._check_space()
                    self._check_checkpoints()
            except Exception:
                # Rotation and retention must outlive any error: log it and try again.
                logger.exception("alert log upkeep failed; trying again")

    def _check_space(self) -> None:
        free, size = self.log.volume()
        if size and free < size * LOW_SPACE_SHARE:
            self._low_space.event(
                "the alert log's volume has %d of %d bytes free: Falco loses the alerts it "
                "cannot write once it is full",
                free,
                size,
            )
        else:
            self._low_space.end("the alert log's volume has room again")

    def _check_checkpoints(self) -> None:
        for name, error in self.log.checkpoint_errors().items():
            burst = self._unsaved.setdefault(name, BurstLog(logger))
            if error:
                burst.event(
                    "sink %s: cannot save its checkpoint (%s): delivery goes on; a restart now "
                    "would send again what it delivered since",
                    name,
                    error,
                )
            else:
                burst.end("sink %s: its checkpoint is saved again", name)

    def _render(self) -> str:
        free, size = self.log.volume()
        gauges = Gauges(
            backlog=self.log.backlog_bytes(),
            checkpoint_errors=self.log.checkpoint_errors(),
            log_bytes=self.log.disk_bytes(),
            volume_free=free,
            volume_size=size,
        )
        return self.metrics.render(gauges)

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
            for worker in workers.values():
                self._watch.subscribe(worker.wake)
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
            self._stop_all([self._workers.pop(name) for name in removed + replaced])
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
        """Stop within a second or so: requests in flight after that are cut off; sync."""
        if self._stopping.is_set():
            return
        if self._serving.is_alive():
            self._server.shutdown()
        self._server.server_close()
        with self._lock:
            self._stop_all(list(self._workers.values()))
            self._stopping.set()
            self._changed.set()
            if self._upkeep.is_alive():
                self._upkeep.join()
                self._watch.stop()
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
            sink,
            log=self.log,
            metrics=self.metrics,
            retry=config.retry,
            juju=config.juju,
            fold_seconds=config.dedup_window_seconds,
            journal=self.log.state_dir / f"{sink.name}{FOLDS_SUFFIX}",
        )

    def _on_drop(self, sink: str, count: int, reason: str) -> None:
        self.metrics.drop(sink, reason, count)
        if reason == RETENTION:
            self._retention_drops.event(
                "sink %s lagged beyond the %d-byte alert log retention: dropped %d unread alerts"
                " (raise alert_log_retention_mb to keep more)",
                sink,
                self.log.retention_bytes,
                count,
            )
        else:
            self._replaced_drops.event(
                "sink %s: %d alerts it had not read were cut from the alert log by something "
                "other than the forwarder; counted as dropped (%s)",
                sink,
                count,
                reason,
            )

    def _stop_all(self, workers: Collection[SinkWorker]) -> None:
        """Stop ``workers`` together: requests in flight get `STOP_GRACE_SECONDS` in all."""
        for worker in workers:
            self._watch.unsubscribe(worker.wake)
            worker.stop()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in workers:
            worker.join(deadline)


def _changed_sinks(
    old: ForwarderConfig, new: ForwarderConfig
) -> tuple[list[str], list[str], list[str]]:
    """Names of the sinks added, removed, and kept but needing a new worker."""
    before = {sink.name: sink for sink in old.sinks}
    after = {sink.name: sink for sink in new.sinks}
    shared = ("retry", "juju", "dedup_window_seconds")
    shared_changed = any(getattr(old, key) != getattr(new, key) for key in shared)
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    replaced = [
        name
        for name, sink in after.items()
        if name in before and (shared_changed or sink != before[name])
    ]
    return added, removed, replaced


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
