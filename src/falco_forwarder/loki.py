"""Map Falco JSON alerts to a Loki push request (``POST /loki/api/v1/push``, JSON body).

Labels stay few and bounded, so Loki's index stays small: the rule, priority and source, the
cluster the alert names, and the Juju topology COS alert rules match on. Everything else, user
and namespace included, goes in the line: a JSON object that LogQL's ``| json`` reads. A
summary of folded repeats has the label ``folded="true"`` and its count and first and last
time at the top of the line (``repeats``, ``repeats_first``, ``repeats_last``). A request
carries many alerts: each is one stream entry of its own (`encode_entry`), and `frame` joins
them in order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from falco_forwarder.alert_fields import (
    REPEATS_FIELD,
    REPEATS_FIRST_FIELD,
    REPEATS_LAST_FIELD,
    JujuTopology,
    output_fields,
    take_cluster,
)
from falco_forwarder.alert_time import alert_time_ns

# Loki refuses label values over 2048 characters by default (limits_config).
MAX_LABEL_CHARS: Final = 1024
USER_FIELD: Final = "ka.user.name"
NAMESPACE_FIELD: Final = "ka.target.namespace"
FOLDED_LABEL: Final = "folded"
# A summary's repeats, lifted to the top of its line under these names.
_REPEATS: Final = {
    REPEATS_FIELD: "repeats",
    REPEATS_FIRST_FIELD: "repeats_first",
    REPEATS_LAST_FIELD: "repeats_last",
}
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def loki_labels(alert: Mapping[str, Any], juju: JujuTopology, cluster: str = "") -> dict[str, str]:
    """The stream labels; empty values are left out (Loki treats them as absent anyway)."""
    labels = {
        "rule": alert.get("rule"),
        "priority": alert.get("priority"),
        "source": alert.get("source"),
        "cluster": cluster,
        "juju_model": juju.model,
        "juju_model_uuid": juju.model_uuid,
        "juju_application": juju.application,
        "juju_unit": juju.unit,
    }
    if REPEATS_FIELD in output_fields(alert):
        labels[FOLDED_LABEL] = "true"  # one more stream per rule, not one per count
    return {
        name: value[:MAX_LABEL_CHARS]
        for name, value in labels.items()
        if isinstance(value, str) and value.strip()
    }


def loki_line(alert: Mapping[str, Any], fields: dict[str, object]) -> str:
    """The log line: the alert's text and ``fields``, with user and namespace lifted to the top.

    A summary's repeats are lifted out of ``fields`` (they are not in the line twice).
    """
    repeats = {name: fields.pop(field, None) for field, name in _REPEATS.items()}
    line: dict[str, Any] = {
        "output": alert.get("output"),
        "user": fields.get(USER_FIELD),
        "namespace": fields.get(NAMESPACE_FIELD),
        "hostname": alert.get("hostname"),
        "tags": alert.get("tags"),
        "time": alert.get("time"),
        "output_fields": fields or None,
    }
    line.update(repeats)
    return _ENCODER.encode({key: value for key, value in line.items() if value is not None})


def encode_entry(
    alert: Mapping[str, Any],
    juju: JujuTopology,
    max_message_bytes: int | None = None,
    *,
    now: Callable[[], int] = time.time_ns,
) -> bytes:
    """One alert as a stream of its own: its labels and one ``[ns-timestamp, line]`` value.

    ``max_message_bytes`` is not used: Loki's own line limit is far above a Falco alert.
    """
    del max_message_bytes
    fields = output_fields(alert)
    cluster = take_cluster(fields)  # a label: not again in the line
    stream = {
        "stream": loki_labels(alert, juju, cluster),
        "values": [[str(alert_time_ns(alert.get("time"), now)), loki_line(alert, fields)]],
    }
    return _ENCODER.encode(stream).encode("utf-8", "replace")


def frame(entries: Sequence[bytes], juju: JujuTopology) -> bytes:
    """The push body for ``entries``, in order (the topology is in each entry's labels)."""
    del juju
    return b'{"streams":[' + b",".join(entries) + b"]}"
