"""The disk spool: order, persistence, the shared byte cap and failure handling."""

import errno
import os
import threading
from pathlib import Path

import pytest
from forwarder_helpers import wait_for

from falco_forwarder.spool import DISK_FULL, OVER_CAP, Entry, Spool

RUNNING = threading.Event()  # a consumer's stop event that is never set


class Drops(list[Entry]):
    """The spool's ``on_drop``: entries in drop order, and each one's reason in `reasons`."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: list[str] = []

    def __call__(self, entry: Entry, reason: str) -> None:
        self.append(entry)
        self.reasons.append(reason)


def make(root: Path, max_bytes: int = 1 << 20, sinks: tuple[str, ...] = ("a", "b")):
    dropped = Drops()
    spool = Spool(root, max_bytes, dropped)
    spool.add_sinks(sinks)
    return spool, dropped


def take(spool: Spool, sink: str) -> bytes:
    """Consume ``sink``'s oldest entry as its worker would after delivering it."""
    entry = spool.head(sink, RUNNING)
    assert entry is not None
    data = spool.read(entry)
    assert data is not None
    assert spool.remove(entry)
    return data


def drain(spool: Spool, sink: str) -> list[bytes]:
    out: list[bytes] = []
    while spool.depths()[sink]:
        out.append(take(spool, sink))
    return out


def test_every_sink_gets_every_alert_in_order(tmp_path: Path):
    spool, _ = make(tmp_path)
    for i in range(5):
        spool.put(b"alert %d" % i)

    assert spool.depths() == {"a": 5, "b": 5}
    assert spool.total_bytes() == 2 * 5 * len(b"alert 0")
    assert drain(spool, "a") == [b"alert %d" % i for i in range(5)]
    assert spool.depths() == {"a": 0, "b": 5}
    assert sorted(p.name for p in (tmp_path / "b").iterdir())[0] == f"{1:020d}.json"


def test_reloads_in_order_and_numbers_after_existing_entries(tmp_path: Path):
    first, _ = make(tmp_path)
    for i in range(12):  # more than 9, so lexical and numeric order would differ if unpadded
        first.put(b"%d" % i)

    second, _ = make(tmp_path)
    second.put(b"new")
    assert drain(second, "b") == [b"%d" % i for i in range(12)] + [b"new"]
    assert (tmp_path / "a" / f"{13:020d}.json").read_bytes() == b"new"


def test_cap_drops_the_oldest_across_sinks(tmp_path: Path):
    spool, dropped = make(tmp_path, max_bytes=10)
    spool.put(b"11")
    assert drain(spool, "a") == [b"11"]
    spool.put(b"22")
    spool.put(b"33")  # 2 + 4 + 4 = 10 bytes: fits
    assert dropped == []
    spool.put(b"44")  # over by 4: "11" for b and then "22" for a go (lowest numbers first)

    assert [(e.sink, e.seq) for e in dropped] == [("b", 1), ("a", 2)]
    assert dropped.reasons == [OVER_CAP, OVER_CAP]
    assert spool.total_bytes() == 10
    assert drain(spool, "a") == [b"33", b"44"]
    assert drain(spool, "b") == [b"22", b"33", b"44"]
    assert not dropped[0].path.exists()


def test_a_smaller_cap_applies_on_reload(tmp_path: Path):
    big, _ = make(tmp_path, sinks=("a",))
    for i in range(5):
        big.put(b"%d" % i)

    small, dropped = make(tmp_path, max_bytes=2, sinks=("a",))
    assert [e.seq for e in dropped] == [1, 2, 3]
    assert drain(small, "a") == [b"3", b"4"]


def test_a_dropped_head_is_no_longer_readable(tmp_path: Path):
    spool, _ = make(tmp_path, max_bytes=2, sinks=("a",))
    spool.put(b"1")
    head = spool.head("a", RUNNING)
    assert head is not None
    spool.put(b"2")
    spool.put(b"3")

    assert not spool.contains(head)
    assert spool.read(head) is None
    assert not spool.remove(head)


def test_read_tolerates_a_vanished_file(tmp_path: Path):
    spool, _ = make(tmp_path, sinks=("a",))
    spool.put(b"1")
    head = spool.head("a", RUNNING)
    assert head is not None
    head.path.unlink()

    assert spool.read(head) is None


def test_failed_write_spools_nothing(tmp_path: Path):
    spool, _ = make(tmp_path)
    (tmp_path / "b").rmdir()
    (tmp_path / "b").write_text("in the way")

    with pytest.raises(NotADirectoryError):
        spool.put(b"x")
    assert spool.depths() == {"a": 0, "b": 0}
    assert list((tmp_path / "a").iterdir()) == []


def _volume_holding(monkeypatch: pytest.MonkeyPatch, root: Path, links: int) -> None:
    """Make ``root`` behave like a volume with room for ``links`` spool entries, then ENOSPC."""
    real_link = os.link

    def link(src: Path, dst: Path) -> None:
        if len(list(root.glob("*/*.json"))) >= links:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)


