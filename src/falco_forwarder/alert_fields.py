"""What every encoder reads from an alert in the same way: its output fields, empty ones left out.

Graylog drops an empty field silently, Loki and OTLP would carry it for nothing: a field whose
value is null or the empty string (``"ka.auth.reason": ""``) is left out by every encoder.
A summary of folded repeats (`falco_forwarder.folding`) carries its count and first and last
time as three more output fields, which each encoder shows in its sink's own idiom.
"""

from collections.abc import Mapping
from typing import Any, Final, Protocol

CLUSTER_FIELD: Final = "cluster"
"""The output field Falco adds to every rule's alert (the charm's ``cluster_name``)."""
REPEATS_FIELD: Final = "falco.repeats"
"""On a summary only: how many alerts, the same as it, it stands for."""
REPEATS_FIRST_FIELD: Final = "falco.repeats.first"
"""On a summary only: the time of the first of them (RFC 3339, as Falco writes ``time``)."""
REPEATS_LAST_FIELD: Final = "falco.repeats.last"
"""On a summary only: the time of the last of them."""


class JujuTopology(Protocol):
    """What every encoder reads of the unit's Juju identity (`config.JujuTopology` is one).

    Named here so the encoders need nothing from `config`, which lists them in its table.
    """

    @property
    def model(self) -> str:
        """The Juju model name."""
        ...

    @property
    def model_uuid(self) -> str:
        """The model's UUID."""
        ...

    @property
    def application(self) -> str:
        """The application name."""
        ...

    @property
    def unit(self) -> str:
        """The unit name, as ``falco-k8s/0``."""
        ...


def output_fields(alert: Mapping[str, Any]) -> dict[str, object]:
    """The alert's ``output_fields`` with string keys, without null or empty-string values."""
    raw = alert.get("output_fields")
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(key): value  # pyright: ignore[reportUnknownArgumentType]
        for key, value in raw.items()  # pyright: ignore[reportUnknownVariableType]
        if value is not None and value != ""
    }


def cluster_name(fields: Mapping[str, object]) -> str:
    """The cluster the alert names in its output ``fields``, or ""."""
    value = fields.get(CLUSTER_FIELD)
    return value if isinstance(value, str) else ""


def take_cluster(fields: dict[str, object]) -> str:
    """Remove the cluster name from ``fields`` and return it ("" and untouched when none).

    Each encoder shows it once, in its sink's idiom (GELF ``_cluster``, a Loki label, the OTLP
    resource), rather than again among the output fields.
    """
    cluster = cluster_name(fields)
    if cluster:
        del fields[CLUSTER_FIELD]
    return cluster
