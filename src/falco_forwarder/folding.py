"""Folding repeated alerts for one sink: the first at once, then one summary per window.

Two alerts are the same when their rule, priority and source match and so does every output
field but those that differ for every event (its time, its audit ID): the user, verb, target
resource, subresource, namespace and name, the response code and decision, and whatever else
the rule prints (images, subjects, URI, command). Only ``k8s_audit`` alerts fold; Falco's
internal ones, and alert lines over `MAX_FOLDED_LINE` bytes, are always delivered.

The first alert of a kind opens its window and is delivered at once. The same alerts within
the window (by their own time) are folded; when the window closes, one summary goes out: the
first folded alert as Falco wrote it, with the count and the first and last time in output
fields (`alert_fields.REPEATS_FIELD`). A window closes when an alert read is past it, and, once
the worker has read all there is, when the forwarder's clock is.

The state changes only through ops (`FoldState.apply`): what the worker commits with a
checkpoint is exactly what the journal beside it replays after a kill (`fold_journal`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, TypeAlias

from falco_forwarder.alert_fields import (
    REPEATS_FIELD,
    REPEATS_FIRST_FIELD,
    REPEATS_LAST_FIELD,
    output_fields,
)
from falco_forwarder.alert_time import alert_time_ns, format_time_ns

FOLDED_SOURCE: Final = "k8s_audit"
# A folded alert is held until its summary goes: bounded per alert, per window and in all.
MAX_FOLDED_LINE: Final = 16 * 1024
MAX_WINDOWS: Final = 4096
MAX_HELD_BYTES: Final = 4 * 1024 * 1024
# Output fields that differ for every event, so never make two alerts different.
_PER_EVENT_PREFIXES: Final = (
    "evt.time",
    "evt.datetime",
    "evt.rawtime",
    "jevt.time",
    "jevt.rawtime",
)
_PER_EVENT_FIELDS: Final = frozenset({"evt.num", "ka.auditid"})
_PER_EVENT_POINTERS: Final = ("[/auditID]", "[/requestReceivedTimestamp]", "[/stageTimestamp]")
_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str
)

OPEN: Final = "open"
FOLD: Final = "fold"
CLOSE: Final = "close"
RESTORE: Final = "restore"
Op: TypeAlias = tuple[Any, ...]
"""(OPEN, key, opened ns), (FOLD, key, time ns, line or ""), (CLOSE, key), or
(RESTORE, key, opened, count, first, last, line): a whole window, as a snapshot has it."""


def per_event(field: str) -> bool:
    """Whether output ``field`` differs for every event (a time, an audit ID)."""
    return (
        field in _PER_EVENT_FIELDS
        or field.startswith(_PER_EVENT_PREFIXES)
        or field.endswith(_PER_EVENT_POINTERS)
    )


@dataclass
class Window:
    """One kind of alert: when its first came, and what was folded since."""

    opened: int
    count: int = 0
    first: int = 0
    last: int = 0
    alert: str = ""
    """The first folded alert's line, the summary's body."""


@dataclass(frozen=True)
class Candidate:
    """An alert that may fold: its kind, rule, time and line."""

    key: str
    rule: str
    time: int
    line: bytes


@dataclass(frozen=True)
class Summary:
    """What a closed window folded: ``count`` alerts from ``first`` to ``last``."""

    count: int
    first: int
    last: int
    alert: str

    def to_alert(self) -> dict[str, Any]:
        """The first folded alert, with the count and the first and last time as output fields."""
        alert: dict[str, Any] = json.loads(self.alert)
        fields = alert.get("output_fields")
        if not isinstance(fields, dict):
            fields = alert["output_fields"] = {}
        fields[REPEATS_FIELD] = self.count
        fields[REPEATS_FIRST_FIELD] = format_time_ns(self.first)
        fields[REPEATS_LAST_FIELD] = format_time_ns(self.last)
        return alert


def _utf8_size(line: str) -> int:
    """The bytes ``line`` takes as an alert line: `MAX_HELD_BYTES` and lines are in bytes."""
    return len(line.encode("utf-8", "replace"))


def falco_json(alert: Mapping[str, Any]) -> bytes:
    """``alert`` as Falco writes it: compact JSON, keys sorted (a summary for Falco-JSON sinks)."""
    return _ENCODER.encode(alert).encode("utf-8", "replace")


class FoldState:
    """The open windows, oldest first; changed only by `apply`."""

    def __init__(self) -> None:
        self.windows: dict[str, Window] = {}
        self.held = 0
        """Bytes (UTF-8) of folded alerts held for their summaries."""
        self.clock = 0
        """The newest alert time seen: windows older than the window by it are over."""

    def apply(self, op: Op) -> None:
        """Change the state by one op; KeyError or ValueError if it does not fit the state."""
        kind, key = op[0], op[1]
        if kind == OPEN:
            opened = op[2]
            if not isinstance(opened, int) or key in self.windows:
                raise ValueError(f"cannot open {op!r}")
            self.windows[key] = Window(opened)
            self.clock = max(self.clock, opened)
        elif kind == FOLD:
            window, at, line = self.windows[key], op[2], op[3]
            if not isinstance(at, int) or not isinstance(line, str):
                raise ValueError(f"cannot fold {op!r}")
            if window.count == 0:
                window.alert, window.first, window.last = line, at, at
                self.held += _utf8_size(line)
            window.first, window.last = min(window.first, at), max(window.last, at)
            window.count += 1
            self.clock = max(self.clock, at)
        elif kind == CLOSE:
            self.held -= _utf8_size(self.windows.pop(key).alert)
        elif kind == RESTORE:
            count, first, last, line = op[3:7]
            if not all(isinstance(n, int) for n in (count, first, last)) or not isinstance(
                line, str
            ):
                raise ValueError(f"cannot restore {op!r}")
            self.apply((OPEN, key, op[2]))
            window = self.windows[key]
            window.count, window.first, window.last, window.alert = count, first, last, line
            self.held += _utf8_size(line)
            self.clock = max(self.clock, window.last)
        else:
            raise ValueError(f"unknown op {op!r}")

    def snapshot(self) -> list[Op]:
        """The ops that rebuild this state on an empty one."""
        return [
            (RESTORE, key, w.opened, w.count, w.first, w.last, w.alert)
            for key, w in self.windows.items()
        ]

    def copy(self) -> FoldState:
        """An independent copy."""
        state = FoldState()
        state.windows = {key: replace(window) for key, window in self.windows.items()}
        state.held, state.clock = self.held, self.clock
        return state


class Folding:
    """Decides, alert by alert, what is delivered, folded or summed up; records each change."""

    def __init__(self, window_seconds: int, state: FoldState):
        """``window_seconds`` 0: nothing folds, and the windows ``state`` holds close at once."""
        self.window = window_seconds * 1_000_000_000
        self.state = state
        self._ops: list[Op] = []

    def candidate(self, alert: Mapping[str, Any], line: bytes) -> Candidate | None:
        """``alert`` (its ``line``) as one that may fold, or None if it never does."""
        rule, priority = alert.get("rule"), alert.get("priority")
        if (
            not self.window
            or alert.get("source") != FOLDED_SOURCE
            or len(line) > MAX_FOLDED_LINE
            or not isinstance(rule, str)
            or not isinstance(priority, str)
        ):
            return None
        fields = sorted((k, v) for k, v in output_fields(alert).items() if not per_event(k))
        kind = _ENCODER.encode([rule, priority, fields]).encode("utf-8", "replace")
        key = hashlib.blake2b(kind, digest_size=16).hexdigest()
        return Candidate(key, rule, alert_time_ns(alert.get("time")), line)

    def due(self, now: int | None, upcoming: Candidate | None) -> Summary | None:
        """Close the windows that end before ``upcoming`` (or by ``now``); one summary, if any.

        ``now`` is the time it is: the upcoming alert's, or the forwarder's clock once nothing
        more is to be read (None: only the alerts read say). Windows that folded nothing close
        quietly; call again until None before taking the upcoming alert.
        """
        state = self.state
        clock = state.clock if now is None else max(state.clock, now)
        while state.windows:
            own = state.windows.get(upcoming.key) if upcoming else None
            if upcoming and own and upcoming.time >= own.opened + self.window:
                victim = upcoming.key
            else:
                victim, oldest = next(iter(state.windows.items()))
                over = not self.window or oldest.opened + self.window <= clock
                if not (over or self._full(upcoming, own)):
                    return None
            summary = self._close(victim)
            if summary is not None:
                return summary
        return None

    def admit(self, candidate: Candidate) -> bool:
        """Fold ``candidate`` (True), or open its window and have it delivered (False).

        Call `due` until None first: its window, if any, is then open.
        """
        window = self.state.windows.get(candidate.key)
        if window is None:
            self._record((OPEN, candidate.key, candidate.time))
            return False
        line = "" if window.count else candidate.line.decode("utf-8", "replace")
        self._record((FOLD, candidate.key, candidate.time, line))
        return True

    def take_ops(self) -> list[Op]:
        """The changes since the last call, in order."""
        ops, self._ops = self._ops, []
        return ops

    def _full(self, upcoming: Candidate | None, own: Window | None) -> bool:
        """Whether taking ``upcoming`` would hold more windows or bytes than the bounds."""
        if upcoming is None:
            return False
        if own is None:
            return len(self.state.windows) >= MAX_WINDOWS
        return own.count == 0 and self.state.held + len(upcoming.line) > MAX_HELD_BYTES

    def _close(self, key: str) -> Summary | None:
        window = self.state.windows[key]
        self._record((CLOSE, key))
        if not window.count:
            return None
        return Summary(window.count, window.first, window.last, window.alert)

    def _record(self, op: Op) -> None:
        self.state.apply(op)
        self._ops.append(op)
