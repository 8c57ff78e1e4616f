"""Thread-safe counters rendered in the Prometheus text exposition format (version 0.0.4)."""

import threading
from collections.abc import Iterable, Mapping
from typing import Final

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

RECEIVED: Final = "falco_forwarder_received_total"
REJECTED: Final = "falco_forwarder_rejected_total"
DELIVERED: Final = "falco_forwarder_delivered_total"
RETRIED: Final = "falco_forwarder_retried_total"
DROPPED: Final = "falco_forwarder_dropped_total"
QUEUE_DEPTH: Final = "falco_forwarder_queue_depth"
SPOOL_BYTES: Final = "falco_forwarder_spool_bytes"
CONFIG_RELOADS: Final = "falco_forwarder_config_reloads_total"
RELOAD_RESULTS: Final = ("ok", "error")

_HELP: Final = {
    RECEIVED: "Alerts accepted from Falco and spooled for every sink.",
    REJECTED: "Requests refused by the receiver, by reason.",
    DELIVERED: "Alerts a sink acknowledged with a 2xx status.",
    RETRIED: "Failed delivery attempts that were retried.",
    DROPPED: "Alerts given up for a sink, by reason.",
    QUEUE_DEPTH: "Alerts spooled and not yet delivered, per sink.",
    SPOOL_BYTES: "Bytes of alerts held in the spool, all sinks together.",
    CONFIG_RELOADS: "Configuration reloads (SIGHUP), by result: applied or refused.",
}

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """Counters keyed by name and labels; known series are exported at 0 before they count.

    The series of a sink removed by a reload stay: counters never go back.
    """

    def __init__(
        self, sinks: Iterable[str], rejected_reasons: Iterable[str], drop_reasons: Iterable[str]
    ):
        self._lock = threading.Lock()
        self._drop_reasons = tuple(drop_reasons)
        self._counters: dict[str, dict[Labels, int]] = {
            name: {} for name in (RECEIVED, REJECTED, DELIVERED, RETRIED, DROPPED, CONFIG_RELOADS)
        }
        self._counters[RECEIVED][()] = 0
        for reason in rejected_reasons:
            self._counters[REJECTED][_key(reason=reason)] = 0
        for result in RELOAD_RESULTS:
            self._counters[CONFIG_RELOADS][_key(result=result)] = 0
        self.add_sinks(sinks)

    def add_sinks(self, sinks: Iterable[str]) -> None:
        """Export the per-sink series of ``sinks`` at 0 (a reload may add sinks)."""
        with self._lock:
            for sink in sinks:
                for name in (DELIVERED, RETRIED):
                    self._counters[name].setdefault(_key(sink=sink), 0)
                for reason in self._drop_reasons:
                    self._counters[DROPPED].setdefault(_key(sink=sink, reason=reason), 0)

    def inc(self, name: str, **labels: str) -> None:
        """Add one to counter ``name`` with ``labels``."""
        key = _key(**labels)
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0) + 1

    def value(self, name: str, **labels: str) -> int:
        """Current value of one counter series (0 if never incremented)."""
        with self._lock:
            return self._counters[name].get(_key(**labels), 0)

    def render(self, queue_depths: Mapping[str, int], spool_bytes: int) -> str:
        """The exposition text: every counter plus the gauges passed in."""
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
        lines: list[str] = []
        for name, series in counters.items():
            _family(lines, name, "counter", series)
        _family(lines, QUEUE_DEPTH, "gauge", {_key(sink=s): d for s, d in queue_depths.items()})
        _family(lines, SPOOL_BYTES, "gauge", {(): spool_bytes})
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
