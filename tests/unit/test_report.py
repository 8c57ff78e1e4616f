"""The one unit status made of every part's report."""

from __future__ import annotations

import pytest

from options import InvalidStateError
from report import STATUS_MAX_CHARS, Report, status_message, unit_status


def test_the_weightiest_kind_wins_and_names_every_reason_of_that_kind():
    reports = [
        Report(waiting="waiting for Pebble in the falco container"),
        Report(blocked="minimum_priority: must be one of ..."),
        Report(notes=("no TLS: relate certificates",)),
        Report.refused(InvalidStateError("http_output: only http:// and https:// URLs")),
    ]

    assert unit_status(reports) == (
        "blocked",
        "minimum_priority: must be one of ...; http_output: only http:// and https:// URLs",
    )


def test_maintenance_outweighs_waiting_as_ops_orders_them():
    reports = [Report(waiting="forwarder container: gone"), Report(maintenance="starting Falco")]

    assert unit_status(reports) == ("maintenance", "starting Falco")


def test_active_lists_every_note_before_what_the_parts_do():
    reports = [
        Report(notes=("no TLS: relate certificates",), summary=("webhook http://10.1.2.3:9765",)),
        Report(notes=("Falco restarted",)),
        Report(notes=("graylog failing",), summary=("alerts to graylog",)),
    ]

    assert unit_status(reports) == (
        "active",
        "no TLS: relate certificates; Falco restarted; graylog failing;"
        " webhook http://10.1.2.3:9765; alerts to graylog",
    )


def test_what_does_not_fit_is_left_out_whole_and_the_status_says_so():
    parts = [f"sink-{n} failing, 3.2 MiB queued, 2 dropped (http_4xx 2)" for n in range(5)]

    message = status_message([*parts, "webhook http://10.1.2.3:9765/k8s-audit"])

    assert len(message) <= STATUS_MAX_CHARS
    assert message == f"{parts[0]}; {parts[1]}…"


def test_one_part_longer_than_the_column_is_cut():
    message = status_message(["disabled_rules matched nothing: " + "x" * 4 * 1024 * 1024])

    assert len(message) == STATUS_MAX_CHARS
    assert message.endswith("…")


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x9b", "\u202e", "\u2066", "\n", "\t"])
def test_no_control_character_reaches_the_status(char: str):
    message = status_message([f"disabled_rules matched nothing: evil{char}name"])

    assert message == "disabled_rules matched nothing: evil?name"


def test_a_part_said_twice_is_shown_once():
    assert status_message(["a", "b", "a"]) == "a; b"
