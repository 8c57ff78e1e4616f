"""Faults around the alert log and the sinks (issue 21, items 1-8).

Every alert is delivered, or dropped and counted under a reason, and none is sent again
needlessly.
"""

import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from forwarder_helpers import (
    LOOPBACK,
    ForwarderFactory,
    SinkFactory,
    append_alert,
    append_line,
    encode,
    falco_alert,
    free_port,
    metric,
    sink_dict,
    wait_for,
    write_config,
)

from falco_forwarder.forwarder import Forwarder

REASONS = ("retention", "http_4xx", "http_other", "malformed", "unmappable")


def dropped(forwarder: Forwarder, sink: str, reason: str) -> float:
    return metric(forwarder.port, "falco_forwarder_dropped_total", sink=sink, reason=reason)


def no_drops(forwarder: Forwarder, sink: str) -> bool:
    return all(dropped(forwarder, sink, reason) == 0 for reason in REASONS)


def log_config(alerts_dir: Path, segment: int, retention: int = 1 << 20) -> dict[str, Any]:
    return {
        "file": str(alerts_dir / "log" / "falco.log"),
        "state_dir": str(alerts_dir / "state"),
        "retention_bytes": retention,
        "segment_bytes": segment,
    }


def bodies(start: int, count: int) -> list[bytes]:
    """Alerts of one length each (numbered 100 on), so that segments hold whole numbers of them."""
    return [encode(falco_alert(100 + i)) for i in range(start, start + count)]


# -- 1, 2: the log deleted, replaced or truncated --------------------------------------------


