"""Alerts/s to a sink 20 ms away, for every sink kind, before and after, in one run.

The receiver (its own process) answers every request ``--delay`` seconds (default 0.02) after
it arrived, each connection on its own, as a distant Graylog, Loki or collector seems to a
client; the forwarder (its own process) delivers a backlog of ``--alerts`` alerts to one sink
of each kind in turn. Each alert is checked to arrive (the receiver reads their ids).

    python3 benchmarks/distant_sinks.py [--before main]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from harness import SRC, Forwarder, Receiver, config, free_port, scratch, source, wait, write_log

# The sink kinds the charm makes, by the format the forwarder sends and the status they answer.
KINDS = {
    "http_output (HTTP JSON)": ("falco-json", 200),
    "graylog (GELF)": ("gelf", 202),
    "falcosidekick (HTTP JSON)": ("falco-json", 200),
    "loki (push, batched)": ("loki", 204),
    "otlp (logs, batched)": ("otlp-json", 200),
}


def rate(src: Path, fmt: str, status: int, delay: float, count: int, limit: float) -> float:
    """Alerts/s delivered from a backlog of ``count`` (what arrived in ``limit`` s if less)."""
    tmp = scratch("distant")
    receiver, port = Receiver(delay, status), free_port()
    path = config(tmp, [("s", fmt, receiver.url(fmt))], port)
    ready = tmp / "ready"
    write_log(ready, count)
    forwarder = Forwarder(src, path, port)
    started = time.perf_counter()
    ready.rename(tmp / "log" / "falco.log")
    with contextlib.suppress(RuntimeError):  # too slow to finish: its rate so far
        wait(lambda: receiver.count()[0] >= count, limit, "delivery", every=0.05)
    arrived, elapsed = receiver.count()[0], time.perf_counter() - started
    forwarder.stop()
    receiver.stop()
    return arrived / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="main", help="a src directory or a git ref")
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--limit", type=float, default=20, help="seconds per side at most")
    args = parser.parse_args()
    sides = {"before": source(args.before), "after": SRC}
    print(f"{args.alerts} alerts to one sink answering {args.delay * 1e3:g} ms after each request")
    for kind, (fmt, status) in KINDS.items():
        rates = {side: rate(src, fmt, status, args.delay, args.alerts, args.limit)
                 for side, src in sides.items()}  # fmt: skip
        print(
            f"  {kind}: before {rates['before']:.0f}/s, after {rates['after']:.0f}/s "
            f"({rates['after'] / max(rates['before'], 1e-9):.1f}x)"
        )


if __name__ == "__main__":
    main()
