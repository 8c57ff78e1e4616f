"""What each part of the charm reports, and the one unit status made of all the reports.

Every part (Falco, the webhook, the forwarder and its sinks) returns a `Report`; only
`unit_status` turns them into what `juju status` shows, so there is one convention for every
message: reasons of the same weight joined by ``"; "``, at most `STATUS_MAX_CHARS` characters,
no control characters whatever the input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from options import InvalidStateError

STATUS_MAX_CHARS = 120
SEPARATOR = "; "
# C0 and C1 controls, DEL, and the Unicode marks that reorder or hide text in a terminal.
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")

StatusKind = Literal["blocked", "maintenance", "waiting", "active"]


@dataclass(frozen=True)
class Report:
    """One part's outcome: why it cannot converge (blocked, waiting), or notes worth a look."""

    blocked: str = ""
    """An operator must fix something (Blocked)."""
    maintenance: str = ""
    """The part is on its way and needs nobody (Maintenance)."""
    waiting: str = ""
    """The part waits for something else; the next hook retries (Waiting)."""
    notes: tuple[str, ...] = ()
    """Worth a look in an Active status (it comes first); dropped while blocked or waiting."""
    summary: tuple[str, ...] = ()
    """What the part does, for an Active status, after every part's notes."""

    @classmethod
    def refused(cls, error: InvalidStateError) -> Report:
        """The Blocked report of an operator-fixable problem."""
        return cls(blocked=str(error))


def unit_status(reports: Iterable[Report]) -> tuple[StatusKind, str]:
    """The unit's status from every part's report, weightiest first as ops orders statuses.

    With nothing blocked or waiting the unit is Active: every part's notes, then what each
    part does, as much as fits.
    """
    reports = list(reports)
    for kind in ("blocked", "maintenance", "waiting"):
        reasons = [getattr(report, kind) for report in reports if getattr(report, kind)]
        if reasons:
            return kind, status_message(reasons)
    notes = [note for report in reports for note in report.notes]
    summary = [part for report in reports for part in report.summary]
    return "active", status_message([*notes, *summary])


def status_message(parts: Iterable[str]) -> str:
    """Whole parts joined by the one separator, printable, as many as the status column shows.

    A part that does not fit is left out and the message ends with an ellipsis; a single part
    longer than the column is cut.
    """
    shown = ""
    for part in dict.fromkeys(UNPRINTABLE.sub("?", part) for part in parts if part):
        joined = f"{shown}{SEPARATOR}{part}" if shown else part
        if len(joined) > STATUS_MAX_CHARS:
            room = STATUS_MAX_CHARS - 1
            return (shown or part[:room]).rstrip()[:room] + "…"
        shown = joined
    return shown
