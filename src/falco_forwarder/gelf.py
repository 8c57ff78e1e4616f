"""Map a Falco JSON alert to a GELF 1.1 message that Graylog always accepts.

`to_gelf` never fails on a JSON object: missing keys fall back to defaults,
``host`` and ``short_message`` are never blank, every additional field name matches
``^_[A-Za-z0-9_]+$`` and is none that Graylog drops or keeps for itself (``_id``,
``_source``, ``_gl2_*``...), no value is a boolean, null, empty or an integer Graylog would
wrap, and a message over the size limit is trimmed, never rejected.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from falco_forwarder.alert_fields import JujuTopology, output_fields, take_cluster
from falco_forwarder.alert_time import alert_time_ns

GELF_VERSION: Final = "1.1"
DEFAULT_LEVEL: Final = 6  # syslog "informational"
# Falco priorities in syslog severity order.
LEVELS: Final = {
    "emergency": 0,
    "alert": 1,
    "critical": 2,
    "error": 3,
    "warning": 4,
    "notice": 5,
    "informational": 6,
    "info": 6,
    "debug": 7,
}
MAX_FIELD_NAME: Final = 100
# Graylog strips the leading "_" of an additional field and then ignores the names it
# sets itself (or forbids, like id), and keeps gl2_* for its own bookkeeping: an output
# field with such a name is renamed field_<name> rather than lost.
_GRAYLOG_NAMES: Final = frozenset(
    {
        "id",
        "message",
        "full_message",
        "short_message",
        "source",
        "host",
        "timestamp",
        "level",
        "facility",
        "file",
        "line",
        "streams",
    }
)
# Graylog reads whole numbers as a signed 64-bit long, wrapping anything larger.
_LONG_RANGE: Final = range(-(2**63), 2**63)

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")

GelfMessage: TypeAlias = dict[str, str | int | float]


def to_gelf(
    alert: Mapping[str, Any],
    juju: JujuTopology,
    max_message_bytes: int | None = None,
    *,
    now: Callable[[], float] = time.time,
) -> GelfMessage:
    """Build the GELF message for ``alert``, trimmed to ``max_message_bytes`` once encoded.

    The size guarantee holds for any limit of at least 256 bytes; below that the
    message is made as small as the required fields allow.
    """
    output = _text(alert.get("output"))
    rule = _text(alert.get("rule"))
    priority = _text(alert.get("priority"))
    message: GelfMessage = {
        "version": GELF_VERSION,
        # Graylog refuses a blank host or short_message, not only an empty one.
        "host": _first_visible(_text(alert.get("hostname")), juju.unit, "falco"),
        "short_message": _first_visible(_text(alert.get("message")), output, rule, "falco alert"),
        "timestamp": _timestamp(alert.get("time"), now),
        "level": LEVELS.get(priority.strip().lower(), DEFAULT_LEVEL),
    }
    fields = output_fields(alert)
    identity = {
        "_falco_rule": rule,
        "_falco_priority": priority,
        "_falco_source": _text(alert.get("source")),
        "_falco_tags": _tags(alert.get("tags")),
        # What the gelf integrator's stream rules match on, with the model and application.
        "_cluster": take_cluster(fields),
        "_juju_model": juju.model,
        "_juju_model_uuid": juju.model_uuid,
        "_juju_application": juju.application,
        "_juju_unit": juju.unit,
    }
    if output:
        message["full_message"] = output
    message.update((key, value) for key, value in identity.items() if value)
    added = _add_output_fields(message, fields, taken=identity.keys())
    if max_message_bytes is not None:
        _fit(message, max_message_bytes, added, list(identity))
    return message


def encode(alert: Mapping[str, Any], juju: JujuTopology, max_message_bytes: int | None) -> bytes:
    """The GELF request body for one alert (its entry in the format table)."""
    return encode_gelf(to_gelf(alert, juju, max_message_bytes))


def encode_gelf(message: GelfMessage) -> bytes:
    """Encode ``message`` as compact UTF-8 JSON, the form whose size `to_gelf` bounds."""
    return _dumps(message)


@functools.lru_cache(maxsize=4096)
def field_name(key: str) -> str:
    """Turn an ``output_fields`` key into a GELF additional field name (before de-duplication).

    ``ka.user.name`` gives ``_ka_user_name`` and ``jevt.value[/requestObject/kind]``
    gives ``_jevt_value_requestObject_kind``; a name Graylog would drop or keep for
    itself gets a ``field_`` prefix (``source`` gives ``_field_source``). Cached: the same
    few dozen keys come back in every alert of a rule.
    """
    base = _NOT_ALNUM.sub("_", key).strip("_")[:MAX_FIELD_NAME].rstrip("_") or "field"
    if base in _GRAYLOG_NAMES or base.startswith("gl2_"):
        base = f"field_{base}"
    return f"_{base}"


@dataclass
class _AddedFields:
    """Names of the output fields added, split by how they may be trimmed."""

    cuttable: list[str] = field(default_factory=list[str])
    """Plain text, which stays meaningful when cut short."""
    whole: list[str] = field(default_factory=list[str])
    """Numbers and JSON-encoded lists or objects: cutting would make them wrong or invalid."""


def _add_output_fields(
    message: GelfMessage, fields: Mapping[str, object], taken: Collection[str]
) -> _AddedFields:
    """Add one field per output field, never over a name in ``message`` or ``taken``."""
    added = _AddedFields()
    # Sorted so that which of two colliding keys gets the suffix does not depend on key order.
    for key in sorted(fields):
        raw = fields[key]
        name = base = field_name(key)
        suffix = 2
        while name in message or name in taken:
            name = f"{base}_{suffix}"
            suffix += 1
        if isinstance(raw, str):
            message[name] = raw
            added.cuttable.append(name)
        else:
            message[name] = _field_value(raw)
            added.whole.append(name)
    return added


def _field_value(value: object) -> str | int | float:
    if isinstance(value, bool):
        return _text(value)
    if isinstance(value, int):
        return value if value in _LONG_RANGE else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return _text(value)


def _first_visible(*candidates: str) -> str:
    """The first candidate that is not blank, without surrounding whitespace."""
    return next(text for candidate in candidates if (text := candidate.strip()))


def _text(value: object) -> str:
    """Render any JSON value as a string; absent (None) becomes ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _tags(tags: object) -> str:
    if isinstance(tags, list):
        return ",".join(_text(tag) for tag in tags)  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    return _text(tags)