def test_a_log_deleted_and_created_again_while_running_is_delivered_whole(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    up, port = make_sink(), free_port()
    forwarder = make_forwarder(
        [sink_dict("up", up.url()), sink_dict("later", f"http://{LOOPBACK}:{port}/")]
    )
    before, after = bodies(0, 3), bodies(3, 3)
    for body in before:
        append_alert(forwarder, body)
    wait_for(lambda: up.bodies == before)

    forwarder.log.file.unlink()  # by hand, by a restore, by a volume re-attach
    for body in after:
        append_alert(forwarder, body)  # Falco creates the file again

    wait_for(lambda: up.bodies == before + after, what="the new file's alerts")
    later = make_sink(port=port)  # a sink that had read nothing of the deleted file
    wait_for(lambda: later.bodies == before + after, what="the deleted file's alerts too")
    assert no_drops(forwarder, "up")
    assert no_drops(forwarder, "later")


def test_a_log_replaced_while_stopped_is_read_from_its_start_and_the_loss_counted(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    up, port = make_sink(), free_port()
    sinks = [sink_dict("up", up.url()), sink_dict("down", f"http://{LOOPBACK}:{port}/")]
    first = make_forwarder(sinks)
    old = bodies(0, 5)
    for body in old:
        append_alert(first, body)
    wait_for(lambda: up.bodies == old)
    first.close()

    first.log.file.unlink()
    new = bodies(10, 2)  # a new file, shorter than what "up" had read of the old one
    for body in new:
        append_line(first.log.file, body)
    second = make_forwarder(sinks)
    down = make_sink(port=port)

    wait_for(lambda: up.bodies == old + new, what="the new file's alerts")
    wait_for(lambda: down.bodies == new)
    assert dropped(second, "down", "log_replaced") == 5  # never read, and gone
    assert dropped(second, "up", "log_replaced") == 0


def test_a_log_truncated_by_hand_while_running_resumes_at_its_new_start(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    old = bodies(0, 4)
    for body in old:
        append_alert(forwarder, body)
    wait_for(lambda: sink.bodies == old)

    os.truncate(forwarder.log.file, 0)
    new = bodies(4, 2)
    for body in new:
        append_alert(forwarder, body)

    wait_for(lambda: sink.bodies == old + new, what="the alerts after the truncation")
    assert no_drops(forwarder, "s")


def test_a_restored_older_copy_of_the_log_is_not_sent_again(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, tmp_path: Path
):
    sink = make_sink()
    sinks = [sink_dict("s", sink.url())]
    first = make_forwarder(sinks)
    old = bodies(0, 6)
    for body in old[:3]:
        append_alert(first, body)
    shutil.copy(first.log.file, tmp_path / "backup")  # a backup of the first three
    for body in old[3:]:
        append_alert(first, body)
    wait_for(lambda: sink.bodies == old)
    first.close()

    shutil.move(tmp_path / "backup", first.log.file)  # restored: a new inode, older content
    second = make_forwarder(sinks)
    new = bodies(6, 2)
    for body in new:
        append_alert(second, body)

    wait_for(lambda: len(sink.bodies) >= 8)
    time.sleep(0.3)
    assert sink.bodies == old + new  # the restored three are not sent again
    assert no_drops(second, "s")


# -- 3: a damaged checkpoint -----------------------------------------------------------------


def test_a_corrupt_checkpoint_resends_at_most_one_segment(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, alerts_dir: Path
):
    line = len(bodies(0, 1)[0]) + 1
    config = {"alert_log": log_config(alerts_dir, segment=10 * line)}
    port = free_port()
    sink = make_sink(port=port)
    first = make_forwarder([sink_dict("s", sink.url())], **config)
    sent = bodies(0, 35)
    for i, body in enumerate(sent):
        append_alert(first, body)
        if i % 10 == 9:  # a full segment: wait for its rotation, as at Falco's pace
            wait_for(lambda: not first.log.file.exists(), what="the rotation")
    wait_for(lambda: sink.bodies == sent)
    first.close()
    sink.stop()
    (alerts_dir / "state" / "s.checkpoint").write_bytes(b"\x00garbage after a disk error\n")

    again = make_sink(port=port)
    make_forwarder([sink_dict("s", again.url())], **config)
    wait_for(lambda: len(again.bodies) >= 5)
    time.sleep(0.5)

    assert again.bodies == sent[30:]  # the last segment, not the whole log


# -- 4: what the log loses, counted once ------------------------------------------------------


def test_a_line_over_16_mib_counts_as_one_malformed_drop(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, alerts_dir: Path
):
    sink = make_sink()
    alert_log = log_config(alerts_dir, segment=64 << 20, retention=128 << 20)
    forwarder = make_forwarder([sink_dict("s", sink.url())], alert_log=alert_log)
    good = encode(falco_alert())
    append_line(forwarder.log.file, b"x" * (33 << 20))  # two whole 16 MiB pieces and more
    append_alert(forwarder, good)

    wait_for(lambda: dropped(forwarder, "s", "malformed") == 1, timeout=30)
    assert sink.bodies == [good]
    assert metric(forwarder.port, "falco_forwarder_delivered_total", sink="s") == 1


def test_an_alert_after_a_write_cut_short_is_delivered_and_the_cut_one_counted(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    """A full volume cuts Falco's write short; its next alert lands after the cut part."""
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    cut, whole, later = bodies(0, 3)
    append_line(forwarder.log.file, cut[:200] + whole)
    append_alert(forwarder, later)

    wait_for(lambda: sink.bodies == [whole, later])
    assert dropped(forwarder, "s", "malformed") == 1


def test_alerts_retention_removed_while_a_sink_was_not_configured_are_counted_for_it(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, alerts_dir: Path, tmp_path: Path
):
    line = len(bodies(0, 1)[0]) + 1
    alert_log = log_config(alerts_dir, segment=10 * line, retention=20 * line)
    kept, away = make_sink(), make_sink()
    both = [sink_dict("kept", kept.url()), sink_dict("away", away.url())]
    forwarder = make_forwarder(both, alert_log=alert_log)
    sent = bodies(0, 50)
    for body in sent[:5]:
        append_alert(forwarder, body)
    wait_for(lambda: away.bodies == sent[:5])

    forwarder.reload(write_config(tmp_path, both[:1], alert_log=alert_log))
    for i, body in enumerate(sent[5:], start=5):
        append_alert(forwarder, body)
        if i % 10 == 9:
            wait_for(lambda: not forwarder.log.file.exists(), what="the rotation")
    wait_for(lambda: kept.bodies == sent)
    forwarder.reload(write_config(tmp_path, both, alert_log=alert_log))

    wait_for(
        lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="away") == 5 + 20
    )
    assert away.bodies == sent[:5] + sent[30:]
    assert dropped(forwarder, "away", "retention") == 25  # the three removed segments, less 5


def test_the_free_space_of_the_alert_log_volume_is_a_metric(make_forwarder: ForwarderFactory):
    forwarder = make_forwarder([])
    forwarder.log.file.parent.mkdir(parents=True, exist_ok=True)
    stats = os.statvfs(forwarder.log.file.parent)

    size = metric(forwarder.port, "falco_forwarder_alert_log_volume_size_bytes")
    free = metric(forwarder.port, "falco_forwarder_alert_log_volume_free_bytes")

    assert size == stats.f_blocks * stats.f_frsize
    assert 0 < free <= size
    assert abs(free - stats.f_bavail * stats.f_frsize) < 64 << 20  # others write meanwhile


# -- 5: a sink that answers slowly forever ----------------------------------------------------


@pytest.fixture
def trickling_sink() -> Iterator[int]:
    """A sink that sends its status line at once, then one byte of headers every 0.3 s."""
    listener = socket.create_server((LOOPBACK, 0))
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not stop.wait(0.3):
                    conn.sendall(b"X")
            except OSError:
                pass  # the forwarder gave up on it

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_a_sink_answering_a_byte_at_a_time_shows_down_and_holds_back_no_reload_or_stop(
    trickling_sink: int,
    make_sink: SinkFactory,
    alerts_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    retry = {"initial_seconds": 0.05, "max_seconds": 0.5, "timeout_seconds": 1.0}
    slow = [sink_dict("slow", f"http://{LOOPBACK}:{trickling_sink}/")]
    path = write_config(tmp_path, slow, retry=retry)
    from falco_forwarder.config import load_config  # noqa: PLC0415 - as the CLI reads it

    forwarder = Forwarder(load_config(path))
    forwarder.start()
    try:
        append_alert(forwarder, encode(falco_alert()))
        wait_for(lambda: metric(forwarder.port, "falco_forwarder_sink_up", sink="slow") == 0)
        assert "sink slow" in caplog.text
        assert "timed out" in caplog.text

        fresh = make_sink()
        reload = threading.Thread(
            target=forwarder.reload,
            args=(write_config(tmp_path, [sink_dict("fresh", fresh.url())], retry=retry),),
        )
        started = time.monotonic()
        reload.start()
        reload.join(10)
        assert not reload.is_alive(), "the reload waited on the stuck sink"
        assert time.monotonic() - started < 3
        wait_for(lambda: len(fresh.bodies) == 1, what="the new sink to get the alert")
    finally:
        stopping = threading.Thread(target=forwarder.close)
        started = time.monotonic()
        stopping.start()
        stopping.join(10)
    assert not stopping.is_alive(), "the stop waited on the stuck sink"
    assert time.monotonic() - started < 3
    del alerts_dir


# -- 7: a checkpoint that cannot be written ---------------------------------------------------


def test_a_checkpoint_that_cannot_be_written_is_reported_once_and_delivery_goes_on(
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    alerts_dir: Path,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.WARNING, logger="falco_forwarder")
    alerts_dir.mkdir()
    (alerts_dir / "state").write_text("a file where the checkpoints belong")
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    sent = bodies(0, 20)
    for body in sent:
        append_alert(forwarder, body)
        time.sleep(0.05)

    wait_for(lambda: sink.bodies == sent)
    time.sleep(1.5)  # the next syncs try again
    assert sink.bodies == sent  # each once: nothing in flight is sent again
    assert metric(forwarder.port, "falco_forwarder_checkpoint_saved", sink="s") == 0
    said = [
        r for r in caplog.records if "checkpoint" in r.getMessage() and "sink s" in r.getMessage()
    ]
    assert 1 <= len(said) <= 2  # at start, and once when the first sync fails
