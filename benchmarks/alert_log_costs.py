"""Costs of the alert-log forwarder, before and after, measured in one run.

- Disk per queued alert (bytes allocated over the line's bytes) and files, and the forwarder's
  RSS growth while ``--queued`` alerts queue for a sink that is down.
- Falco's side per alert: one append (open, write, close, as file_output with keep_alive false).
- Delivery on loopback, per format (Falco JSON, GELF): alerts/s to one kept-alive sink from a
  backlog of ``--alerts`` lines, the forwarder against the floor, a bare loop that reads the
  log and POSTs each line (benchmarks/bare_loop.py). Forwarder, floor and receiver each run as
  a process of their own; ``--rounds`` interleaved rounds, medians compared.

    python3 benchmarks/alert_log_costs.py [--before main]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import (
    SRC,
    Forwarder,
    Receiver,
    append,
    config,
    free_port,
    scratch,
    source,
    wait,
    write_log,
)


def allocated(directory: Path) -> tuple[int, int]:
    """(bytes allocated on disk, files) below ``directory``."""
    size, files = 0, 0
    for root, _, names in os.walk(directory):
        for name in names:
            size += os.stat(os.path.join(root, name)).st_blocks * 512
            files += 1
    return size, files


def queue(src: Path, count: int) -> tuple[int, int, int, int]:
    """(line bytes, disk bytes, files, RSS growth) for ``count`` alerts queued (sink down)."""
    tmp = scratch("queue")
    port = free_port()
    forwarder = Forwarder(
        src, config(tmp, [("s", "falco-json", "http://127.0.0.1:9/")], port), port
    )
    time.sleep(1)
    rss = forwarder.rss_bytes()
    log = tmp / "log" / "falco.log"
    written = sum(append(log, i) for i in range(count))
    wait(lambda: forwarder.metrics().get('falco_forwarder_backlog_bytes{sink="s"}') == written,
         120, "the backlog")  # fmt: skip
    time.sleep(1)
    grown = forwarder.rss_bytes() - rss
    disk, files = allocated(tmp / "log")
    state, state_files = allocated(tmp / "state")
    forwarder.stop()
    return written, disk + state, files + state_files, grown


def append_cost(count: int) -> float:
    """Seconds per append, as Falco's file_output with keep_alive false does it."""
    tmp = scratch("append")
    started = time.perf_counter()
    for i in range(count):
        append(tmp / "falco.log", i)
    return (time.perf_counter() - started) / count


def forwarder_rate(src: Path, fmt: str, count: int) -> float:
    """Alerts/s the forwarder delivers from a backlog of ``count`` to one sink of ``fmt``."""
    tmp = scratch("rate")
    receiver, port = Receiver(), free_port()
    path = config(tmp, [("s", fmt, receiver.url(fmt))], port)
    ready = tmp / "ready"
    write_log(ready, count)
    forwarder = Forwarder(src, path, port)
    started = time.perf_counter()
    ready.rename(tmp / "log" / "falco.log")  # the forwarder finds it once it is running
    wait(lambda: receiver.count()[0] >= count, 600, "delivery", every=0.01)
    rate = count / (time.perf_counter() - started)
    forwarder.stop()
    receiver.stop()
    return rate


def floor_rate(count: int) -> float:
    """Alerts/s of the bare read-and-POST loop, in its own process, to its own receiver."""
    tmp = scratch("floor")
    write_log(tmp / "falco.log", count)
    receiver = Receiver()
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("bare_loop.py")),
            *(str(tmp / "falco.log"), receiver.url()),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    receiver.stop()
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="main", help="a src directory or a git ref")
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=5_000)
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sides = {"before": source(args.before), "after": SRC}

    for side, src in sides.items():
        line, disk, files, rss = queue(src, args.queued)
        print(
            f"{side}: {args.queued} alerts queued: disk {disk / line:.4f}x their lines "
            f"({files} files), RSS +{rss / 1024:.0f} KiB ({rss / args.queued:.1f} B/alert)"
        )
    print(f"Falco's side per alert: one append {append_cost(args.appends) * 1e6:.1f} us")

    for fmt in ("falco-json", "gelf"):
        rates: dict[str, list[float]] = {"floor": [], "before": [], "after": []}
        for _ in range(args.rounds):
            rates["floor"].append(floor_rate(args.alerts))
            for side, src in sides.items():
                rates[side].append(forwarder_rate(src, fmt, args.alerts))
        floor = statistics.median(rates["floor"])
        shown = ", ".join(
            f"{side} {statistics.median(rates[side]):.0f}/s"
            f" ({statistics.median(rates[side]) / floor:.2f}x)"
            for side in sides
        )
        print(
            f"delivery of {args.alerts} alerts, {fmt}, one sink on loopback (median of "
            f"{args.rounds}): bare loop {floor:.0f}/s; {shown}"
        )


if __name__ == "__main__":
    main()
