"""The alert log's bookkeeping across crashes and meddling: what is on disk, what is counted."""

import json
import logging
import os
from pathlib import Path

import pytest

from falco_forwarder.alert_log import RECORD, AlertLog
from falco_forwarder.checkpoint import Checkpoint, Position, parse, render

Drops = list[tuple[str, int, str]]


def open_log(directory: Path, drops: Drops | None = None, **limits: int) -> AlertLog:
    """The log in ``directory/log``, its state in ``directory/state``; drops go to ``drops``."""
    found: Drops = [] if drops is None else drops
    return AlertLog(
        directory / "log" / "falco.log",
        directory / "state",
        retention_bytes=limits.get("retention_bytes", 1 << 20),
        segment_bytes=limits.get("segment_bytes", 1 << 16),
        on_drop=lambda sink, count, reason: found.append((sink, count, reason)),
    )


def segment(directory: Path, number: int, text: bytes = b"{}\n") -> None:
    (directory / "log").mkdir(exist_ok=True)
    (directory / "log" / f"falco.log.{number:012d}").write_bytes(text)


def lines(count: int, start: int = 0) -> bytes:
    return b"".join(b'{"n": %04d}\n' % i for i in range(start, start + count))


def append(directory: Path, data: bytes) -> None:
    (directory / "log").mkdir(exist_ok=True)
    with (directory / "log" / "falco.log").open("ab") as stream:
        stream.write(data)


def record(directory: Path) -> dict[str, object]:
    return json.loads((directory / "state" / RECORD).read_text())


def test_a_rotation_killed_before_its_record_is_found_at_start(tmp_path: Path):
    segment(tmp_path, 5)  # renamed; the record still says 1, or was never written

    log = open_log(tmp_path)
    log.add_sinks(["s"])

    assert log.position("s") == (Position(5, 0, 0), 0)
    assert log.successor(5) is None  # the active segment, 6, is empty
    log.close()
    assert record(tmp_path)["active"] == 6


def test_an_unreadable_checkpoint_of_a_new_sink_starts_at_the_oldest_alert(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    segment(tmp_path, 3)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "s.checkpoint").write_bytes(b"garbage")

    log = open_log(tmp_path)
    log.add_sinks(["s"])

    assert log.position("s")[0] == Position(3, 0, 0)
    assert "checkpoint" in caplog.text
    assert "unreadable" in caplog.text
    log.close()


def test_a_checkpoint_outside_the_log_with_no_record_starts_at_the_oldest_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING)
    segment(tmp_path, 3)
    segment(tmp_path, 4)
    (tmp_path / "state").mkdir()
    old = Checkpoint(tmp_path / "state" / "s.checkpoint")
    old.write(Position(1, 100, 1))
    old.close()

    log = open_log(tmp_path)
    log.add_sinks(["s"])

    assert log.position("s")[0] == Position(3, 0, 0)
    assert "is outside the log" in caplog.text
    log.close()


def test_a_checkpoint_that_cannot_be_opened_keeps_the_sink_delivering_in_memory(tmp_path: Path):
    log = open_log(tmp_path)
    (tmp_path / "state" / "b.checkpoint").mkdir()

    log.add_sinks(["a", "b"])
    append(tmp_path, lines(2))
    assert log.commit("b", 0, Position(1, 9, 1))

    assert log.position("b")[0] == Position(1, 9, 1)
    assert log.checkpoint_errors() == {"a": "", "b": "Is a directory"}
    log.close()


def test_a_checkpoint_of_the_forwarder_before_line_numbers_is_read(tmp_path: Path):
    append(tmp_path, lines(5))
    (tmp_path / "state").mkdir()
    # The record main's forwarder wrote: "<segment> <offset>\n", no line, no CRC.
    offset = len(lines(3))
    (tmp_path / "state" / "s.checkpoint").write_bytes(b"%020d %020d\n" % (1, offset))

    log = open_log(tmp_path)
    log.add_sinks(["s"])

    assert log.position("s")[0] == Position(1, offset, 3)
    log.close()


@pytest.mark.parametrize("position", [Position(0, 0, 0), Position(7, 123456, 42)])
def test_a_checkpoint_record_round_trips_and_a_flipped_digit_is_caught(position: Position):
    raw = render(position)

    assert parse(raw) == position
    assert parse(raw.replace(b"1", b"2", 1) if b"1" in raw else raw[:-2] + b"x\n") is None


