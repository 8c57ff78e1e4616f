"""A sink's lost alerts stay in the status for an hour after the last one, then go."""

from __future__ import annotations

import pytest

from sinks._drop_history import DROP_NOTE_HOLD_SECONDS, DropHistory

HOLD = DROP_NOTE_HOLD_SECONDS
T0 = 1_750_000_000.0


def test_drops_seen_for_the_first_time_are_shown():
    history = DropHistory().after({"graylog": {"http_4xx": 2}}, T0)

    assert history.recent(T0) == {"graylog": {"http_4xx": 2}}


def test_drops_stay_shown_through_the_hold_then_go():
    history = DropHistory().after({"graylog": {"http_4xx": 2}}, T0)

    still = history.after({"graylog": {"http_4xx": 2}}, T0 + HOLD - 1)
    gone = still.after({"graylog": {"http_4xx": 2}}, T0 + HOLD)

    assert still.recent(T0 + HOLD - 1) == {"graylog": {"http_4xx": 2}}
    assert gone.recent(T0 + HOLD) == {}
    assert history.recent(T0 + HOLD) == {}  # without a new read, the hold runs out too


def test_a_new_drop_during_the_hold_adds_to_the_spell_and_restarts_the_hold():
    history = DropHistory().after({"graylog": {"http_4xx": 2}}, T0)

    later = history.after({"graylog": {"http_4xx": 3, "retention": 5}}, T0 + HOLD / 2)

    shown = {"graylog": {"http_4xx": 3, "retention": 5}}
    assert later.recent(T0 + HOLD / 2 + HOLD - 1) == shown


def test_after_a_quiet_hold_only_the_new_drops_are_shown():
    history = DropHistory().after({"graylog": {"http_4xx": 2}}, T0)
    quiet = history.after({"graylog": {"http_4xx": 2}}, T0 + HOLD + 60)

    again = quiet.after({"graylog": {"http_4xx": 7}}, T0 + HOLD + 120)

    assert again.recent(T0 + HOLD + 120) == {"graylog": {"http_4xx": 5}}


def test_a_restarted_forwarder_counts_from_zero_so_its_counts_are_all_new():
    history = DropHistory().after({"graylog": {"http_4xx": 9}}, T0)
    quiet = history.after({"graylog": {"http_4xx": 9}}, T0 + HOLD + 1)

    restarted = quiet.after({"graylog": {"http_4xx": 4}}, T0 + HOLD + 2)

    assert restarted.recent(T0 + HOLD + 2) == {"graylog": {"http_4xx": 4}}


def test_each_sink_has_its_own_hold():
    history = DropHistory().after({"graylog": {"http_4xx": 1}}, T0)

    later = history.after({"graylog": {"http_4xx": 1}, "loki-0": {"retention": 3}}, T0 + HOLD)

    assert later.recent(T0 + HOLD) == {"loki-0": {"retention": 3}}


def test_the_remembered_text_gives_the_same_history():
    history = DropHistory().after({"graylog": {"http_4xx": 2}, "otlp-0": {}}, T0)

    recalled = DropHistory.recall(history.text())

    assert recalled == history
    assert recalled.text() == history.text()  # unchanged: nothing is written to the peer data


def test_a_quiet_unit_remembers_nothing():
    assert DropHistory().after({}, T0).text() == DropHistory().text()


@pytest.mark.parametrize(
    "text",
    ["", "not json", "[]", '{"counted": {"a": {"r": "x"}}, "spell": {}, "last_drop": {}}'],
)
def test_an_unreadable_memory_starts_afresh(text: str):
    assert DropHistory.recall(text) == DropHistory()
