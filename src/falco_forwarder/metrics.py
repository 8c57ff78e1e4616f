"""Thread-safe counters rendered in the Prometheus text exposition format (version 0.0.4)."""

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

DELIVERED: Final = "falco_forwarder_delivered_total"
RETRIED: Final = "falco_forwarder_retried_total"
DROPPED: Final = "falco_forwarder_dropped_total"
FOLDED: Final = "falco_forwarder_folded_total"
BACKLOG_BYTES: Final = "falco_forwarder_backlog_bytes"
SINK_UP: Final = "falco_forwarder_sink_up"
LOG_BYTES: Final = "falco_forwarder_alert_log_bytes"
VOLUME_FREE: Final = "falco_forwarder_alert_log_volume_free_bytes"
VOLUME_SIZE: Final = "falco_forwarder_alert_log_volume_size_bytes"
CHECKPOINT_SAVED: Final = "falco_forwarder_checkpoint_saved"
CONFIG_RELOADS: Final = "falco_forwarder_config_reloads_total"
RELOAD_RESULTS: Final = ("ok", "error")

# Why an alert was given up for a sink: the one list of drop reasons, each exported at 0.
RETENTION: Final = "retention"
"""The sink lagged so far that its unread alerts' segment went past alert log retention."""
LOG_REPLACED: Final = "log_replaced"
"""The alert log was cut, or a file of it deleted or replaced, by something other than the
forwarder, while the forwarder was stopped (or in place, while it ran) before the sink read it."""
HTTP_4XX: Final = "http_4xx"
"""The sink refused the alert with a 4xx other than 429: sending it again cannot help."""
HTTP_OTHER: Final = "http_other"
"""The sink answered with a status that is neither success, retry nor 4xx (e.g. 3xx)."""
MALFORMED: Final = "malformed"
"""A log line that is not a JSON object (a line cut short by a crash or a full volume, a line
over 16 MiB, or garbage); counted once per line."""
UNMAPPABLE: Final = "unmappable"
"""The sink's encoder failed on the alert: retrying cannot help."""
DROP_REASONS: Final = (RETENTION, LOG_REPLACED, HTTP_4XX, HTTP_OTHER, MALFORMED, UNMAPPABLE)

_HELP: Final = {
    DELIVERED: "Alerts a sink acknowledged with a 2xx status.",
    RETRIED: "Failed delivery attempts that were retried.",
    DROPPED: "Alerts given up for a sink, by reason.",
    FOLDED: "Repeated alerts folded into a summary for a sink (alert_dedup_window), by rule.",
    BACKLOG_BYTES: "Bytes of the alert log a sink has still to deliver.",
    SINK_UP: "0 while a sink's last delivery attempt failed or timed out and is being retried.",
    LOG_BYTES: "Bytes of the alert log on disk, all segments together.",
    VOLUME_FREE: "Bytes free on the alert log's volume (Falco loses alerts when it is full).",
    VOLUME_SIZE: "Bytes in all on the alert log's volume.",
    CHECKPOINT_SAVED: "0 while a sink's checkpoint cannot be saved (a restart would resend).",
    CONFIG_RELOADS: "Configuration reloads (SIGHUP), by result: applied or refused.",
}

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Gauges:
    """The values read from the alert log at each scrape."""

    backlog: Mapping[str, int]
    """Bytes each configured sink has still to read."""
    checkpoint_errors: Mapping[str, str]
    """Why each sink's checkpoint cannot be saved ("" where it is)."""
    log_bytes: int
    volume_free: int
    volume_size: int


