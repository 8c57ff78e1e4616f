"""What the intake counts, in the Prometheus text format (version 0.0.4).

Whether the apiserver is sending (batches, events, bytes, the time of the last event), who was
turned away and why, what Falco's k8saudit answered, and what waits on disk for it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Final

from audit_intake.bearer import MISMATCHED, UNAUTHENTICATED

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

BATCHES: Final = "audit_intake_batches_received_total"
EVENTS: Final = "audit_intake_events_received_total"
BYTES: Final = "audit_intake_bytes_received_total"
LAST_EVENT: Final = "audit_intake_last_event_timestamp_seconds"
REFUSED: Final = "audit_intake_refused_total"
FALCO_ANSWERS: Final = "audit_intake_falco_answers_total"
REPLAYED_BATCHES: Final = "audit_intake_replayed_batches_total"
REPLAYED_EVENTS: Final = "audit_intake_replayed_events_total"
DROPPED_EVENTS: Final = "audit_intake_dropped_events_total"
RELOADS: Final = "audit_intake_config_reloads_total"
SPOOL_BYTES: Final = "audit_intake_spool_bytes"
SPOOL_LIMIT: Final = "audit_intake_spool_limit_bytes"
UNSETTLED: Final = "audit_intake_unsettled_batches"
UNSETTLED_BYTES: Final = "audit_intake_unsettled_bytes"

# Why a post was turned away: the one list of reasons, each exported at 0.
NOT_FOUND: Final = "not_found"
METHOD_NOT_ALLOWED: Final = "method_not_allowed"
UNSUPPORTED_MEDIA_TYPE: Final = "unsupported_media_type"
LENGTH_REQUIRED: Final = "length_required"
TOO_LARGE: Final = "too_large"
INCOMPLETE_BODY: Final = "incomplete_body"
BAD_REQUEST: Final = "bad_request"
TLS_HANDSHAKE: Final = "tls_handshake"
TOO_MANY_CONNECTIONS: Final = "too_many_connections"
SPOOL_FULL: Final = "spool_full"
SPOOL_ERROR: Final = "spool_error"
REFUSAL_REASONS: Final = (
    UNAUTHENTICATED,
    MISMATCHED,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    UNSUPPORTED_MEDIA_TYPE,
    LENGTH_REQUIRED,
    TOO_LARGE,
    INCOMPLETE_BODY,
    BAD_REQUEST,
    TLS_HANDSHAKE,
    TOO_MANY_CONNECTIONS,
    SPOOL_FULL,
    SPOOL_ERROR,
)
# What k8saudit answered, by HTTP status, or this when it could not be reached.
UNREACHABLE: Final = "unreachable"
# Why events were given up after the intake answered 200 for them.
REFUSED_BY_K8SAUDIT: Final = "refused_by_k8saudit"
RELOAD_RESULTS: Final = ("ok", "error")

_FAMILIES: Final[Mapping[str, tuple[str, str]]] = {
    BATCHES: ("counter", "Audit webhook batches taken (kept on disk and answered 200)."),
    EVENTS: ("counter", "Audit events in the batches taken."),
    BYTES: ("counter", "Bytes of the batches taken."),
    LAST_EVENT: ("gauge", "Unix time the last batch with events was taken (0: none since start)."),
    REFUSED: ("counter", "Requests turned away, by reason; none of them reached Falco."),
    FALCO_ANSWERS: ("counter", "Batches posted to Falco's k8saudit, by its HTTP answer."),
    REPLAYED_BATCHES: ("counter", "Batches sent to k8saudit again after its listener went away."),
    REPLAYED_EVENTS: ("counter", "Events in the replayed batches (Falco may see them twice)."),
    DROPPED_EVENTS: ("counter", "Events taken but given up, by reason (k8saudit refused them)."),
    RELOADS: ("counter", "Configuration reloads (SIGHUP), by result."),
    SPOOL_BYTES: ("gauge", "Bytes of the spool on disk, settled records of a live segment too."),
    SPOOL_LIMIT: ("gauge", "The cap on unsettled bytes: beyond it posts get 503."),
    UNSETTLED: ("gauge", "Batches taken that Falco may not have evaluated yet."),
    UNSETTLED_BYTES: ("gauge", "Bytes of the batches taken that Falco may not have yet."),
}

Labels = tuple[tuple[str, str], ...]


class IntakeMetrics:
    """Counters by name and labels; ``gauges`` are read when the page is rendered."""

    def __init__(self, gauges: Callable[[], Mapping[str, float]]):
        self._gauges = gauges
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {
            name: {} for name, (kind, _) in _FAMILIES.items() if kind == "counter"
        }
        for name in (BATCHES, EVENTS, BYTES, REPLAYED_BATCHES, REPLAYED_EVENTS):
            self._counters[name][()] = 0
        for reason in REFUSAL_REASONS:
            self._counters[REFUSED][(("reason", reason),)] = 0
        for code in ("200", UNREACHABLE):
            self._counters[FALCO_ANSWERS][(("code", code),)] = 0
        self._counters[DROPPED_EVENTS][(("reason", REFUSED_BY_K8SAUDIT),)] = 0
        for result in RELOAD_RESULTS:
            self._counters[RELOADS][(("result", result),)] = 0
        self.last_event = 0.0

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to counter ``name`` with ``labels``."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0) + amount

    def value(self, name: str, **labels: str) -> float:
        """One counter series' value (0 if it never counted)."""
        with self._lock:
            return self._counters[name].get(tuple(sorted(labels.items())), 0)

    def taken(self, events: int, size: int, now: float) -> None:
        """A batch was kept and answered 200."""
        with self._lock:
            for name, amount in ((BATCHES, 1), (EVENTS, events), (BYTES, size)):
                self._counters[name][()] += amount
            if events:
                self.last_event = now

    def render(self) -> str:
        """The exposition text."""
        with self._lock:
            series = {name: dict(values) for name, values in self._counters.items()}
            series[LAST_EVENT] = {(): self.last_event}
        series.update({name: {(): value} for name, value in self._gauges().items()})
        lines: list[str] = []
        for name, (kind, text) in _FAMILIES.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for labels, value in sorted(series.get(name, {}).items()):
                label_text = ",".join(f'{key}="{val}"' for key, val in labels)
                shown = f"{{{label_text}}}" if labels else ""
                number = repr(value) if value % 1 else str(int(value))
                lines.append(f"{name}{shown} {number}")
        return "\n".join(lines) + "\n"


_SAMPLE: Final = re.compile(
    r'^(?P<name>[a-z_]+)(?:\{[a-z_]+="(?P<label>[^"]*)"\})? (?P<value>[0-9.e+-]+)$', re.MULTILINE
)


def read_series(text: str, name: str) -> dict[str, float]:
    """One family of a rendered page: each sample's one label value ("" if none), its value."""
    return {
        sample["label"] or "": float(sample["value"])
        for sample in _SAMPLE.finditer(text)
        if sample["name"] == name
    }
