"""Sink outage benchmark: are alerts lost while a sink is down under steady flow? Run by hand.

Measures the criterion "with a sink stopped for 30 s under steady alert flow, 0 alerts
lost once it returns". Everything runs in this process on 127.0.0.1: a GELF-like sink
and an always-up falco-json sink (stdlib HTTP servers recording each alert's unique
id), and the forwarder with real sockets and a real spool in a temporary directory.
One kept-alive client POSTs alerts at a steady rate, as Falco's libcurl does; the GELF
sink's listening socket is closed at ``--outage-start`` (connections refused) and
reopened on the same port ``--outage-length`` seconds later. Exits 1 if any
acknowledged alert is missing from a sink, or if any POST did not get a 2xx.

    .venv/bin/python benchmarks/sink_outage.py
    .venv/bin/python benchmarks/sink_outage.py --duration 12 --outage-start 3 --outage-length 5
"""

import argparse
import contextlib
import http.client
import json
import logging
import re
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from sample_alert import ID_FIELD, alert

from falco_forwarder.config import config_from_dict
from falco_forwarder.forwarder import Forwarder

HOST = "127.0.0.1"
GELF_SINK = "gelf"
JSON_SINK = "falco-json"
SAMPLE_SECONDS = 0.02  # queue depth sampling period
FLOW_SLACK_SECONDS = 30.0  # the flow is abandoned this long after its planned end
CLIENT_TIMEOUT_SECONDS = 10.0


def _gelf_id(message: dict[str, Any]) -> int:
    return message["_bench_id"]


def _falco_id(alert: dict[str, Any]) -> int:
    return alert["output_fields"][ID_FIELD]


class Sink:
    """A loopback HTTP sink counting alert ids; `stop` refuses connections, `start` reopens."""

    def __init__(self, name: str, status: int, id_of: Callable[[dict[str, Any]], int]):
        self.name = name
        self.status = status
        self.id_of = id_of
        self.lock = threading.Lock()
        self.counts: Counter[int] = Counter()
        self.first_at: float | None = None  # first alert since the last start
        self.handler_errors = 0  # e.g. a reply cut off by `stop`
        self.port = 0
        self._server: _SinkServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen (on the same port as before, if started before) and serve."""
        self._server = _SinkServer((HOST, self.port), self)
        self.port = self._server.server_address[1]
        with self.lock:
            self.first_at = None
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"sink-server-{self.name}"
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, sever kept-alive connections, close the listening socket."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.shutdown()  # no process_request after this returns: the set below is complete
        with self.lock:
            connections = list(server.connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # the peer may have closed it already
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()  # joins the handler threads
        thread.join()

    def record(self, body: bytes) -> None:
        """Count the alert id in ``body``."""
        alert_id = self.id_of(json.loads(body))
        with self.lock:
            self.counts[alert_id] += 1
            if self.first_at is None:
                self.first_at = time.monotonic()

    def received(self) -> Counter[int]:
        """A copy of the per-id counts."""
        with self.lock:
            return Counter(self.counts)


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], sink: Sink):
        self.sink = sink
        self.connections: set[socket.socket] = set()
        super().__init__(address, _SinkHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Tracked in the accept loop, so `Sink.stop` cannot miss a just-accepted connection.
        with self.sink.lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sink.lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        with self.sink.lock:
            self.sink.handler_errors += 1


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30.0  # bounds how long a silent connection can hold up `Sink.stop`

    def do_POST(self) -> None:
        sink: Sink = self.server.sink  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sink.record(body)  # before the answer, as a real sink ingests before replying
        self.send_response(sink.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Flow:
    """What the client sent: acknowledged ids, failures, timings."""

    acked: set[int] = field(default_factory=set)
    failed: list[tuple[int, str]] = field(default_factory=list)
    slowest: float = 0.0
    started_at: float = 0.0
    ended_at: float = 0.0


def drive(
    port: int, rate: float, count: int, t0: float, stop: threading.Event, flow: Flow
) -> None:
    """POST alerts 0..count-1, alert i at t0 + i/rate, on one kept-alive connection."""
    conn: http.client.HTTPConnection | None = None
    deadline = t0 + count / rate + FLOW_SLACK_SECONDS
    flow.started_at = t0
    try:
        for i in range(count):
            if stop.wait(max(0.0, t0 + i / rate - time.monotonic())):
                break
            if time.monotonic() > deadline:
                flow.failed.extend((j, "not sent: flow too far behind") for j in range(i, count))
                break
            if conn is None:
                conn = http.client.HTTPConnection(HOST, port, timeout=CLIENT_TIMEOUT_SECONDS)
            began = time.monotonic()
            try:
                conn.request("POST", "/", alert(i), {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as e:
                flow.failed.append((i, f"{type(e).__name__}: {e}"))
                conn.close()
                conn = None
                continue
            flow.slowest = max(flow.slowest, time.monotonic() - began)
            if 200 <= response.status < 300:
                flow.acked.add(i)
            else:
                flow.failed.append((i, f"HTTP {response.status}"))
            if response.will_close:
                conn.close()
                conn = None
    finally:
        if conn is not None:
            conn.close()
        flow.ended_at = time.monotonic()


@dataclass
class Depths:
    """Queue depth samples: peak per sink, and when the GELF queue first emptied after restart."""

    peak: Counter[str] = field(default_factory=Counter)
    restarted_at: float | None = None
    drained_at: float | None = None
    backlog_at_restart: int = 0


def sample(forwarder: Forwarder, depths: Depths, stop: threading.Event) -> None:
    """Sample the spool's queue depths every SAMPLE_SECONDS until ``stop``."""
    while not stop.wait(SAMPLE_SECONDS):
        now = time.monotonic()
        for sink, depth in forwarder.spool.depths().items():
            depths.peak[sink] = max(depths.peak[sink], depth)
            if (
                sink == GELF_SINK
                and depth == 0
                and depths.restarted_at is not None
                and depths.drained_at is None
            ):
                depths.drained_at = now