class Metrics:
    """Counters keyed by name and labels; known series are exported at 0 before they count.

    The series of a sink removed by a reload stay: counters never go back.
    """

    def __init__(self, sinks: Iterable[str]):
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, int]] = {
            name: {} for name in (DELIVERED, RETRIED, DROPPED, FOLDED, CONFIG_RELOADS)
        }
        self._up: dict[str, int] = {}
        for result in RELOAD_RESULTS:
            self._counters[CONFIG_RELOADS][_key(result=result)] = 0
        self.add_sinks(sinks)

    def add_sinks(self, sinks: Iterable[str]) -> None:
        """Export the per-sink series of ``sinks`` at 0 (a reload may add sinks)."""
        with self._lock:
            for sink in sinks:
                self._up[sink] = 1  # until an attempt fails
                for name in (DELIVERED, RETRIED):
                    self._counters[name].setdefault(_key(sink=sink), 0)
                for reason in DROP_REASONS:
                    self._counters[DROPPED].setdefault(_key(sink=sink, reason=reason), 0)

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        """Add ``amount`` to counter ``name`` with ``labels``."""
        key = _key(**labels)
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0) + amount

    def drop(self, sink: str, reason: str, amount: int = 1) -> None:
        """Count alerts given up for ``sink``: every drop is counted here, with a known reason."""
        if reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {reason!r}")
        self.inc(DROPPED, amount, sink=sink, reason=reason)

    def set_up(self, sink: str, up: bool) -> None:
        """Record whether ``sink``'s last delivery attempt got an answer (a refusal counts)."""
        with self._lock:
            self._up[sink] = int(up)

    def value(self, name: str, **labels: str) -> int:
        """Current value of one counter series (0 if never incremented)."""
        with self._lock:
            return self._counters[name].get(_key(**labels), 0)

    def render(self, gauges: Gauges) -> str:
        """The exposition text: every counter plus ``gauges`` (per configured sink)."""
        backlogs = gauges.backlog
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
            up = {_key(sink=s): value for s, value in self._up.items() if s in backlogs}
        lines: list[str] = []
        for name, series in counters.items():
            _family(lines, name, "counter", series)
        _family(lines, BACKLOG_BYTES, "gauge", {_key(sink=s): b for s, b in backlogs.items()})
        _family(lines, SINK_UP, "gauge", up)
        saved = {_key(sink=s): int(not error) for s, error in gauges.checkpoint_errors.items()}
        _family(lines, CHECKPOINT_SAVED, "gauge", saved)
        _family(lines, LOG_BYTES, "gauge", {(): gauges.log_bytes})
        _family(lines, VOLUME_FREE, "gauge", {(): gauges.volume_free})
        _family(lines, VOLUME_SIZE, "gauge", {(): gauges.volume_size})
        return "\n".join(lines) + "\n"


def _key(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


def _family(lines: list[str], name: str, kind: str, series: Mapping[Labels, int]) -> None:
    lines.append(f"# HELP {name} {_HELP[name]}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in sorted(series.items()):
        lines.append(f"{name}{_labels(labels)} {value}")


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(f'{key}="{_escape(value)}"' for key, value in labels)
    return f"{{{body}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True)
class DeliveryState:
    """What a reader of ``/metrics`` needs to judge delivery: backlog and losses."""

    backlog: dict[str, int] = field(default_factory=dict[str, int])
    """Bytes of alerts waiting, per sink."""
    dropped: dict[str, dict[str, int]] = field(default_factory=dict[str, dict[str, int]])
    """Alerts given up, per sink and reason (only non-zero counts)."""
    down: set[str] = field(default_factory=set[str])
    """Sinks whose last attempt failed: their alerts wait for a retry."""
    unsaved: set[str] = field(default_factory=set[str])
    """Sinks whose checkpoint cannot be saved: a restart would send alerts again."""


_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\d+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_delivery(text: str) -> DeliveryState:
    """Read the delivery series back from `Metrics.render` output; other lines are ignored."""
    state = DeliveryState()
    for sample in _SAMPLE.finditer(text):
        labels = {key: _unescape(value) for key, value in _LABEL.findall(sample["labels"] or "")}
        value = int(sample["value"])
        if sample["name"] == BACKLOG_BYTES and "sink" in labels:
            state.backlog[labels["sink"]] = value
        elif value and sample["name"] == DROPPED and {"sink", "reason"} <= labels.keys():
            state.dropped.setdefault(labels["sink"], {})[labels["reason"]] = value
        elif not value and sample["name"] == SINK_UP and "sink" in labels:
            state.down.add(labels["sink"])
        elif not value and sample["name"] == CHECKPOINT_SAVED and "sink" in labels:
            state.unsaved.add(labels["sink"])
    return state


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)
