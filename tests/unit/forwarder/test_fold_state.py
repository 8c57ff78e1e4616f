"""The fold state and its journal, alone: windows, bounds, snapshots, replay to a checkpoint."""

import json
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


def test_the_journal_empties_with_no_window_open_and_compacts_to_a_snapshot(
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

    assert len(journal.path.read_bytes().splitlines()) == 1  # one snapshot
    restored = FoldJournal(journal.path).load(end)
    assert restored.windows == fold.state.windows
    assert restored.held == fold.state.held

    fold.due(START + 120 * SECOND, None)
    journal.record(Position(1, 400, 4), fold.take_ops())
    journal.settle(Position(1, 400, 4), fold.state)
    assert journal.path.read_bytes() == b""


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
