"""Burst logging: the first failure at once, then counts, never one line per alert."""

import logging

import pytest

from falco_forwarder.burstlog import BurstLog


def test_logs_first_then_periodic_counts_then_the_end(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    now = [0.0]
    burst = BurstLog(logging.getLogger("test"), interval=60, clock=lambda: now[0])

    burst.event("sink %s down", "a")
    for _ in range(6):
        now[0] += 10
        burst.event("sink %s down", "a")  # the last is 60 s after the first: a report
    burst.event("sink %s down", "b")
    burst.end("sink %s back", "a")
    burst.end("sink %s back", "a")  # no burst on: nothing
    burst.event("sink %s down", "a")  # a new burst is logged at once

    assert [r.getMessage() for r in caplog.records] == [
        "sink a down",
        "6 more occurrences since the last report, latest: sink a down",
        "sink a back (1 more occurrences not logged)",
        "sink a down",
    ]
    assert [r.levelno for r in caplog.records] == [
        logging.WARNING,
        logging.WARNING,
        logging.INFO,
        logging.WARNING,
    ]
