"""Real loopback HTTP sinks, HTTP clients and polling helpers for the forwarder tests."""

import contextlib
import http.client
import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from falco_forwarder.forwarder import Forwarder

LOOPBACK = "127.0.0.1"

SinkFactory = Callable[..., "SinkServer"]
ForwarderFactory = Callable[..., Forwarder]


def config_dict(alerts_dir: Path, sinks: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """A valid configuration with fast retries, listening on an ephemeral port.

    The alert log and the checkpoints live under ``alerts_dir``, as on the shared storage.
    """
    data: dict[str, Any] = {
        "listen": {"host": LOOPBACK, "port": 0},
        "alert_log": {
            "file": str(alerts_dir / "log" / "falco.log"),
            "state_dir": str(alerts_dir / "state"),
            "retention_bytes": 10 * 1024 * 1024,
            "segment_bytes": 1024 * 1024,
        },
        "juju": {
            "model": "cos",
            "model_uuid": "f2c5e3a1-7b4d-4e2a-9c1d-0123456789ab",
            "application": "falco-k8s",
            "unit": "falco-k8s/0",
        },
        "retry": {"initial_seconds": 0.02, "max_seconds": 0.2, "timeout_seconds": 2.0},
        "sinks": sinks,
    }
    data.update(overrides)
    return data


def write_config(
    directory: Path, sinks: list[dict[str, Any]], port: int = 0, **overrides: Any
) -> Path:
    """Write ``directory/config.json``, the alert log under ``directory/alerts``."""
    data = config_dict(directory / "alerts", sinks, **overrides)
    data["listen"]["port"] = port
    path = directory / "config.json"
    path.write_text(json.dumps(data))
    return path


def free_port() -> int:
    """A loopback port that nothing listens on (until a test starts something there)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def sink_dict(name: str, url: str, fmt: str = "falco-json", **extra: Any) -> dict[str, Any]:
    return {"name": name, "format": fmt, "url": url, **extra}


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.005)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    peer: tuple[str, int]


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class SinkServer:
    """A sink on 127.0.0.1 that records every request and answers from a script.

    The scripted replies are used in order, then ``default`` forever, each after ``delay``
    seconds (a distant sink); ``most_at_once`` is the most requests it had in hand together.
    ``stop`` severs kept-alive connections too, so a stopped sink is really unreachable.
    """

    def __init__(
        self,
        port: int = 0,
        script: Iterable[int | Reply] = (),
        default: int = 200,
        tls: ssl.SSLContext | None = None,
        close_after_reply: bool = False,
        delay: float = 0.0,
    ):
        self.received: list[Received] = []
        self.delay = delay
        self.at_once = 0
        self.most_at_once = 0
        self._script = [r if isinstance(r, Reply) else Reply(r) for r in script]
        self._default = default
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self.close_after_reply = close_after_reply
        self._server = _RecordingServer((LOOPBACK, port), _SinkHandler, self)
        if tls is not None:
            self._server.socket = tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,))
        self._thread.start()

    @property
    def bodies(self) -> list[bytes]:
        with self._lock:
            return [r.body for r in self.received]

    def url(self, scheme: str = "http", path: str = "/") -> str:
        return f"{scheme}://{LOOPBACK}:{self.port}{path}"

    def next_reply(self) -> Reply:
        with self._lock:
            return self._script.pop(0) if self._script else Reply(self._default)

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)

    def answered(self) -> None:
        with self._lock:
            self.at_once -= 1

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    def stop(self) -> None:
        self._server.shutdown()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):  # already closed by the peer
                    conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join()


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128  # as real servers: many connections may open at once

    def __init__(self, address: tuple[str, int], handler: type, sink: SinkServer):
        self.sink = sink
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Failed TLS handshakes are expected in some tests: stay quiet."""


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def sink(self) -> SinkServer:
        assert isinstance(self.server, _RecordingServer)
        return self.server.sink

    def setup(self) -> None:
        super().setup()
        self.sink.track(self.connection, add=True)

    def finish(self) -> None:
        self.sink.track(self.connection, add=False)
        super().finish()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sink = self.sink
        sink.record(
            Received(
                self.path, dict(self.headers.items()), body, time.monotonic(), self.client_address
            )
        )
        reply = sink.next_reply()
        time.sleep(sink.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
        sink.answered()
        if sink.close_after_reply:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    """One request on a fresh connection: (status, body, headers)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def append_line(file: Path, line: bytes) -> None:
    """Append one line as Falco's file_output does with keep_alive false: open, write, close."""
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line + b"\n")
    finally:
        os.close(fd)


def append_alert(forwarder: Forwarder, body: bytes) -> None:
    """Falco writes ``body`` to the log ``forwarder`` delivers."""
    append_line(forwarder.log.file, body)


def metric(port: int, name: str, **labels: str) -> float:
    """The value of one series from the forwarder's /metrics (fails if absent)."""
    status, text, _ = request(port, "GET", "/metrics")
    assert status == 200
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name + (f"{{{wanted}}}" if labels else "")) + r" (\S+)"
    match = re.search(rf"^{pattern}$", text.decode(), re.MULTILINE)
    assert match, f"{name} {labels} not in /metrics"
    return float(match[1])


def falco_alert(i: int = 0, rule: str = "Create Privileged Pod", **extra: Any) -> dict[str, Any]:
    """A real-shaped Falco k8s_audit alert, made unique by ``i``."""
    alert = {
        "hostname": "falco-k8s-0",
        "output": (
            f"05:07:26.123456789: Warning Pod started with privileged container "
            f"(user=admin pod=nginx-{i} ns=default images=nginx:1.27)"
        ),
        "priority": "Warning",
        "rule": rule,
        "source": "k8s_audit",
        "tags": ["k8s", "NIST_800-53_AC-6"],
        "time": "2026-11-27T05:07:26.123456789Z",
        "output_fields": {
            "evt.time": 1795756046123456789,
            "ka.user.name": "admin",
            "ka.target.namespace": "default",
            "ka.resp.name": f"nginx-{i}",
            "jevt.value[/requestObject/kind]": "Pod",
            "ka.req.pod.containers.privileged": True,
            "ka.req.pod.containers.image": ["nginx:1.27"],
        },
    }
    alert.update(extra)
    return alert


def encode(alert: dict[str, Any]) -> bytes:
    """Falco-style JSON with spaces after separators, to check bytes are forwarded unchanged."""
    return json.dumps(alert, separators=(", ", ": ")).encode()


def read_reply(client: socket.socket) -> bytes:
    """Read exactly one HTTP response (head and Content-Length body) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0]
    length = int(re.search(rb"\r\nContent-Length: (\d+)", head)[1])  # type: ignore[index]
    while len(data) < len(head) + 4 + length:
        data += client.recv(65536)
    return data