def test_full_volume_drops_the_oldest_alert_for_every_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    spool, dropped = make(tmp_path)  # a byte cap the volume never lets it reach
    _volume_holding(monkeypatch, tmp_path, links=7)
    for i in range(3):
        spool.put(b"%d" % i)
    assert take(spool, "a") == b"0"  # "0" is now linked for b only: 5 links

    spool.put(b"3")  # 7 links: fits
    assert dropped == []
    # 9 would not fit: "0" (b only) goes first, which is not enough, then "1" for both sinks.
    spool.put(b"4")

    assert [(e.sink, e.seq) for e in dropped] == [("b", 1), ("a", 2), ("b", 2)]
    assert dropped.reasons == [DISK_FULL] * 3
    assert drain(spool, "a") == [b"2", b"3", b"4"]
    assert drain(spool, "b") == [b"2", b"3", b"4"]
    assert spool.total_bytes() == 0


def test_full_volume_drops_a_removed_sinks_leftovers_before_any_live_alert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    spool, dropped = make(tmp_path)
    for i in range(3):
        spool.put(b"%d" % i)
    spool.remove_sinks(["b"])  # b's three links stay on disk and keep the files in use
    _volume_holding(monkeypatch, tmp_path, links=6)

    spool.put(b"3")  # 7 links would not fit: b's leftovers go, a's queue is untouched

    assert [(e.sink, e.seq) for e in sorted(dropped, key=lambda e: e.seq)] == [
        ("b", 1),
        ("b", 2),
        ("b", 3),
    ]
    assert dropped.reasons == [DISK_FULL] * 3
    assert list((tmp_path / "b").iterdir()) == []
    assert drain(spool, "a") == [b"0", b"1", b"2", b"3"]


def test_full_volume_with_nothing_to_drop_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spool, dropped = make(tmp_path)
    _volume_holding(monkeypatch, tmp_path, links=0)

    with pytest.raises(OSError, match="No space left") as raised:
        spool.put(b"x")
    assert raised.value.errno == errno.ENOSPC
    assert dropped == []
    assert spool.depths() == {"a": 0, "b": 0}
    assert list(tmp_path.glob("**/*.json")) == []


def test_a_real_volume_out_of_inodes_keeps_the_newest_alerts(small_spool_volume: Path):
    """Real ENOSPC, far below the byte cap."""
    spool, dropped = make(small_spool_volume, max_bytes=1 << 20)
    for i in range(200):
        spool.put(b"alert %d" % i)

    kept = drain(spool, "a")
    assert len(kept) > 10
    assert kept == [b"alert %d" % i for i in range(200 - len(kept), 200)]
    assert drain(spool, "b") == kept
    assert set(dropped.reasons) == {DISK_FULL}
    assert len(dropped) == 2 * (200 - len(kept))


def test_head_waits_for_an_entry_and_stop_wakes_it(tmp_path: Path):
    spool, _ = make(tmp_path, sinks=("a",))
    stop = threading.Event()
    results: list[Entry | None] = []

    def consume() -> None:
        results.append(spool.head("a", stop))
        results.append(spool.head("a", stop))  # the same head until removed...
        assert results[-1] is not None
        spool.remove(results[-1])
        results.append(spool.head("a", stop))  # ...then blocks until stopped

    consumer = threading.Thread(target=consume)
    consumer.start()
    spool.put(b"1")
    wait_for(lambda: len(results) == 2)
    stop.set()
    spool.wake()
    consumer.join(timeout=5)

    assert not consumer.is_alive()
    assert results[0] == results[1]
    assert results[2] is None


def test_added_sink_loads_its_leftovers_and_numbers_after_them(tmp_path: Path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / f"{7:020d}.json").write_bytes(b"old")  # from an earlier run
    spool, _ = make(tmp_path, sinks=("a",))
    spool.put(b"1")

    spool.add_sinks(["b"])
    spool.put(b"2")

    assert spool.depths() == {"a": 2, "b": 2}
    assert spool.total_bytes() == 3 + 3 * len(b"1")
    assert drain(spool, "b") == [b"old", b"2"]
    assert (tmp_path / "a" / f"{8:020d}.json").read_bytes() == b"2"


def test_removed_sink_keeps_its_files_out_of_the_count(tmp_path: Path):
    spool, _ = make(tmp_path)
    spool.put(b"1")

    spool.remove_sinks(["b"])
    spool.put(b"2")

    assert spool.depths() == {"a": 2}
    assert spool.total_bytes() == 2
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [f"{1:020d}.json"]


def test_failed_add_adds_no_sink(tmp_path: Path):
    spool, _ = make(tmp_path, sinks=("a",))
    (tmp_path / "c").write_text("in the way")

    with pytest.raises(FileExistsError):
        spool.add_sinks(["b", "c"])
    spool.put(b"1")

    assert spool.depths() == {"a": 1}


def test_a_lower_cap_drops_the_oldest_at_once(tmp_path: Path):
    spool, dropped = make(tmp_path, sinks=("a",))
    for i in range(5):
        spool.put(b"%d" % i)

    spool.set_max_bytes(2)

    assert [e.seq for e in dropped] == [1, 2, 3]
    assert drain(spool, "a") == [b"3", b"4"]
