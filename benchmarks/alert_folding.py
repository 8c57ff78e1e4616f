"""Folding repeats (``alert_dedup_window``): a flood of identical alerts plus a few distinct ones.

Falco appends ``--flood`` identical alerts (same rule, priority and key fields; only the
event's time and audit ID differ, as for a controller tripping a rule in a loop) with
``--distinct`` others spread among them. One forwarder delivers them to four sinks, one per
format, each to a receiver process of its own. Sides, each its own forwarder process, in
``--rounds`` interleaved rounds (medians): ``before`` (``--before``'s tree, no folding),
``off`` (this tree, window 0, the baseline) and ``folding`` (this tree, a ``--window`` s
window). Printed: the messages each sink received, and the forwarder's CPU seconds from the
first append until every alert was delivered or folded and every summary sent, with ratios
against ``off``.

    python3 benchmarks/alert_folding.py [--before main]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from harness import SRC, Forwarder, Receiver, config, free_port, scratch, source, wait

FORMATS = ("falco-json", "gelf", "loki", "otlp-json")
ID_FIELD = "bench.id"  # what the receiver counts: the flood is id 0, the distinct 1..n


def alert(number: int, user: str) -> bytes:
    """A k8s_audit alert written now; ``number`` only changes the per-event fields."""
    now = time.time_ns()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 10**9))
    return json.dumps(
        {
            "hostname": "falco-k8s-0",
            "output": f"Warning K8s Secret Get Successfully (user={user} secret=db ns=prod)",
            "priority": "Warning",
            "rule": "K8s Secret Get Successfully",
            "source": "k8s_audit",
            "tags": ["k8s"],
            "time": f"{stamp}.{now % 10**9:09d}Z",
            "output_fields": {
                ID_FIELD: 0 if user == "ci-bot" else int(user.rsplit("-", 1)[1]),
                "evt.time": now,
                "ka.auditid": f"audit-{number}",
                "ka.user.name": user,
                "ka.verb": "get",
                "ka.target.resource": "secrets",
                "ka.target.namespace": "prod",
                "ka.target.name": "db",
            },
        },
        separators=(", ", ": "),
    ).encode()


def flood(log: Path, count: int, distinct: int) -> int:
    """Append the flood with the distinct alerts spread among it, one write each; the lines."""
    every = max(count // max(distinct, 1), 1)
    extra = 0
    with log.open("ab", buffering=0) as stream:
        for number in range(count):
            stream.write(alert(number, "ci-bot") + b"\n")
            if number % every == every - 1 and extra < distinct:
                extra += 1
                stream.write(alert(number, f"user-{extra}") + b"\n")
    return count + extra


def run(src: Path, window: int, count: int, distinct: int) -> tuple[float, list[int]]:
    """(forwarder CPU seconds, messages each sink received) for one side."""
    tmp = scratch("folding")
    receivers = [Receiver() for _ in FORMATS]
    sinks = [(fmt, fmt, r.url(fmt)) for fmt, r in zip(FORMATS, receivers, strict=True)]
    port = free_port()
    path = config(tmp, sinks, port)
    if window:
        data = json.loads(path.read_text())
        data["dedup_window_seconds"] = window
        path.write_text(json.dumps(data))
    forwarder = Forwarder(src, path, port)
    cpu = forwarder.cpu_seconds()
    lines = flood(tmp / "log" / "falco.log", count, distinct)

    def settled() -> bool:
        metrics = forwarder.metrics()
        for fmt in FORMATS:
            delivered = metrics.get(f'falco_forwarder_delivered_total{{sink="{fmt}"}}', 0)
            folded = sum(v for k, v in metrics.items() if f'sink="{fmt}"' in k and "folded" in k)
            if delivered + folded != lines + (1 if folded else 0):  # one summary per sink
                return False
        return True

    wait(settled, 300, "every alert delivered or folded, and the summaries", every=0.1)
    cpu = forwarder.cpu_seconds() - cpu
    received = [r.count()[1] for r in receivers]
    forwarder.stop()
    for receiver in receivers:
        receiver.stop()
    return cpu, received


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="main", help="a src directory or a git ref")
    parser.add_argument("--flood", type=int, default=10_000)
    parser.add_argument("--distinct", type=int, default=10)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sides = {"before": (source(args.before), 0), "off": (SRC, 0), "folding": (SRC, args.window)}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    received: dict[str, list[int]] = {}
    for _ in range(args.rounds):
        for side, (src, window) in sides.items():
            seconds, counts = run(src, window, args.flood, args.distinct)
            cpu[side].append(seconds)
            received[side] = counts
    baseline = statistics.median(cpu["off"])
    print(
        f"{args.flood} identical alerts + {args.distinct} distinct, 4 sinks, window "
        f"{args.window} s (median of {args.rounds} rounds)"
    )
    for side in sides:
        counts = ", ".join(f"{fmt} {n}" for fmt, n in zip(FORMATS, received[side], strict=True))
        median = statistics.median(cpu[side])
        print(
            f"{side:>8}: forwarder CPU {median:.2f} s ({median / baseline:.2f}x off); "
            f"messages received: {counts}"
        )


if __name__ == "__main__":
    main()
