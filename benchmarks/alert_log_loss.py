"""Alerts lost across forwarder kills, a forwarder stop and a sink outage; rotation under outage.

Falco is modelled at 50 alerts/s. "after": Falco appends to the alert log and this branch's
forwarder tails it. "before" (main): Falco's http_output posts each alert once, no retry, to
main's forwarder, which spools it. Same schedule for both, run side by side:

- 10 SIGKILLs of the forwarder at random moments, each restarted 0.5 s later (Pebble's first
  backoff), counting lost alerts and duplicates (at most one in-flight alert per kill);
- a stop of the forwarder for ``--seconds`` (default 60), and, at the same time, an outage of
  the sink for as long;
- rotation under outage (after only): retention 1 MiB, 64 KiB segments, the sink down while
  ~3 MB are written; the log on disk is sampled, and the dropped count must equal exactly the
  alerts in the removed segments, with the newest delivered in order once the sink is back.

    python3 benchmarks/alert_log_loss.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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

RATE = 50


@dataclass
class Falco:
    """Emits alert i every 1/RATE s, to the log (after) or by one POST each (before)."""

    emit: Callable[[int], bool]
    sent: int = 0
    failed: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Emit at RATE until stopped."""
        start = time.monotonic()
        while not self.stop.is_set():
            if not self.emit(self.sent):
                self.failed.append(self.sent)  # http_output does not retry: lost
            self.sent += 1
            self.stop.wait(max(0.0, start + self.sent / RATE - time.monotonic()))


def log_emitter(log: Path) -> Callable[[int], bool]:
    def emit(i: int) -> bool:
        append(log, i)
        return True

    return emit


def http_emitter(port: int) -> Callable[[int], bool]:
    def emit(i: int) -> bool:
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=5)
            connection.request("POST", "/", alert(i), {"Content-Type": "application/json"})
            ok = connection.getresponse().status == 200
            connection.close()
            return ok
        except OSError:
            return False

    return emit


@dataclass
class Setup:
    """One Falco, forwarder and sink, after or before."""

    name: str
    tmp: Path
    sink: Sink
    port: int
    src: Path
    config: Path
    falco: Falco
    forwarder: Forwarder | None = None

    @classmethod
    def make(cls, name: str, after: bool) -> Setup:
        """A setup with its own directory, sink and port."""
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        sink, port = Sink(), free_port()
        if after:
            config = after_config(tmp, [sink], port)
            emit = log_emitter(tmp / "log" / "falco.log")
        else:
            config = before_config(tmp, [sink], port)
            emit = http_emitter(port)
        return cls(name, tmp, sink, port, SRC if after else MAIN_SRC, config, Falco(emit))

    def start(self) -> None:
        """Start (or restart) the forwarder."""
        self.forwarder = Forwarder(self.src, self.config, self.port)

    def result(self) -> tuple[int, int]:
        """(lost, duplicates) once the sink has caught up (or 120 s passed)."""
        wanted = set(range(self.falco.sent)) - set(self.falco.failed)
        with contextlib.suppress(RuntimeError):
            wait(lambda: wanted <= set(self.sink.ids), 120, f"{self.name} to catch up")
        lost = self.falco.sent - len(set(self.sink.ids) & set(range(self.falco.sent)))
        duplicates = sum(count - 1 for count in self.sink.ids.values())
        return lost, duplicates