def scrape(port: int) -> dict[str, float]:
    """The forwarder's /metrics as {'name{labels}': value}."""
    conn = http.client.HTTPConnection(HOST, port, timeout=CLIENT_TIMEOUT_SECONDS)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {m[1]: float(m[2]) for m in re.finditer(r"^([^#\s]\S*) (\S+)$", text, re.MULTILINE)}


def refuses(port: int) -> bool:
    """Whether a TCP connection to ``port`` is refused."""
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def forwarder_config(tmp: Path, gelf: Sink, falco: Sink, max_backoff: float) -> dict[str, Any]:
    """Production settings (see src/state.py) except a smaller retry.max_seconds."""
    return {
        "listen": {"host": HOST, "port": 0},
        "max_body_bytes": 1024 * 1024,
        "spool": {"dir": str(tmp / "spool"), "max_bytes": 512 * 1024 * 1024},
        "juju": {
            "model": "cos",
            "model_uuid": "f2c5e3a1-7b4d-4e2a-9c1d-0123456789ab",
            "application": "falco-k8s",
            "unit": "falco-k8s/0",
        },
        "retry": {"initial_seconds": 0.5, "max_seconds": max_backoff, "timeout_seconds": 10.0},
        "sinks": [
            {"name": GELF_SINK, "format": "gelf", "url": f"http://{HOST}:{gelf.port}/gelf"},
            {"name": JSON_SINK, "format": "falco-json", "url": f"http://{HOST}:{falco.port}/"},
        ],
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="alerts/s (default 50)")
    parser.add_argument("--duration", type=float, default=60.0, help="flow seconds (default 60)")
    parser.add_argument("--outage-start", type=float, default=10.0, help="seconds into the flow")
    parser.add_argument("--outage-length", type=float, default=30.0, help="seconds (default 30)")
    parser.add_argument("--max-backoff", type=float, default=5.0, help="retry.max_seconds")
    parser.add_argument("--drain-timeout", type=float, default=60.0, help="seconds after flow")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args()
    if not 0 < args.rate <= 10000 or not 0 < args.duration <= 3600:
        parser.error("need 0 < --rate <= 10000 and 0 < --duration <= 3600")
    if args.outage_start < 0 or args.outage_length <= 0 or args.drain_timeout <= 0:
        parser.error("need --outage-start >= 0, --outage-length > 0, --drain-timeout > 0")
    if not 0.5 <= args.max_backoff <= 60:
        parser.error("need 0.5 <= --max-backoff <= 60")
    return args