def _timestamp(value: object, now: Callable[[], float]) -> float:
    """Epoch seconds with millisecond precision, read as the Loki and OTLP sinks read it."""
    nanos = alert_time_ns(value, lambda: round(now() * 1_000_000_000))
    return ((nanos + 500_000) // 1_000_000) / 1000


_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _dumps(value: object) -> bytes:
    # Lone surrogates (valid in JSON escapes, invalid in UTF-8) become "?".
    return _ENCODER.encode(value).encode("utf-8", "replace")


def _size(value: object) -> int:
    return len(_dumps(value))


def _fit(message: GelfMessage, limit: int, added: _AddedFields, identity: list[str]) -> None:
    """Trim what matters least first, until the encoded message fits in ``limit`` bytes.

    Order: full_message; output fields, largest first (text cut short, numbers and JSON
    removed whole); short_message; the rule, cluster and Juju identity fields, removed whole
    (a cut rule name, cluster or model UUID would mislead stream rules); last, the host.
    """
    over = _size(message) - limit
    if over <= 0:
        return
    over = _shrink(message, "full_message", over, keep=0)
    by_size = sorted(added.cuttable + added.whole, key=lambda key: (-_size(message[key]), key))
    whole = set(added.whole)
    for key in by_size:
        if over <= 0:
            return
        over = _shrink(message, key, over, keep=0, whole=key in whole)
    over = _shrink(message, "short_message", over, keep=1)
    for key in reversed(identity):  # the rule, first in the list, goes last
        if over <= 0:
            return
        over = _shrink(message, key, over, keep=0, whole=True)
    _shrink(message, "host", over, keep=1)


def _shrink(message: GelfMessage, key: str, over: int, *, keep: int, whole: bool = False) -> int:
    """Cut ``message[key]`` by at least ``over`` encoded bytes if possible; return what is left.

    With ``keep=0`` a field that would end up empty, is not a string or is ``whole`` is
    removed, which also saves its name and a comma; otherwise ``keep`` characters are kept.
    """
    if over <= 0 or key not in message:
        return over
    value = message[key]
    old = _size(value)
    target = old - over
    if isinstance(value, str) and not whole:
        # Every character costs at least one byte, so the answer is below target - 1.
        lo, hi = 0, min(len(value), max(target - 1, 0))
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _size(value[:mid]) <= target:
                lo = mid
            else:
                hi = mid - 1
        if lo > 0 or keep > 0:
            message[key] = value[: max(lo, keep)]
            return over - (old - _size(message[key]))
    del message[key]
    return over - (_size(key) + 1 + old + 1)  # name, colon, value and a comma