def run_kills(kills: int) -> None:
    setups = [Setup.make("kills-after", True), Setup.make("kills-before", False)]
    rng = random.Random(9)
    schedule = [rng.uniform(1.0, 3.0) for _ in range(kills)]
    threads = []
    for setup in setups:
        setup.start()
        threads.append(threading.Thread(target=setup.falco.run))
        threads[-1].start()

    for pause in schedule:
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
    results = {setup.name: setup.result() for setup in setups}
    for setup in setups:
        assert setup.forwarder is not None
        setup.forwarder.stop()
    (lost_a, dup_a), (lost_b, dup_b) = results["kills-after"], results["kills-before"]
    sent = setups[0].falco.sent
    print(f"{kills} SIGKILLs at {RATE} alerts/s ({sent} alerts each):")
    print(f"  after : lost {lost_a}, duplicates {dup_a} (bound: {kills}, one per kill)")
    print(
        f"  before: lost {lost_b} ({lost_b / max(setups[1].falco.sent, 1):.1%}), "
        f"duplicates {dup_b}"
    )


def outage(seconds: float) -> None:
    """A forwarder stop and a sink outage of ``seconds`` each, after and before, at once."""
    setups = {
        (kind, after): Setup.make(f"{kind}-{'after' if after else 'before'}", after)
        for kind in ("stop", "outage")
        for after in (True, False)
    }
    threads = []
    for setup in setups.values():
        setup.start()
        threads.append(threading.Thread(target=setup.falco.run))
        threads[-1].start()
    time.sleep(2)
    for (kind, _), setup in setups.items():
        assert setup.forwarder is not None
        if kind == "stop":
            setup.forwarder.stop()
        else:
            setup.sink.down = True
    time.sleep(seconds)
    for (kind, _), setup in setups.items():
        if kind == "stop":
            setup.start()
        else:
            setup.sink.down = False
    time.sleep(2)
    for setup, thread in zip(setups.values(), threads, strict=True):
        setup.falco.stop.set()
        thread.join()
    for (kind, after), setup in setups.items():
        lost, duplicates = setup.result()
        what = "forwarder stopped" if kind == "stop" else "sink down"
        side = "after " if after else "before"
        print(
            f"{seconds:g} s {what}, {side}: {setup.falco.sent} alerts, lost {lost}, "
            f"duplicates {duplicates}"
        )
        assert setup.forwarder is not None
        setup.forwarder.stop()


def rotation_under_outage() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-rotation-"))
    sink, port = Sink(), free_port()
    retention, segment = 1 << 20, 64 << 10
    config = after_config(tmp, [sink], port, retention=retention, segment=segment)
    sink.down = True
    forwarder = Forwarder(SRC, config, port)
    log = tmp / "log" / "falco.log"
    peak, total, count = 0, 0, 5000
    for i in range(count):
        total += append(log, i)
        if i % 50 == 0:
            time.sleep(0.1)  # ~500 alerts/s, ten times Falco's 50: rotation keeps up
            peak = max(peak, _on_disk(log.parent))
    time.sleep(0.5)
    peak = max(peak, _on_disk(log.parent))
    sink.down = False
    wait(lambda: _metric(port, "falco_forwarder_backlog_bytes") == 0, 60, "the backlog")
    dropped = _metric(port, "falco_forwarder_dropped_total", 'reason="retention"')
    delivered = sorted(sink.ids)
    newest_in_order = sink.order == list(range(count - len(delivered), count))
    forwarder.stop()
    print(
        f"rotation under outage: {count} alerts, {total} bytes written, retention {retention}"
        f" bytes, segments {segment} bytes"
    )
    print(
        f"  peak on disk {peak} bytes = {peak / retention:.3f}x retention"
        f" (bound: retention + one segment = {(retention + segment) / retention:.3f}x)"
    )
    print(
        f"  dropped (retention) {dropped:g} + delivered {len(delivered)} = "
        f"{dropped + len(delivered):g} of {count}; newest delivered in order: {newest_in_order}"
    )


def _on_disk(directory: Path) -> int:
    """Bytes of the segments in ``directory``; one removed while listing counts as gone."""
    total = 0
    for path in directory.iterdir():
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            continue
    return total


def _metric(port: int, name: str, label: str = "") -> float:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and label in line
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    run_kills(args.kills)
    outage(args.seconds)
    rotation_under_outage()


if __name__ == "__main__":
    main()
