"""The fold state and its journal, alone: windows, bounds, snapshots, replay to a checkpoint."""

import errno
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from forwarder_helpers import falco_alert

from falco_forwarder import fold_journal, folding
from falco_forwarder.alert_time import format_time_ns
from falco_forwarder.checkpoint import Position
from falco_forwarder.fold_journal import FoldJournal
from falco_forwarder.folding import Candidate, Folding, FoldState

SECOND = 1_000_000_000
START = 1_796_546_507 * SECOND


def candidate(fold: Folding, at: int, user: str = "admin", n: int = 0) -> Candidate:
    alert: dict[str, Any] = falco_alert(0, time=format_time_ns(at))
    alert["output_fields"].update({"ka.user.name": user, "evt.time": at, "ka.auditid": str(n)})
    made = fold.candidate(alert, json.dumps(alert).encode())
    assert made is not None
    return made


def take(fold: Folding, upcoming: Candidate) -> list[folding.Summary]:
    """Summaries due before ``upcoming``, then ``upcoming`` admitted."""
    summaries: list[folding.Summary] = []
    while summary := fold.due(None, upcoming):
        summaries.append(summary)
    fold.admit(upcoming)
    return summaries


def test_a_window_closes_when_an_alert_past_it_comes():
    fold = Folding(2, FoldState())
    assert take(fold, candidate(fold, START)) == []
    assert take(fold, candidate(fold, START + SECOND, n=1)) == []
    [summary] = take(fold, candidate(fold, START + 3 * SECOND, n=2))

    assert (summary.count, summary.first, summary.last) == (1, START + SECOND, START + SECOND)
    assert summary.to_alert()["output_fields"]["ka.auditid"] == "1"
    assert list(fold.state.windows) == [candidate(fold, START).key]  # opened again


def test_a_full_state_closes_its_oldest_window_early_with_its_summary(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(folding, "MAX_WINDOWS", 2)
    fold = Folding(60, FoldState())
    take(fold, candidate(fold, START, "a"))
    take(fold, candidate(fold, START + 1, "a", 1))
    take(fold, candidate(fold, START + 2, "b"))
    [summary] = take(fold, candidate(fold, START + 3, "c"))

    assert (summary.count, summary.first) == (1, START + 1)
    assert len(fold.state.windows) == 2


def test_held_alerts_are_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch):
    fold = Folding(60, FoldState())
    monkeypatch.setattr(folding, "MAX_HELD_BYTES", len(candidate(fold, START, "a").line) + 1)
    take(fold, candidate(fold, START, "a"))
    take(fold, candidate(fold, START + 1, "b"))
    take(fold, candidate(fold, START + 2, "a", 1))  # held: room for one alert
    [summary] = take(fold, candidate(fold, START + 3, "b", 1))  # no room for two

    assert (summary.count, summary.first) == (1, START + 2)
    assert fold.state.held == len(candidate(fold, START + 3, "b", 1).line)


def test_with_no_window_restored_windows_close_at_once():
    fold = Folding(60, FoldState())
    take(fold, candidate(fold, START))
    take(fold, candidate(fold, START + 1, n=1))

    off = Folding(0, fold.state.copy())
    assert off.due(START + 2, None) is not None
    assert not off.state.windows
    assert off.candidate(falco_alert(0), b"{}") is None


def opened_then_folded(path: Path) -> str:
    """A journal at ``path``: a window opened up to (1, 100), a repeat folded up to (1, 200)."""
    fold = Folding(60, FoldState())
    journal = FoldJournal(path)
    take(fold, candidate(fold, START))
    journal.record(Position(1, 100, 1), fold.take_ops())
    take(fold, candidate(fold, START + 1, n=1))
    journal.record(Position(1, 200, 2), fold.take_ops())
    journal.close()
    return candidate(fold, START).key


def test_the_journal_replays_only_up_to_the_checkpoint(tmp_path: Path):
    journal = FoldJournal(tmp_path / "s.folds")
    key = opened_then_folded(journal.path)

    assert FoldJournal(journal.path).load(Position(1, 200, 2)).windows[key].count == 1
    assert FoldJournal(journal.path).load(Position(1, 100, 1)).windows[key].count == 0


def test_the_journal_replays_its_snapshots_and_empties_with_no_window_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(fold_journal, "COMPACT_BYTES", 1)
    fold = Folding(60, FoldState())
    journal = FoldJournal(tmp_path / "s.folds")
    end = Position(1, 0, 0)
    for n in range(3):
        take(fold, candidate(fold, START + n, n=n))
        end = Position(1, 100 * (n + 1), n + 1)
        journal.record(end, fold.take_ops())
        journal.settle(end, fold.state)

    assert journal.path.read_bytes().startswith(b'[1,200,2,[["restore"')  # compacted
    restored = FoldJournal(journal.path).load(end)
    assert restored.windows == fold.state.windows
    assert restored.held == fold.state.held

    fold.due(START + 120 * SECOND, None)
    journal.record(Position(1, 400, 4), fold.take_ops())
    journal.settle(Position(1, 400, 4), fold.state)
    assert journal.path.read_bytes() == b""


