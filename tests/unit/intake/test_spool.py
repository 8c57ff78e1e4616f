"""The spool on a real filesystem: durable appends, recovery after a crash, settling, the cap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from audit_intake.spool import RECORD, SETTLED_FILE, Spool, SpoolFullError


def segments(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("*.seg"))


def test_an_appended_batch_is_in_its_segment_file_when_append_returns(tmp_path: Path):
    spool = Spool(tmp_path, 1 << 20)
    batch = spool.append(b'{"items":[]}')

    (name,) = segments(tmp_path)
    data = (tmp_path / name).read_bytes()
    assert data[batch.offset : batch.offset + batch.length] == b'{"items":[]}'
    assert spool.read(batch) == b'{"items":[]}'
    assert spool.unsettled == (1, RECORD.size + 12)


def test_after_a_restart_every_unsettled_batch_is_recovered_in_order(tmp_path: Path):
    spool = Spool(tmp_path, 1 << 20)
    bodies = [f"batch {n}".encode() for n in range(5)]
    batches = [spool.append(body) for body in bodies]
    spool.settle(batches[1].seq)
    spool.close()

    again = Spool(tmp_path, 1 << 20)

    assert [again.read(batch) for batch in again.recovered] == bodies[2:]
    assert again.append(b"next").seq == batches[-1].seq + 1


def test_a_torn_last_record_is_cut_off_and_the_rest_recovered(tmp_path: Path):
    spool = Spool(tmp_path, 1 << 20)
    spool.append(b"whole")
    spool.append(b"torn in the crash")
    spool.close()
    (name,) = segments(tmp_path)
    size = (tmp_path / name).stat().st_size
    os.truncate(tmp_path / name, size - 3)  # the crash hit mid-write: never answered 200

    again = Spool(tmp_path, 1 << 20)

    assert [again.read(batch) for batch in again.recovered] == [b"whole"]
    assert (tmp_path / name).stat().st_size == RECORD.size + len(b"whole")


def test_a_record_whose_bytes_changed_ends_the_recovery_of_its_segment(tmp_path: Path):
    spool = Spool(tmp_path, 1 << 20)
    spool.append(b"first")
    second = spool.append(b"second")
    spool.close()
    (name,) = segments(tmp_path)
    with (tmp_path / name).open("r+b") as file:
        file.seek(second.offset)
        file.write(b"S")

    assert [batch.seq for batch in Spool(tmp_path, 1 << 20).recovered] == [1]


def test_a_wholly_settled_segment_is_deleted_once_a_newer_one_is_written(tmp_path: Path):
    spool = Spool(tmp_path, 1 << 20, segment_bytes=RECORD.size + 100)
    first = spool.append(b"x" * 100)
    second = spool.append(b"y" * 100)  # does not fit the first segment: a second one
    assert len(segments(tmp_path)) == 2

    spool.settle(first.seq)

    assert segments(tmp_path) == [f"{second.seq:020d}.seg"]
    assert spool.disk_bytes == RECORD.size + 100
    assert (tmp_path / SETTLED_FILE).read_text() == f"{first.seq}\n"


def test_a_settled_spool_recovers_nothing(tmp_path: Path):
    spool = Spool(tmp_path, 1 << 20)
    last = [spool.append(b"b") for _ in range(3)][-1]
    spool.settle(last.seq)
    spool.close()

    again = Spool(tmp_path, 1 << 20)

    assert again.recovered == []
    assert again.unsettled == (0, 0)
    assert segments(tmp_path) == []


def test_the_cap_counts_unsettled_batches_and_refuses_past_it(tmp_path: Path):
    record = RECORD.size + 100
    spool = Spool(tmp_path, 2 * record)
    first = spool.append(b"a" * 100)
    spool.append(b"b" * 100)

    with pytest.raises(SpoolFullError):
        spool.append(b"c" * 100)
    spool.settle(first.seq)
    spool.append(b"c" * 100)

    assert spool.unsettled == (2, 2 * record)


def test_a_failed_write_leaves_no_partial_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spool = Spool(tmp_path, 1 << 20)
    spool.append(b"kept")

    def disk_full(fd: int, buffers: list[bytes]) -> int:
        os.write(fd, buffers[0][:5])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", disk_full)
    with pytest.raises(OSError, match="No space"):
        spool.append(b"lost")
    monkeypatch.undo()
    spool.append(b"after")
    spool.close()

    assert [b.seq for b in Spool(tmp_path, 1 << 20).recovered] == [1, 2]
