"""Costs of the alert-log queue against main's HTTP intake and spool, measured in one run.

- Disk per queued alert: bytes allocated on disk over the bytes of the alert's line, and files
  per alert (after: the log's segments and checkpoints; before: main's spool).
- Memory: the forwarder's RSS growth while alerts queue for a sink that is down (after: 0 to
  ``--queued`` alerts; before: main, over ``--queued-before`` posts, scaled per alert).
- Falco's side per alert: after, one append (open, write, close, as file_output with
  keep_alive false); before, one HTTP POST and its answer from main's forwarder, on a
  kept-alive connection as Falco's libcurl does.
- Delivery: alerts/s to two kept-alive sinks from a log of ``--alerts`` lines, the forwarder
  against a bare Python loop that reads the same log and POSTs each line to both sinks.

    python3 benchmarks/alert_log_costs.py
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import tempfile
import time
from pathlib import Path

from harness import (
    HOST,
    MAIN_SRC,
    SRC,
    Forwarder,
    Sink,
    after_config,
    append,
    before_config,
    free_port,
    wait,
)
from sample_alert import alert


def allocated(directory: Path) -> tuple[int, int]:
    """(bytes allocated on disk, files) below ``directory``."""
    size, files = 0, 0
    for root, _, names in os.walk(directory):
        for name in names:
            size += os.stat(os.path.join(root, name)).st_blocks * 512
            files += 1
    return size, files


def backlog(port: int) -> float:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(("falco_forwarder_backlog_bytes{", "falco_forwarder_queue_depth{"))
    )


def queue_after(count: int) -> tuple[int, int, int, int]:
    """(line bytes, disk bytes, files, RSS growth) for ``count`` alerts queued (sink down)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-after-"))
    sink, port = Sink(), free_port()
    sink.down = True
    forwarder = Forwarder(SRC, after_config(tmp, [sink], port), port)
    time.sleep(1)
    rss = forwarder.rss_bytes()
    log = tmp / "log" / "falco.log"
    written = sum(append(log, i) for i in range(count))
    wait(lambda: backlog(port) >= written, 120, "the backlog")
    time.sleep(1)
    grown = forwarder.rss_bytes() - rss
    disk, files = allocated(tmp / "log")
    state, state_files = allocated(tmp / "state")
    forwarder.stop()
    sink.stop()
    return written, disk + state, files + state_files, grown


def queue_before(count: int) -> tuple[int, int, int, int, float]:
    """As `queue_after` for main, plus Falco's seconds per POST and answer."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-before-"))
    sink, port = Sink(), free_port()
    sink.down = True
    forwarder = Forwarder(MAIN_SRC, before_config(tmp, [sink], port), port)
    time.sleep(1)
    rss = forwarder.rss_bytes()
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    written = 0
    started = time.perf_counter()
    for i in range(count):
        body = alert(i)
        connection.request("POST", "/", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        written += len(body)
    per_post = (time.perf_counter() - started) / count
    connection.close()
    time.sleep(1)
    grown = forwarder.rss_bytes() - rss
    disk, files = allocated(tmp / "spool")
    forwarder.stop()
    sink.stop()
    return written, disk, files, grown, per_post


def append_cost(count: int) -> float:
    """Seconds per append, as Falco's file_output with keep_alive false does it."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-append-"))
    started = time.perf_counter()
    for i in range(count):
        append(tmp / "falco.log", i)
    return (time.perf_counter() - started) / count


def delivery(count: int) -> tuple[float, float]:
    """Alerts/s to two kept-alive sinks: (the forwarder, a bare read-and-POST loop)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    (tmp / "log").mkdir()
    log = tmp / "log" / "falco.log"
    with log.open("wb") as stream:
        for i in range(count):
            stream.write(alert(i) + b"\n")

    sinks = [Sink(), Sink()]
    connections = [http.client.HTTPConnection(HOST, sink.port, timeout=10) for sink in sinks]
    started = time.perf_counter()
    with log.open("rb") as stream:
        for line in stream:
            body = line.rstrip(b"\n")
            json.loads(body)  # what any reader must do to skip a malformed line
            for connection in connections:
                connection.request("POST", "/", body, {"Content-Type": "application/json"})
                connection.getresponse().read()
    bare = count / (time.perf_counter() - started)
    for sink in sinks:
        sink.stop()

    sinks = [Sink(), Sink()]
    port = free_port()
    ready = log.rename(log.with_name("ready"))  # the forwarder finds it once it is running
    forwarder = Forwarder(SRC, after_config(tmp, sinks, port), port)
    started = time.perf_counter()
    ready.rename(log)
    wait(lambda: all(len(sink.ids) >= count for sink in sinks), 600, "delivery")
    forwarder_rate = count / (time.perf_counter() - started)
    forwarder.stop()
    for sink in sinks:
        sink.stop()
    return forwarder_rate, bare


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--queued-before", type=int, default=10_000)
    parser.add_argument("--appends", type=int, default=5_000)
    parser.add_argument("--alerts", type=int, default=20_000)
    args = parser.parse_args()

    line_a, disk_a, files_a, rss_a = queue_after(args.queued)
    line_b, disk_b, files_b, rss_b, post = queue_before(args.queued_before)
    print(
        f"disk per queued alert (allocated / line bytes): after {disk_a / line_a:.3f}x "
        f"({files_a} files for {args.queued} alerts); before {disk_b / line_b:.3f}x "
        f"({files_b} files for {args.queued_before} alerts); "
        f"ratio after/before {disk_a / line_a / (disk_b / line_b):.3f}"
    )
    print(
        f"RSS growth, 0 to {args.queued} alerts queued: after {rss_a / 1024:.0f} KiB "
        f"({rss_a / args.queued:.1f} B/alert); before {rss_b / 1024:.0f} KiB for "
        f"{args.queued_before} ({rss_b / args.queued_before:.1f} B/alert, "
        f"{rss_b / args.queued_before * args.queued / 2**20:.1f} MiB scaled to {args.queued})"
    )
    append_seconds = append_cost(args.appends)
    print(
        f"Falco's side per alert: after one append {append_seconds * 1e6:.1f} us; before one "
        f"HTTP POST and answer {post * 1e6:.1f} us; ratio before/after "
        f"{post / append_seconds:.1f}x"
    )
    forwarder_rate, bare = delivery(args.alerts)
    print(
        f"delivery to two kept-alive sinks, {args.alerts} alerts: forwarder "
        f"{forwarder_rate:.0f}/s, bare read-and-POST loop {bare:.0f}/s; ratio "
        f"{forwarder_rate / bare:.2f} (acceptance: >= 0.5)"
    )


if __name__ == "__main__":
    main()