@pytest.mark.parametrize("damage", [b"[0,0,0,[[]]]", b'[0,0,0,[["open"]]]', b"[" * 100_000])
def test_a_damaged_journal_line_ends_the_replay_like_a_cut_short_one(
    tmp_path: Path, damage: bytes
):
    journal = FoldJournal(tmp_path / "s.folds")
    key = opened_then_folded(journal.path)
    with journal.path.open("ab") as file:
        file.write(damage + b"\n")

    state = FoldJournal(journal.path).load(Position(1, 200, 2))

    assert state.windows[key].count == 1
    assert damage not in journal.path.read_bytes()  # rewritten away


def test_what_the_journal_did_not_replay_never_hides_what_comes_after(tmp_path: Path):
    journal = FoldJournal(tmp_path / "s.folds")
    key = opened_then_folded(journal.path)  # the kill came before the checkpoint reached 200

    restarted = FoldJournal(journal.path)
    state = restarted.load(Position(1, 100, 1))
    again = Folding(60, state)
    take(again, candidate(again, START + 2, n=2))
    restarted.record(Position(1, 200, 2), again.take_ops())
    restarted.close()

    window = FoldJournal(journal.path).load(Position(1, 200, 2)).windows[key]
    assert (window.count, window.first) == (1, START + 2)


ENOSPC, SHORT = "ENOSPC", "short"


def faulty_writes(monkeypatch: pytest.MonkeyPatch, folder: Path, faults: dict[int, str]) -> None:
    """Write n to a file in ``folder`` fails as ``faults[n]`` says: ENOSPC, or half written.

    What a full volume does to a write: it takes part of it, or none, and says so.
    """
    real, calls = os.write, itertools.count()

    def write(fd: int, data: bytes) -> int:
        mine = Path(os.readlink(f"/proc/self/fd/{fd}")).parent == folder
        fault = faults.get(next(calls)) if mine else None
        if fault == ENOSPC:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data[: len(data) // 2] if fault == SHORT else data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize(
    "faults",
    [{1: ENOSPC}, {1: SHORT}, {1: ENOSPC, 2: SHORT}, {1: ENOSPC, 2: ENOSPC}],
    ids=["append-fails", "append-short", "repair-short", "repair-fails-then-next"],
)
def test_a_failed_or_short_journal_write_loses_no_other_window(
    faults: dict[int, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Writes in order: 0 opens a, 1 opens b, then (after a failure) the repair's rewrite, then
    # the folds of both. Only what the checkpoint covers is asked of the journal.
    fold = Folding(60, FoldState())
    journal = FoldJournal(tmp_path / "s.folds")
    faulty_writes(monkeypatch, tmp_path, faults)
    end = Position(1, 0, 0)
    for n, batch in enumerate([["a"], ["b"], ["b", "a", "a", "a", "a", "a"]]):
        for user in batch:
            take(fold, candidate(fold, START + n, user, n))
        end = Position(1, 100 * (n + 1), n + 1)
        journal.record(end, fold.take_ops())
        journal.settle(end, fold.state)
    journal.close()

    restored = FoldJournal(journal.path).load(end)
    assert restored.windows == fold.state.windows
    assert [w.count for w in restored.windows.values()] == [5, 1]
    assert not journal.path.with_name("s.folds.new").exists()


def test_a_snapshot_is_rewritten_only_once_the_journal_doubled_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(fold_journal, "COMPACT_BYTES", 1)
    fold = Folding(60, FoldState())
    journal = FoldJournal(tmp_path / "s.folds")
    for user in "abcdefgh":  # windows holding an alert each: a snapshot far over 1 byte
        take(fold, candidate(fold, START, user))
        take(fold, candidate(fold, START + 1, user, 1))
    end = Position(1, 100, 1)
    journal.record(end, fold.take_ops())
    journal.settle(end, fold.state)
    snapshot = journal.path.stat().st_size
    assert len(journal.path.read_bytes().splitlines()) == 1

    lines, sizes = [1], [snapshot]  # after each settle: one more fold each
    for n in range(2, 1000):
        take(fold, candidate(fold, START + 2, "a", n))
        end = Position(1, 100 * n, n)
        journal.record(end, fold.take_ops())
        journal.settle(end, fold.state)
        lines.append(len(journal.path.read_bytes().splitlines()))
        sizes.append(journal.path.stat().st_size)
        if lines[-1] == 1:
            break
    # Appended to until the next fold would pass twice the snapshot, then one snapshot again.
    assert lines == [*range(1, len(lines)), 1]
    assert 2 * snapshot - 200 < sizes[-2] <= 2 * snapshot
    assert FoldJournal(journal.path).load(end).windows == fold.state.windows


def test_held_alerts_are_counted_in_the_bytes_they_take():
    fold = Folding(60, FoldState())
    alert: dict[str, Any] = falco_alert(0, time=format_time_ns(START))
    alert["output_fields"]["ka.user.name"] = "ユーザー"  # Falco writes UTF-8 as it is
    line = json.dumps(alert, ensure_ascii=False).encode()
    repeat = fold.candidate(alert, line)
    assert repeat is not None
    take(fold, repeat)
    take(fold, repeat)

    assert fold.state.held == len(line) > len(line.decode())
