"""Loopback benchmark of the alert forwarder against a direct-POST baseline (run by hand).

The same client threads POST N Falco-shaped alerts, each on a kept-alive connection
as libcurl does, either straight to a bare stdlib receiver (baseline) or to the
forwarder (a separate ``python -m falco_forwarder`` process) that delivers them as
GELF to the same kind of receiver. End-to-end latency is receive time minus send
time per alert. Everything stays on 127.0.0.1 and stops after ``--max-seconds``.

    .venv/bin/python benchmarks/forwarder.py --alerts 5000 --clients 4
"""

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sample_alert import ID_FIELD, alert

HOST = "127.0.0.1"
SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass
class Run:
    """Send and receive times per alert id."""

    sent: dict[int, float] = field(default_factory=dict)
    received: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Receiver(ThreadingHTTPServer):
    """Answers 202 to every POST and records when each alert id arrived."""

    daemon_threads = True

    def __init__(self, run: Run, gelf: bool):
        self.run = run
        self.gelf = gelf
        super().__init__((HOST, 0), _ReceiverHandler)


class _ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        now = time.perf_counter()
        server: Receiver = self.server  # type: ignore[assignment]
        alert_id = body["_bench_id"] if server.gelf else body["output_fields"][ID_FIELD]
        with server.run.lock:
            server.run.received[alert_id] = now
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def post_all(port: int, alerts: int, clients: int, rate: float, run: Run) -> None:
    """POST alerts 0..N-1 spread over the clients, paced to ``rate`` per second if it is > 0."""
    start = time.perf_counter()

    def client(ids: range) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            for i in ids:
                if rate > 0:
                    time.sleep(max(0.0, start + i / rate - time.perf_counter()))
                body = alert(i)
                with run.lock:
                    run.sent[i] = time.perf_counter()
                conn.request("POST", "/", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                assert response.status in (200, 202), response.status
        finally:
            conn.close()

    threads = [
        threading.Thread(target=client, args=(range(c, alerts, clients),)) for c in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_until(condition: object, deadline: float) -> None:
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def summarise(name: str, run: Run, alerts: int) -> dict[str, float]:
    done = sorted(run.received)
    latencies = sorted(run.received[i] - run.sent[i] for i in done)
    elapsed = max(run.received.values()) - min(run.sent.values())
    result = {
        "delivered": len(done),
        "alerts_per_s": len(done) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
    }
    print(
        f"{name:<10} delivered {len(done)}/{alerts}  {result['alerts_per_s']:8.0f} alerts/s  "
        f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms"
    )
    return result


def measure(port: int, run: Run, args: argparse.Namespace, deadline: float) -> None:
    post_all(port, args.alerts, args.clients, args.rate, run)
    wait_until(lambda: len(run.received) >= args.alerts, deadline)


def baseline(args: argparse.Namespace, deadline: float) -> dict[str, float]:
    run = Run()
    receiver = Receiver(run, gelf=False)
    serving = threading.Thread(target=receiver.serve_forever, args=(0.05,))
    serving.start()
    try:
        measure(receiver.server_address[1], run, args, deadline)
    finally:
        receiver.shutdown()
        receiver.server_close()
        serving.join()
    return summarise("baseline", run, args.alerts)


def forwarder(args: argparse.Namespace, deadline: float) -> dict[str, float]:
    run = Run()
    receiver = Receiver(run, gelf=True)
    serving = threading.Thread(target=receiver.serve_forever, args=(0.05,))
    serving.start()
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
        probe.close()
        config = Path(tmp) / "config.json"
        config.write_text(
            json.dumps(
                {
                    "listen": {"host": HOST, "port": port},
                    "max_body_bytes": 1048576,
                    "spool": {"dir": f"{tmp}/spool", "max_bytes": 104857600},
                    "juju": {"model": "m", "model_uuid": "u", "application": "a", "unit": "a/0"},
                    "retry": {
                        "initial_seconds": 0.05,
                        "max_seconds": 1.0,
                        "timeout_seconds": 10.0,
                    },
                    "sinks": [
                        {
                            "name": "graylog",
                            "format": "gelf",
                            "url": f"http://{HOST}:{receiver.server_address[1]}/gelf",
                            "max_message_bytes": 65536,
                        }
                    ],
                }
            )
        )
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "falco_forwarder",
                "--config",
                str(config),
                "--log-level",
                "WARNING",
            ],
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )
        try:
            wait_until(lambda: _healthy(port), deadline)
            measure(port, run, args, deadline)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            receiver.shutdown()
            receiver.server_close()
            serving.join()
    return summarise("forwarder", run, args.alerts)


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0, help="alerts/s in all (0: no pacing)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per measurement")
    args = parser.parse_args()
    pacing = f"paced at {args.rate:g}/s" if args.rate > 0 else "unpaced"
    print(
        f"{args.alerts} alerts from {args.clients} client threads, {pacing}, loopback, "
        f"Python {sys.version.split()[0]}"
    )
    base = baseline(args, time.monotonic() + args.max_seconds)
    fwd = forwarder(args, time.monotonic() + args.max_seconds)
    print(
        f"ratio      throughput {fwd['alerts_per_s'] / base['alerts_per_s']:.2f}x  "
        f"p50 {fwd['p50_ms'] / base['p50_ms']:.1f}x  p99 {fwd['p99_ms'] / base['p99_ms']:.1f}x"
        "  (forwarder / baseline)"
    )


if __name__ == "__main__":
    main()
