"""The alert log's bookkeeping across crashes: segment numbers and checkpoints found on disk."""

import logging
from pathlib import Path

import pytest

from falco_forwarder.alert_log import AlertLog
from falco_forwarder.checkpoint import Checkpoint, Position


def open_log(directory: Path) -> AlertLog:
    return AlertLog(
        directory / "log" / "falco.log",
        directory / "state",
        retention_bytes=1 << 20,
        segment_bytes=1 << 16,
        on_drop=lambda sink, count: None,
    )


def segment(directory: Path, number: int, text: bytes = b"{}\n") -> None:
    (directory / "log").mkdir(exist_ok=True)
    (directory / "log" / f"falco.log.{number:012d}").write_bytes(text)


def test_a_rotation_killed_before_its_record_is_found_at_start(tmp_path: Path):
    segment(tmp_path, 5)  # renamed; the record still says 1, or was never written

    log = open_log(tmp_path)
    log.add_sinks(["s"])

    assert log.position("s") == (Position(5, 0), 0)
    assert log.successor(5) is None  # the active segment, 6, is empty
    log.close()
    assert Checkpoint.open(tmp_path / "state" / "active-segment").position == Position(6, 0)


def test_an_unreadable_checkpoint_starts_over_at_the_oldest_alert(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    segment(tmp_path, 3)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "s.checkpoint").write_bytes(b"garbage")

    log = open_log(tmp_path)
    log.add_sinks(["s"])

    assert log.position("s")[0] == Position(3, 0)
    assert "checkpoint" in caplog.text
    assert "unreadable" in caplog.text
    log.close()


def test_a_checkpoint_in_a_removed_segment_starts_at_the_oldest_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING)
    segment(tmp_path, 3)
    segment(tmp_path, 4)
    (tmp_path / "state").mkdir()
    old = Checkpoint.open(tmp_path / "state" / "s.checkpoint")
    old.write(Position(1, 100))  # a sink removed, then back after retention took segment 1
    old.close()

    log = open_log(tmp_path)
    log.add_sinks(["s"])

    assert log.position("s")[0] == Position(3, 0)
    assert "alerts removed while it was not configured are not counted" in caplog.text
    log.close()


def test_a_sink_that_cannot_get_a_checkpoint_adds_no_sink(tmp_path: Path):
    log = open_log(tmp_path)
    (tmp_path / "state" / "b.checkpoint").mkdir()

    with pytest.raises(OSError, match="Is a directory"):
        log.add_sinks(["a", "b"])

    with pytest.raises(KeyError):
        log.position("a")
    log.close()
