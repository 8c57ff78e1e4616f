"""Map Falco JSON alerts to an OTLP/HTTP logs export request, JSON encoding (``/v1/logs``).

One ``resourceLogs`` (the Juju unit, and the cluster the alerts name, as the resource), one
``scopeLogs``, and one ``logRecords`` entry per alert (`encode_record`; `frame` puts many in
one request, in order, with a resource of their own for alerts naming another cluster).
Severity comes from the priority; attributes from the rule, tags and output fields, each output
field under its own Falco name (``ka.user.name``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from falco_forwarder.alert_fields import JujuTopology, output_fields, take_cluster
from falco_forwarder.alert_time import alert_time_ns

SCOPE_NAME: Final = "falco-k8s.forwarder"
SERVICE_NAME: Final = "falco"
# Falco priorities are syslog severities: mapped as the OpenTelemetry logs data model's
# Appendix B maps syslog (Emergency FATAL, Alert ERROR3, Critical ERROR2 ... Debug DEBUG).
SEVERITY: Final = {
    "emergency": 21,
    "alert": 19,
    "critical": 18,
    "error": 17,
    "warning": 13,
    "notice": 10,
    "informational": 9,
    "info": 9,
    "debug": 5,
}
UNSPECIFIED: Final = 0
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_NO_RECORDS: Final = b'"logRecords":[]'
# Ends the cluster's name (a JSON string) at the start of an encoded record, for `frame`.
_CLUSTER_END: Final = b"\n"
# OTLP/JSON carries 64-bit integers; larger ones go as text.
_INT64 = range(-(2**63), 2**63)

AnyValue = dict[str, Any]
KeyValue = dict[str, Any]


def any_value(value: object) -> AnyValue:
    """An OTLP ``AnyValue`` for a JSON value (int64 as a decimal string, as proto3 JSON has it)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list):
        items: list[object] = value  # pyright: ignore[reportUnknownVariableType]
        return {"arrayValue": {"values": [any_value(item) for item in items]}}
    if isinstance(value, Mapping):
        pairs = [key_value(str(k), v) for k, v in value.items()]  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        return {"kvlistValue": {"values": pairs}}
    return {"stringValue": json.dumps(value, default=str)}


def _number(value: float) -> AnyValue:
    """Integers that fit int64 and finite floats as numbers; anything else as text."""
    if isinstance(value, int):
        return {"intValue": str(value)} if value in _INT64 else {"stringValue": str(value)}
    return {"doubleValue": value} if math.isfinite(value) else {"stringValue": str(value)}


def key_value(key: str, value: object) -> KeyValue:
    """One OTLP ``KeyValue``."""
    return {"key": key, "value": any_value(value)}


def topology(juju: JujuTopology) -> dict[str, str]:
    """The Juju topology under the names COS labels use."""
    return {
        "juju_model": juju.model,
        "juju_model_uuid": juju.model_uuid,
        "juju_application": juju.application,
        "juju_unit": juju.unit,
    }


def log_record(
    alert: Mapping[str, Any], fields: Mapping[str, object], juju: JujuTopology, observed_ns: int
) -> dict[str, Any]:
    """The ``LogRecord`` for one alert, whose output fields are ``fields``.

    The topology is on the record too, not only on the resource: Canonical's
    opentelemetry-collector-k8s turns exactly these log attributes into Loki labels
    (its ``loki.attribute.labels`` hint), so COS alert rules can select the alerts.
    """
    priority = alert.get("priority")
    priority = priority if isinstance(priority, str) else ""
    attributes: dict[str, object] = {
        "falco.rule": alert.get("rule"),
        "falco.priority": priority or None,
        "falco.source": alert.get("source"),
        "falco.hostname": alert.get("hostname"),
        "falco.tags": alert.get("tags"),
        **topology(juju),
    }
    for name, value in sorted(fields.items()):
        attributes[f"falco.output_fields.{name}" if name in attributes else name] = value
    record: dict[str, Any] = {
        "timeUnixNano": str(alert_time_ns(alert.get("time"), lambda: observed_ns)),
        "observedTimeUnixNano": str(observed_ns),
        "severityNumber": SEVERITY.get(priority.strip().lower(), UNSPECIFIED),
        "attributes": [key_value(k, v) for k, v in attributes.items() if v is not None],
    }
    if priority:
        record["severityText"] = priority
    output = alert.get("output")
    if output is not None:
        record["body"] = any_value(output)
    return record


def resource_attributes(juju: JujuTopology, cluster: str = "") -> list[KeyValue]:
    """The resource: the service, the Juju topology and the cluster, if the alerts name one."""
    resource = {"service.name": SERVICE_NAME, **topology(juju)}
    if cluster:
        resource["k8s.cluster.name"] = cluster  # OpenTelemetry's semantic conventions
    return [key_value(key, value) for key, value in resource.items()]


def encode_record(
    alert: Mapping[str, Any],
    juju: JujuTopology,
    max_message_bytes: int | None = None,
    *,
    now: Callable[[], int] = time.time_ns,
) -> bytes:
    """One alert's ``LogRecord``, encoded, after the cluster it names (its resource's).

    ``max_message_bytes`` is not used: collectors accept requests far above a Falco alert.
    """
    del max_message_bytes
    fields = output_fields(alert)
    cluster = take_cluster(fields)  # on the resource: not again on the record
    return _dumps(cluster) + _CLUSTER_END + _dumps(log_record(alert, fields, juju, now()))


def frame(records: Sequence[bytes], juju: JujuTopology) -> bytes:
    """The export request carrying ``records`` in order, a resource for each run of a cluster.

    Falco names one cluster until its config changes: a request holds one resource, or more
    when it spans a change of ``cluster_name``.
    """
    runs: list[tuple[bytes, list[bytes]]] = []
    for piece in records:
        cluster, _, record = piece.partition(_CLUSTER_END)
        if runs and runs[-1][0] == cluster:
            runs[-1][1].append(record)
        else:
            runs.append((cluster, [record]))
    body = b",".join(_resource_logs(juju, json.loads(name), run) for name, run in runs)
    return b'{"resourceLogs":[' + body + b"]}"


def _resource_logs(juju: JujuTopology, cluster: str, records: list[bytes]) -> bytes:
    """One ``ResourceLogs``: the unit and ``cluster`` as the resource, ``records`` in order."""
    scope: dict[str, object] = {"scope": {"name": SCOPE_NAME}, "logRecords": []}
    resource: dict[str, object] = {
        "resource": {"attributes": resource_attributes(juju, cluster)},
        "scopeLogs": [scope],
    }
    before, after = _dumps(resource).split(_NO_RECORDS)
    return before + b'"logRecords":[' + b",".join(records) + b"]" + after


def _dumps(value: object) -> bytes:
    return _ENCODER.encode(value).encode("utf-8", "replace")
