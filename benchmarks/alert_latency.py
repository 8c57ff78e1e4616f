"""Latency from Falco's append to the sink, and the idle forwarder's CPU, before and after.

Falco is modelled at ``--rate`` alerts/s (default 200) for ``--seconds``: this process appends,
noting when; the receiver (its own process) notes when each alert arrives (both read the same
monotonic clock); the forwarder runs in its own process. Then the forwarder idles for
``--idle`` seconds and its CPU time over that span is its idle cost.

    python3 benchmarks/alert_latency.py [--before main]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from harness import SRC, Forwarder, Receiver, append, config, free_port, scratch, source, wait


def run(src: Path, rate: float, seconds: float, idle: float) -> tuple[list[float], float]:
    """(append-to-sink latencies in seconds, idle CPU share of one core)."""
    tmp = scratch("latency")
    receiver, port = Receiver(), free_port()
    forwarder = Forwarder(src, config(tmp, [("s", "falco-json", receiver.url())], port), port)
    log = tmp / "log" / "falco.log"
    count = int(rate * seconds)
    appended: dict[int, float] = {}
    start = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        appended[i] = time.monotonic()
        append(log, i)
    wait(lambda: receiver.count()[0] >= count, 60, "delivery")
    arrived = dict(receiver.arrivals())
    latencies = [arrived[i] - appended[i] for i in range(count)]
    time.sleep(2)  # settle: the last syncs and upkeep
    used = forwarder.cpu_seconds()
    time.sleep(idle)
    idle_share = (forwarder.cpu_seconds() - used) / idle
    forwarder.stop()
    receiver.stop()
    return latencies, idle_share


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="main", help="a src directory or a git ref")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--idle", type=float, default=30)
    args = parser.parse_args()
    results = {
        side: run(src, args.rate, args.seconds, args.idle)
        for side, src in {"before": source(args.before), "after": SRC}.items()
    }
    for side, (latencies, idle) in results.items():
        print(
            f"{side}: append to sink at {args.rate:g} alerts/s, {len(latencies)} alerts: "
            f"p50 {statistics.median(latencies) * 1e3:.2f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1e3:.2f} ms, "
            f"max {max(latencies) * 1e3:.2f} ms; "
            f"idle CPU {idle:.2%} of a core over {args.idle:g} s"
        )
    before, after = (results[side] for side in ("before", "after"))
    print(
        f"ratio after/before: p99 {percentile(after[0], 0.99) / percentile(before[0], 0.99):.2f},"
        f" idle CPU {after[1] / max(before[1], 1e-9):.2f}"
    )


if __name__ == "__main__":
    main()