# -- meddling --------------------------------------------------------------------------------


def test_a_log_truncated_in_place_counts_what_was_cut_and_resumes_at_the_new_start(
    tmp_path: Path,
):
    drops: Drops = []
    append(tmp_path, lines(5))
    log = open_log(tmp_path, drops)
    log.add_sinks(["read", "behind"])
    log.maintain()  # counts the 5 lines
    assert log.commit("read", 0, Position(1, len(lines(5)), 5))
    assert log.commit("behind", 0, Position(1, len(lines(2)), 2))

    os.truncate(tmp_path / "log" / "falco.log", 0)
    append(tmp_path, lines(1, start=100))
    log.maintain()

    assert drops == [("behind", 3, "log_replaced")]
    assert log.position("read")[0] == Position(2, 0, 0)
    assert log.position("behind")[0] == Position(2, 0, 0)
    log.close()


def test_a_log_replaced_while_stopped_counts_what_was_lost_and_reads_the_new_one_whole(
    tmp_path: Path,
):
    append(tmp_path, lines(5))
    log = open_log(tmp_path)
    log.add_sinks(["s"])
    log.maintain()
    assert log.commit("s", 0, Position(1, len(lines(1)), 1))
    log.close()

    (tmp_path / "log" / "falco.log").unlink()
    append(tmp_path, lines(2, start=50))  # a new file, shorter than the checkpoint's offset
    drops: Drops = []
    log = open_log(tmp_path, drops)
    log.add_sinks(["s"])

    assert drops == [("s", 4, "log_replaced")]
    position = log.position("s")[0]
    assert (position.offset, position.line) == (0, 0)
    assert log.successor(1) == position.segment  # the old segment is left behind
    log.close()


def test_a_shorter_copy_of_the_same_log_resumes_at_its_end_without_resending(tmp_path: Path):
    append(tmp_path, lines(6))
    log = open_log(tmp_path)
    log.add_sinks(["s"])
    log.maintain()
    assert log.commit("s", 0, Position(1, len(lines(6)), 6))
    log.close()

    log_file = tmp_path / "log" / "falco.log"
    log_file.unlink()
    append(tmp_path, lines(4))  # a backup restored: a new inode, the same first lines
    drops: Drops = []
    log = open_log(tmp_path, drops)
    log.add_sinks(["s"])

    assert drops == []  # the sink had delivered every line that was cut
    position = log.position("s")[0]
    assert (position.offset, position.line) == (len(lines(4)), 4)
    log.close()


def test_a_damaged_checkpoint_resumes_at_the_start_of_the_segment_the_sink_was_in(
    tmp_path: Path,
):
    for number in (1, 2, 3):
        segment(tmp_path, number, lines(10))
    log = open_log(tmp_path)
    log.add_sinks(["s"])
    assert log.commit("s", 0, Position(3, len(lines(7)), 7))
    log.sync()
    log.close()
    (tmp_path / "state" / "s.checkpoint").write_bytes(b"\0" * 30)

    log = open_log(tmp_path)
    log.add_sinks(["s"])

    assert log.position("s")[0] == Position(3, 0, 0)  # 7 lines again, not 27
    log.close()


def test_retention_while_a_sink_was_not_configured_is_counted_when_it_comes_back(
    tmp_path: Path,
):
    drops: Drops = []
    size = len(lines(10))
    log = open_log(tmp_path, drops, retention_bytes=2 * size, segment_bytes=size)
    log.add_sinks(["stays", "leaves"])
    assert log.commit("leaves", 0, Position(1, len(lines(4)), 4))
    log.remove_sinks(["leaves"])
    for number in range(4):
        append(tmp_path, lines(10, start=10 * number))
        log.maintain()  # rotates each full segment; retention keeps two
    assert drops == [("stays", 10, "retention"), ("stays", 10, "retention")]

    drops.clear()
    log.add_sinks(["leaves"])

    # The rest of segment 1, and all of 2.
    assert drops == [("leaves", 6, "retention"), ("leaves", 10, "retention")]
    assert log.position("leaves")[0] == Position(3, 0, 0)
    log.close()
