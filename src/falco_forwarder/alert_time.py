"""When an alert happened, in the nanoseconds Loki and OTLP want, from Falco's RFC 3339 time."""

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

_FRACTION = re.compile(r"\.([0-9]{1,9})(?=[Zz+-]|$)")


def alert_time_ns(value: object, now: Callable[[], int] = time.time_ns) -> int:
    """Nanoseconds since the epoch of ``value``; the current time if it is not a zoned RFC 3339.

    Falco writes nanoseconds, which ``datetime`` would cut to microseconds: the fraction is read
    from the text itself.
    """
    if not isinstance(value, str):
        return now()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return now()
    if moment.tzinfo is None:
        return now()
    match = _FRACTION.search(value)
    nanos = int(match[1].ljust(9, "0")) if match else 0
    return int(moment.replace(microsecond=0).timestamp()) * 1_000_000_000 + nanos


def format_time_ns(nanos: int) -> str:
    """RFC 3339 in UTC with nanoseconds, as Falco writes an alert's ``time``."""
    seconds, fraction = divmod(nanos, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"
