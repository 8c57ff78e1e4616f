"""What the alert-log benchmarks share: a recording sink, a Falco-like writer, forwarders.

"after" is this branch's forwarder (``src/``) reading the alert log; "before" is the forwarder
at ``--main`` (default ``/work/main/src``, used read-only), which takes Falco's http_output
POSTs and spools them. Both run as their own ``python -m falco_forwarder`` process.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sample_alert import ID_FIELD, alert

HOST = "127.0.0.1"
SRC = Path(__file__).resolve().parents[1] / "src"
MAIN_SRC = Path(os.environ.get("FALCO_K8S_MAIN_SRC", "/work/main/src"))


class Sink(ThreadingHTTPServer):
    """Answers 202 to every POST (503 while ``down``) and counts each alert id it accepted."""

    daemon_threads = True

    def __init__(self, port: int = 0):
        self.ids: Counter[int] = Counter()
        self.order: list[int] = []
        self.down = False
        self.lock = threading.Lock()
        super().__init__((HOST, port), _SinkHandler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def port(self) -> int:
        """The bound port."""
        return self.server_address[1]

    def url(self) -> str:
        """Where the forwarder posts."""
        return f"http://{HOST}:{self.port}/"

    def stop(self) -> None:
        """Stop serving."""
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A sender killed mid-request resets its connection: expected here."""


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        sink: Sink = self.server  # type: ignore[assignment]
        if sink.down:
            self._answer(503)
            return
        doc = json.loads(body)
        fields = doc.get("output_fields")
        number = fields[ID_FIELD] if fields else doc["_bench_id"]
        with sink.lock:
            sink.ids[number] += 1
            sink.order.append(number)
        self._answer(202)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def append(log: Path, i: int) -> int:
    """Falco's file_output with keep_alive false: open, write one line, close; the bytes."""
    line = alert(i) + b"\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return len(line)


def after_config(
    tmp: Path, sinks: list[Sink], port: int, retention: int = 512 << 20, segment: int = 32 << 20
) -> Path:
    """This branch's forwarder configuration, the alert log in ``tmp/log``."""
    (tmp / "log").mkdir(parents=True, exist_ok=True)
    config = {
        "listen": {"host": HOST, "port": port},
        "alert_log": {
            "file": str(tmp / "log" / "falco.log"),
            "state_dir": str(tmp / "state"),
            "retention_bytes": retention,
            "segment_bytes": segment,
        },
        **_common(sinks),
    }
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    return path


def before_config(tmp: Path, sinks: list[Sink], port: int) -> Path:
    """Main's forwarder configuration: an HTTP listener and a spool in ``tmp/spool``."""
    config = {
        "listen": {"host": HOST, "port": port},
        "max_body_bytes": 1 << 20,
        "spool": {"dir": str(tmp / "spool"), "max_bytes": 512 << 20},
        **_common(sinks),
    }
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    return path


def _common(sinks: list[Sink]) -> dict[str, Any]:
    return {
        "juju": {"model": "m", "model_uuid": "u", "application": "falco-k8s", "unit": "f/0"},
        "retry": {"initial_seconds": 0.1, "max_seconds": 1.0, "timeout_seconds": 5.0},
        "sinks": [
            {"name": f"s{i}", "format": "falco-json", "url": sink.url()}
            for i, sink in enumerate(sinks)
        ],
    }


class Forwarder:
    """``python -m falco_forwarder`` from ``src`` as its own process."""

    def __init__(self, src: Path, config: Path, port: int):
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "falco_forwarder", "--config", str(config)],
            env={**os.environ, "PYTHONPATH": str(src)},
            stderr=subprocess.DEVNULL,
        )
        atexit.register(self._reap)  # a benchmark that fails leaves no forwarder behind
        deadline = time.monotonic() + 30
        while not self.healthy():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the forwarder did not start")
            time.sleep(0.02)

    def healthy(self) -> bool:
        """Whether /healthz answers 200."""
        try:
            connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def rss_bytes(self) -> int:
        """The process's resident memory."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def _reap(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, and wait for the graceful stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)
