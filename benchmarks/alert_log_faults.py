"""Faults around the alert log and the sinks, before and after, in one run (issue 21).

For each fault: alerts written, delivered, counted as dropped (by reason), lost silently
(written, neither delivered nor counted) and sent twice. The forwarder and the receiver each
run as a process of their own; this process writes as Falco's file_output does, and meddles.
A stuck sink is measured in seconds: how long a SIGHUP that removes it, and a SIGTERM, take.

    python3 benchmarks/alert_log_faults.py [--before main]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import SRC, Forwarder, Receiver, append, config, free_port, scratch, source, wait
from sample_alert import alert

_DROPPED = re.compile(r'falco_forwarder_dropped_total\{reason="([a-z_0-9]+)",sink="s"\}')


@dataclass
class Run:
    """One fault on one side: a receiver, a forwarder, the log, and what was counted."""

    src: Path
    segment: int = 32 << 20
    tmp: Path = field(default_factory=lambda: scratch("fault"))
    receiver: Receiver = field(default_factory=Receiver)
    port: int = field(default_factory=free_port)
    forwarder: Forwarder | None = None
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter[str])

    def __post_init__(self) -> None:
        self.config = config(self.tmp, [("s", "falco-json", self.receiver.url())], self.port,
                             segment=self.segment)  # fmt: skip
        self.log = self.tmp / "log" / "falco.log"

    def start(self) -> None:
        """Start (or restart) the forwarder."""
        self.forwarder = Forwarder(self.src, self.config, self.port)

    def stop(self) -> None:
        """Stop the forwarder, keeping what it counted."""
        assert self.forwarder is not None
        self.dropped += self.counted()
        self.forwarder.stop()
        self.forwarder = None

    def counted(self) -> Counter[str]:
        """What the running forwarder counted as dropped, by reason."""
        assert self.forwarder is not None
        return Counter(
            {
                match[1]: value
                for series, value in self.forwarder.metrics().items()
                if (match := _DROPPED.fullmatch(series)) and value
            }
        )

    def write(self, count: int) -> None:
        """Append ``count`` alerts, numbered on."""
        for _ in range(count):
            append(self.log, self.written)
            self.written += 1

    def settle(self) -> str:
        """Wait until every alert is delivered or counted (20 s at most); the summary."""

        def done() -> bool:
            counted = sum((self.dropped + self.counted()).values())
            return self.receiver.count()[0] + counted >= self.written

        with contextlib.suppress(RuntimeError):
            wait(done, 20, "settling", 0.1)
        time.sleep(0.5)
        received = Counter(number for number, _ in self.receiver.arrivals())
        counted = self.dropped + self.counted()
        delivered = sum(1 for number in range(self.written) if received[number])
        lost = max(self.written - delivered - int(sum(counted.values())), 0)
        twice = sum(count - 1 for count in received.values())
        reasons = ", ".join(f"{reason} {count:g}" for reason, count in sorted(counted.items()))
        self.stop()
        self.receiver.stop()
        return (
            f"written {self.written}, delivered {delivered}, counted {sum(counted.values()):g}"
            f"{f' ({reasons})' if reasons else ''}, lost silently {lost}, sent twice {twice}"
        )


def deleted_while_running(run: Run) -> str:
    run.start()
    run.receiver.down()
    run.write(100)  # waiting for the sink
    time.sleep(0.5)
    run.log.unlink()
    run.write(100)  # Falco creates the file again
    time.sleep(0.5)
    run.receiver.down(False)
    return run.settle()


def replaced_while_stopped(run: Run) -> str:
    run.start()
    run.write(100)
    wait(lambda: run.receiver.count()[0] >= 100, 20, "delivery")
    run.receiver.down()
    run.write(50)  # waiting for the sink when the forwarder stops
    time.sleep(0.5)
    run.stop()
    run.log.unlink()
    run.write(30)  # a new file, shorter than the saved offset
    run.start()
    run.receiver.down(False)
    return run.settle()


def truncated_while_running(run: Run) -> str:
    run.start()
    run.write(100)
    wait(lambda: run.receiver.count()[0] >= 100, 20, "delivery")
    os.truncate(run.log, 0)
    run.write(50)
    return run.settle()


def corrupt_checkpoint(run: Run) -> str:
    run.start()
    for _ in range(20):  # 1000 alerts over several segments
        run.write(50)
        time.sleep(0.3)  # rotation keeps up
    wait(lambda: run.receiver.count()[0] >= 1000, 30, "delivery")
    run.stop()
    (run.tmp / "state" / "s.checkpoint").write_bytes(b"\0garbage after a disk error\n")
    run.start()
    run.write(10)
    line = len(alert(0)) + 1
    return f"{run.settle()}; a segment holds {run.segment // line} alerts"


def long_line(run: Run) -> str:
    run.start()
    with run.log.open("ab") as stream:
        stream.write(b"x" * (40 << 20) + b"\n")
    run.written += 1  # one line of garbage: an alert lost before the forwarder
    run.write(5)
    return run.settle()


def write_cut_short(run: Run) -> str:
    run.start()
    cut = alert(run.written)[:200]
    run.written += 1
    with run.log.open("ab") as stream:
        stream.write(cut + alert(run.written) + b"\n")
    run.written += 1
    run.write(5)
    return run.settle()


def retention_while_unconfigured(run: Run) -> str:
    data = json.loads(run.config.read_text())
    data["alert_log"].update(retention_bytes=256 << 10, segment_bytes=64 << 10)
    run.config.write_text(json.dumps(data))
    run.start()
    assert run.forwarder is not None
    run.write(100)
    wait(lambda: run.receiver.count()[0] >= 100, 20, "delivery")
    run.config.write_text(json.dumps({**data, "sinks": []}))  # the relation goes away
    run.forwarder.reload()
    for _ in range(20):
        run.write(100)  # about 1.2 MB while the sink is not configured
        time.sleep(0.3)
    run.config.write_text(json.dumps(data))  # and comes back
    run.forwarder.reload()
    return run.settle()


FAULTS: dict[str, tuple[Callable[[Run], str], int]] = {
    "log deleted and created again while running": (deleted_while_running, 32 << 20),
    "log replaced while the forwarder was stopped": (replaced_while_stopped, 32 << 20),
    "log truncated by hand while running": (truncated_while_running, 32 << 20),
    "checkpoint corrupt": (corrupt_checkpoint, 64 << 10),
    "a line over 16 MiB": (long_line, 64 << 20),
    "a write cut short before an alert": (write_cut_short, 32 << 20),
    "retention while the sink was not configured": (retention_while_unconfigured, 64 << 10),
}


def stuck_sink(src: Path) -> str:
    """Seconds until a SIGHUP removing a stuck sink applies, and until SIGTERM ends it all."""
    tmp = scratch("stuck")
    stuck, fresh, port = Receiver(trickle=True), Receiver(), free_port()
    path = config(tmp, [("stuck", "falco-json", stuck.url())], port)
    forwarder = Forwarder(src, path, port)
    append(tmp / "log" / "falco.log", 0)
    time.sleep(12)  # longer than the 10 s the charm's sinks wait for an answer
    up = forwarder.metrics().get('falco_forwarder_sink_up{sink="stuck"}')
    path.write_text(path.read_text().replace(stuck.url(), fresh.url()).replace("stuck", "fresh"))
    started = time.monotonic()
    forwarder.reload()
    try:
        wait(lambda: fresh.count()[0] >= 1, 30, "the new sink")
        applied = f"{time.monotonic() - started:.1f} s"
    except RuntimeError:
        applied = "not within 30 s"
    took = forwarder.stop(timeout=30)
    for receiver in (stuck, fresh):
        receiver.stop()
    return f"sink_up after 12 s {up:g}; reload applied in {applied}; SIGTERM took {took:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="main", help="a src directory or a git ref")
    args = parser.parse_args()
    sides = {"before": source(args.before), "after": SRC}
    for fault, (scenario, segment) in FAULTS.items():
        print(fault)
        for side, src in sides.items():
            print(f"  {side}: {scenario(Run(src, segment))}")
    print("a sink that answers a byte every 3 s")
    for side, src in sides.items():
        print(f"  {side}: {stuck_sink(src)}")
    shutil.rmtree(scratch("done"), ignore_errors=True)


if __name__ == "__main__":
    main()
