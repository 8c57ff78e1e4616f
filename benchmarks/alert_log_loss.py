"""Alerts lost across forwarder kills, a forwarder stop and a sink outage; rotation under outage.

Falco is modelled at 50 alerts/s appending to the alert log; the forwarder (this tree's
"after", and ``--before``'s) and the receiver each run as a process of their own. Same schedule
for both, side by side:

- 10 SIGKILLs of the forwarder at random moments, each restarted 0.5 s later (Pebble's first
  backoff), counting lost alerts and duplicates;
- a stop of the forwarder for ``--seconds`` (default 60), and, at the same time, an outage of
  the sink for as long;
- rotation under outage: retention 1 MiB, 64 KiB segments, the sink down while ~3 MB are
  written; the log on disk is sampled, and the dropped count must equal exactly the alerts in
  the removed segments, with the newest delivered in order once the sink is back.

    python3 benchmarks/alert_log_loss.py [--before main] [--seconds 60]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
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
)

RATE = 50


@dataclass
class Falco:
    """Appends alert i every 1/RATE s until stopped."""

    log: Path
    sent: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Append at RATE until stopped."""
        start = time.monotonic()
        while not self.stop.is_set():
            append(self.log, self.sent)
            self.sent += 1
            self.stop.wait(max(0.0, start + self.sent / RATE - time.monotonic()))


@dataclass
class Setup:
    """One Falco, forwarder and receiver."""

    name: str
    src: Path
    receiver: Receiver
    port: int
    config: Path
    falco: Falco
    forwarder: Forwarder | None = None

    @classmethod
    def make(cls, name: str, src: Path, **limits: int) -> Setup:
        """A setup with its own directory, receiver and port."""
        tmp = scratch(name)
        receiver, port = Receiver(), free_port()
        path = config(tmp, [("s", "falco-json", receiver.url())], port, **limits)
        return cls(name, src, receiver, port, path, Falco(tmp / "log" / "falco.log"))

    def start(self) -> None:
        """Start (or restart) the forwarder."""
        self.forwarder = Forwarder(self.src, self.config, self.port)

    def result(self) -> tuple[int, int]:
        """(lost, duplicates) once the sink has caught up (or 120 s passed)."""
        with contextlib.suppress(RuntimeError):
            wait(lambda: self.receiver.count()[0] >= self.falco.sent, 120, "catching up", 0.1)
        received = Counter(number for number, _ in self.receiver.arrivals())
        lost = sum(1 for i in range(self.falco.sent) if not received[i])
        return lost, sum(count - 1 for count in received.values())

    def close(self) -> None:
        """Stop the forwarder and the receiver."""
        if self.forwarder is not None:
            self.forwarder.stop()
        self.receiver.stop()


def run_kills(sides: dict[str, Path], kills: int) -> None:
    setups = [Setup.make(f"kills-{side}", src) for side, src in sides.items()]
    rng = random.Random(9)
    threads = [threading.Thread(target=setup.falco.run) for setup in setups]
    for setup, thread in zip(setups, threads, strict=True):
        setup.start()
        thread.start()
    for pause in [rng.uniform(1.0, 3.0) for _ in range(kills)]:
        time.sleep(pause)
        for setup in setups:
            assert setup.forwarder is not None
            setup.forwarder.kill()
        time.sleep(0.5)  # Pebble's first restart backoff
        for setup in setups:
            setup.start()
    time.sleep(1)
    for setup, thread in zip(setups, threads, strict=True):
        setup.falco.stop.set()
        thread.join()
    print(f"{kills} SIGKILLs at {RATE} alerts/s:")
    for setup in setups:
        lost, duplicates = setup.result()
        print(f"  {setup.name}: {setup.falco.sent} alerts, lost {lost}, duplicates {duplicates}")
        setup.close()


def outage(sides: dict[str, Path], seconds: float) -> None:
    """A forwarder stop and a sink outage of ``seconds`` each, for every side, at once."""
    setups = {
        (kind, side): Setup.make(f"{kind}-{side}", src)
        for kind in ("stop", "outage")
        for side, src in sides.items()
    }
    threads = [threading.Thread(target=setup.falco.run) for setup in setups.values()]
    for setup, thread in zip(setups.values(), threads, strict=True):
        setup.start()
        thread.start()
    time.sleep(2)
    for (kind, _), setup in setups.items():
        assert setup.forwarder is not None
        if kind == "stop":
            setup.forwarder.stop()
        else:
            setup.receiver.down()
    time.sleep(seconds)
    for (kind, _), setup in setups.items():
        if kind == "stop":
            setup.start()
        else:
            setup.receiver.down(False)
    time.sleep(2)
    for setup, thread in zip(setups.values(), threads, strict=True):
        setup.falco.stop.set()
        thread.join()
    for (kind, side), setup in setups.items():
        lost, duplicates = setup.result()
        what = "forwarder stopped" if kind == "stop" else "sink down"
        print(
            f"{seconds:g} s {what}, {side}: {setup.falco.sent} alerts, lost {lost}, "
            f"duplicates {duplicates}"
        )
        setup.close()


def rotation_under_outage(side: str, src: Path) -> None:
    retention, segment = 1 << 20, 64 << 10
    setup = Setup.make(f"rotation-{side}", src, retention=retention, segment=segment)
    setup.receiver.down()
    setup.start()
    log = setup.falco.log
    peak, total, count = 0, 0, 5000
    for i in range(count):
        total += append(log, i)
        if i % 50 == 0:
            time.sleep(0.1)  # ~500 alerts/s, ten times Falco's 50: rotation keeps up
            peak = max(peak, _on_disk(log.parent))
    time.sleep(0.5)
    peak = max(peak, _on_disk(log.parent))
    setup.receiver.down(False)
    assert setup.forwarder is not None
    forwarder = setup.forwarder
    wait(lambda: forwarder.metrics().get('falco_forwarder_backlog_bytes{sink="s"}') == 0, 60, "")
    dropped = forwarder.metrics()['falco_forwarder_dropped_total{reason="retention",sink="s"}']
    order = [number for number, _ in setup.receiver.arrivals()]
    newest_in_order = order == list(range(count - len(order), count))
    print(
        f"rotation under outage, {side}: {count} alerts, {total} bytes written, retention "
        f"{retention} bytes, segments {segment} bytes: peak on disk {peak / retention:.3f}x "
        f"retention (bound {(retention + segment) / retention:.3f}x); dropped (retention) "
        f"{dropped:g} + delivered {len(order)} = {dropped + len(order):g} of {count}; newest "
        f"delivered in order: {newest_in_order}"
    )
    setup.close()


def _on_disk(directory: Path) -> int:
    """Bytes of the segments in ``directory``; one removed while listing counts as gone."""
    total = 0
    for path in directory.iterdir():
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="main", help="a src directory or a git ref")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    sides = {"before": source(args.before), "after": SRC}
    run_kills(sides, args.kills)
    outage(sides, args.seconds)
    for side, src in sides.items():
        rotation_under_outage(side, src)


if __name__ == "__main__":
    main()