class Clock:
    """Prints timeline events relative to the start of the flow."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def at(self, seconds: float) -> float:
        """The monotonic time ``seconds`` into the flow."""
        return self.t0 + seconds

    def sleep_until(self, seconds: float) -> None:
        """Sleep until ``seconds`` into the flow."""
        time.sleep(max(0.0, self.at(seconds) - time.monotonic()))

    def say(self, text: str) -> None:
        """Print ``text`` stamped with the flow time."""
        print(f"t={time.monotonic() - self.t0:7.2f}s  {text}", flush=True)


def main() -> int:
    args = parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="          [forwarder %(levelname)s] %(message)s",
    )
    count = int(args.rate * args.duration)
    outage_end = args.outage_start + args.outage_length
    print(
        f"{count} alerts at {args.rate:g}/s for {args.duration:g} s; sink {GELF_SINK} down "
        f"from t={args.outage_start:g} s to t={outage_end:g} s; retry 0.5-{args.max_backoff:g} s; "
        f"loopback, Python {sys.version.split()[0]}",
        flush=True,
    )
    gelf = Sink(GELF_SINK, 202, _gelf_id)
    falco = Sink(JSON_SINK, 200, _falco_id)
    flow, depths = Flow(), Depths()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    with tempfile.TemporaryDirectory(prefix="sink-outage-") as tmp:
        gelf.start()
        falco.start()
        forwarder: Forwarder | None = None
        try:
            forwarder = Forwarder(
                config_from_dict(forwarder_config(Path(tmp), gelf, falco, args.max_backoff))
            )
            forwarder.start()
            clock = Clock()
            threads = [
                threading.Thread(
                    target=drive,
                    args=(forwarder.port, args.rate, count, clock.t0, stop, flow),
                    name="client",
                ),
                threading.Thread(target=sample, args=(forwarder, depths, stop), name="sampler"),
            ]
            for thread in threads:
                thread.start()
            clock.say("flow started")
            clock.sleep_until(args.outage_start)
            gelf.stop()
            clock.say(
                f"sink {GELF_SINK} stopped (connection refused: {refuses(gelf.port)}, "
                f"queued {forwarder.spool.depths()[GELF_SINK]})"
            )
            clock.sleep_until(outage_end)
            backlog = forwarder.spool.depths()[GELF_SINK]
            gelf.start()
            depths.backlog_at_restart = backlog
            depths.restarted_at = time.monotonic()
            clock.say(f"sink {GELF_SINK} restarted on port {gelf.port} with {backlog} queued")
            threads[0].join()
            clock.say(f"flow ended: {len(flow.acked)} acknowledged, {len(flow.failed)} failed")
            drain_deadline = time.monotonic() + args.drain_timeout
            while not (
                complete := all(flow.acked <= sink.received().keys() for sink in (gelf, falco))
            ) and (time.monotonic() < drain_deadline):
                time.sleep(0.05)
            clock.say("both sinks complete" if complete else "drain timeout: gave up waiting")
            metrics = scrape(forwarder.port)
            left = forwarder.spool.depths()
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            if forwarder is not None:
                forwarder.close()
            gelf.stop()
            falco.stop()
    return report(flow, depths, (gelf, falco), metrics, left)


def report(
    flow: Flow,
    depths: Depths,
    sinks: tuple[Sink, ...],
    metrics: dict[str, float],
    left: dict[str, int],
) -> int:
    """Print the results; return the exit status."""
    sent = len(flow.acked) + len(flow.failed)
    rate = sent / max(flow.ended_at - flow.started_at, 1e-9)
    print()
    print(
        f"alerts sent: {sent} (2xx {len(flow.acked)}, failed {len(flow.failed)}), "
        f"at {rate:.1f}/s, slowest POST {flow.slowest * 1000:.1f} ms"
    )
    for alert_id, detail in flow.failed[:5]:
        print(f"  failed POST id {alert_id}: {detail}")
    missing_total = 0
    for sink in sinks:
        counts = sink.received()
        duplicates = sum(n - 1 for n in counts.values())
        missing = len(flow.acked - counts.keys())
        unexpected = len(counts.keys() - flow.acked)
        missing_total += missing
        print(
            f"sink {sink.name:<10}: delivered unique {len(counts)}, duplicates {duplicates}, "
            f"missing {missing} (still spooled {left[sink.name]}), unexpected {unexpected}, "
            f"sink handler errors {sink.handler_errors}"
        )
    gelf = sinks[0]
    restarted = depths.restarted_at
    first = gelf.first_at
    if restarted is not None:
        first_text = f"{first - restarted:.2f} s" if first is not None else "never"
        drained = depths.drained_at
        drained_text = f"{drained - restarted:.2f} s" if drained is not None else "never"
        print(
            f"recovery: {depths.backlog_at_restart} queued at restart; first delivery "
            f"{first_text} and queue drained {drained_text} after the restart"
        )

    def series(name: str, sink: str) -> str:
        total = sum(
            v for k, v in metrics.items() if k.startswith(name + "{") and f'sink="{sink}"' in k
        )
        return f"{total:g}"

    names = [sink.name for sink in sinks]
    print(
        "forwarder /metrics: received "
        f"{metrics.get('falco_forwarder_received_total', 0):g}, rejected "
        f"{sum(v for k, v in metrics.items() if k.startswith('falco_forwarder_rejected_total')):g}"
    )
    for kind in ("delivered", "retried", "dropped"):
        values = ", ".join(f"{n} {series(f'falco_forwarder_{kind}_total', n)}" for n in names)
        print(f"  {kind:<9}: {values}")
    drops = [k for k, v in metrics.items() if k.startswith("falco_forwarder_dropped") and v]
    for key in drops:
        print(f"    {key} {metrics[key]:g}")
    peaks = ", ".join(f"{n} {depths.peak[n]}" for n in names)
    print(f"peak queue depth (sampled every {SAMPLE_SECONDS * 1000:g} ms): {peaks}")
    ok = missing_total == 0 and not flow.failed
    print(
        f"RESULT: {'PASS' if ok else 'FAIL'}: {missing_total} alerts missing, "
        f"{len(flow.failed)} POSTs without 2xx"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
