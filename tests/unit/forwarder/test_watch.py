"""The log watch: inotify on the alert log's directory, a timer where it cannot watch."""

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from falco_forwarder.watch import LogWatch


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[LogWatch, threading.Event]]:
    watch = LogWatch(tmp_path)
    changed = threading.Event()
    watch.subscribe(changed.set)
    watch.start()
    yield watch, changed
    watch.stop()


def test_a_write_in_the_directory_wakes_the_subscribers_through_inotify(
    watched: tuple[LogWatch, threading.Event], tmp_path: Path
):
    watch, changed = watched
    threading.Event().wait(0.2)  # the watch is set up
    changed.clear()
    assert watch.watching  # inotify through ctypes, not the timer

    (tmp_path / "falco.log").write_bytes(b"{}\n")

    assert changed.wait(2)
    threading.Event().wait(0.2)  # the create, write and close events
    changed.clear()
    assert not changed.wait(0.3)  # then nothing: no timer


def test_without_the_directory_the_timer_wakes_the_subscribers_until_it_exists(tmp_path: Path):
    watch = LogWatch(tmp_path / "log")
    changed = threading.Event()
    watch.subscribe(changed.set)
    watch.start()
    try:
        assert changed.wait(1)
        assert not watch.watching
        (tmp_path / "log").mkdir()
        threading.Event().wait(0.3)
        assert watch.watching  # from then on, inotify
    finally:
        watch.stop()


def test_an_unsubscribed_callback_is_not_called(tmp_path: Path):
    watch = LogWatch(tmp_path / "not-yet")
    calls: list[int] = []
    watch.subscribe(lambda: calls.append(1))
    watch.unsubscribe(watch._subscribers[0])
    watch.unsubscribe(print)  # never subscribed: nothing happens
    watch.start()
    threading.Event().wait(0.2)
    watch.stop()
    assert calls == []
