"""Thread-safe counters rendered in the Prometheus text exposition format (version 0.0.4)."""

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

RECEIVED: Final = "falco_forwarder_received_total"
REJECTED: Final = "falco_forwarder_rejected_total"
DELIVERED: Final = "falco_forwarder_delivered_total"
RETRIED: Final = "falco_forwarder_retried_total"
DROPPED: Final = "falco_forwarder_dropped_total"
QUEUE_DEPTH: Final = "falco_forwarder_queue_depth"
SINK_UP: Final = "falco_forwarder_sink_up"
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
    SINK_UP: "0 while a sink's last delivery attempt failed and is being retried, else 1.",
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
        self._up: dict[str, int] = {}
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
                self._up[sink] = 1  # until an attempt fails
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

    def set_up(self, sink: str, up: bool) -> None:
        """Record whether ``sink``'s last delivery attempt got an answer (a refusal counts)."""
        with self._lock:
            self._up[sink] = int(up)

    def value(self, name: str, **labels: str) -> int:
        """Current value of one counter series (0 if never incremented)."""
        with self._lock:
            return self._counters[name].get(_key(**labels), 0)

    def render(self, queue_depths: Mapping[str, int], spool_bytes: int) -> str:
        """The exposition text: every counter plus the gauges passed in."""
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
            up = {_key(sink=s): value for s, value in self._up.items() if s in queue_depths}
        lines: list[str] = []
        for name, series in counters.items():
            _family(lines, name, "counter", series)
        _family(lines, QUEUE_DEPTH, "gauge", {_key(sink=s): d for s, d in queue_depths.items()})
        _family(lines, SINK_UP, "gauge", up)
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


@dataclass(frozen=True)
class DeliveryState:
    """What a reader of ``/metrics`` needs to judge delivery: backlog and losses."""

    queued: dict[str, int] = field(default_factory=dict[str, int])
    """Alerts waiting, per sink."""
    dropped: dict[str, dict[str, int]] = field(default_factory=dict[str, dict[str, int]])
    """Alerts given up, per sink and reason (only non-zero counts)."""
    rejected: dict[str, int] = field(default_factory=dict[str, int])
    """Posts from Falco refused, per reason (only non-zero counts)."""
    down: set[str] = field(default_factory=set[str])
    """Sinks whose last attempt failed: their alerts wait for a retry."""


_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\d+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_delivery(text: str) -> DeliveryState:
    """Read the delivery series back from `Metrics.render` output; other lines are ignored."""
    state = DeliveryState()
    for sample in _SAMPLE.finditer(text):
        labels = {key: _unescape(value) for key, value in _LABEL.findall(sample["labels"] or "")}
        value = int(sample["value"])
        if sample["name"] == QUEUE_DEPTH and "sink" in labels:
            state.queued[labels["sink"]] = value
        elif value and sample["name"] == DROPPED and {"sink", "reason"} <= labels.keys():
            state.dropped.setdefault(labels["sink"], {})[labels["reason"]] = value
        elif value and sample["name"] == REJECTED and "reason" in labels:
            state.rejected[labels["reason"]] = value
        elif not value and sample["name"] == SINK_UP and "sink" in labels:
            state.down.add(labels["sink"])
    return state


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)
