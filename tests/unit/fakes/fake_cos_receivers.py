"""Stand-ins for Loki's push API and an OpenTelemetry collector's OTLP/HTTP logs receiver.

Each is a real HTTP server on 127.0.0.1 that checks a request the way its upstream does before
storing it, and answers with upstream's status codes: what the forwarder must get right.

- Loki (grafana/loki v3.x, ``pkg/push/push.go`` and ``pkg/validation``): ``POST
  /loki/api/v1/push``, JSON ``{"streams": [{"stream": {label: value}, "values": [[ns, line]]}]}``
  with the timestamp a decimal string of nanoseconds; label names match
  ``[a-zA-Z_][a-zA-Z0-9_]*``; an invalid body gets 400; success is 204 with no body.
- OTLP/HTTP (opentelemetry-proto v1.x ``docs/specification.md``, ``logs/v1/logs.proto``): ``POST
  /v1/logs`` with ``Content-Type: application/json``; ``resourceLogs`` -> ``scopeLogs`` ->
  ``logRecords``; 64-bit integers as strings; a malformed request gets 400; success is 200 with
  an ``ExportLogsServiceResponse`` JSON body.
"""

import contextlib
import json
import re
import socket
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"

LOKI_PATH = "/loki/api/v1/push"
OTLP_PATH = "/v1/logs"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class MalformedError(ValueError):
    """The request is one the real receiver refuses with 400."""


def loki_entries(body: bytes) -> list[tuple[dict[str, str], int, str]]:
    """Every (labels, ns timestamp, line) in a Loki push body, checked as Loki checks it."""
    try:
        streams = json.loads(body)["streams"]
        entries: list[tuple[dict[str, str], int, str]] = []
        for stream in streams:
            labels = stream["stream"]
            if not labels or not all(
                _LABEL_NAME.fullmatch(k) and isinstance(v, str) for k, v in labels.items()
            ):
                raise MalformedError(f"invalid labels {labels!r}")
            for ts, line in stream["values"]:
                if not isinstance(ts, str) or not isinstance(line, str):
                    raise MalformedError("values must be [string, string]")
                entries.append((labels, int(ts), line))
    except (KeyError, TypeError, ValueError) as e:
        raise MalformedError(str(e)) from e
    return entries


def otlp_records(body: bytes) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (resource, logRecord) in an OTLP/JSON logs export request, checked for shape."""
    try:
        out: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for resource_logs in json.loads(body)["resourceLogs"]:
            resource = resource_logs.get("resource", {})
            for scope_logs in resource_logs["scopeLogs"]:
                for record in scope_logs["logRecords"]:
                    int(record["timeUnixNano"])
                    if not isinstance(record["timeUnixNano"], str):
                        raise MalformedError("timeUnixNano must be a string")
                    if not 0 <= record.get("severityNumber", 0) <= 24:
                        raise MalformedError("severityNumber out of range")
                    for kv in record.get("attributes", []) + resource.get("attributes", []):
                        if not isinstance(kv["key"], str) or len(kv["value"]) != 1:
                            raise MalformedError(f"bad KeyValue {kv!r}")
                    out.append((resource, record))
    except (KeyError, TypeError, ValueError) as e:
        raise MalformedError(str(e)) from e
    return out


class Receiver:
    """A receiver on loopback: checks each request with ``parse``, keeps what it accepted.

    ``script`` gives the first statuses to answer instead (e.g. 503, 400), then it accepts.
    A request whose body holds ``refuse`` is refused with 400, as a receiver refuses a bad entry
    (with the whole request it came in). ``stop`` then ``start`` on the same port is an outage.
    """

    def __init__(
        self,
        path: str,
        parse: Callable[[bytes], list[Any]],
        ok_status: int,
        ok_body: bytes,
        script: Iterable[int] = (),
        port: int = 0,
        refuse: bytes | None = None,
    ):
        self.path = path
        self._refuse = refuse
        self._parse = parse
        self._ok = (ok_status, ok_body)
        self._script = list(script)
        self._lock = threading.Lock()
        self.accepted: list[Any] = []
        self.refused = 0
        self.requests = 0
        self._connections: set[socket.socket] = set()
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{self.path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._connections.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, reply = receiver.answer(self.path, self.headers.get("Content-Type"), body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,))
        self._thread.start()

    def stop(self) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.shutdown()
        with self._lock:  # sever kept-alive connections too: an outage is an outage
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join()
        self._server = None

    def answer(self, path: str, content_type: str | None, body: bytes) -> tuple[int, bytes]:
        with self._lock:
            self.requests += 1
            if self._script:
                self.refused += 1
                return self._script.pop(0), b"scripted refusal"
            if self._refuse is not None and self._refuse in body:
                self.refused += 1
                return 400, b"refused entry"
            if path != self.path or content_type != "application/json":
                self.refused += 1
                return 404 if path != self.path else 415, b"wrong path or content type"
            try:
                items = self._parse(body)
            except MalformedError as e:
                self.refused += 1
                return 400, str(e).encode()
            self.accepted.extend(items)
            return self._ok


def loki_receiver(
    script: Iterable[int] = (), port: int = 0, refuse: bytes | None = None
) -> Receiver:
    return Receiver(LOKI_PATH, loki_entries, 204, b"", script, port, refuse)


def otlp_receiver(
    script: Iterable[int] = (), port: int = 0, refuse: bytes | None = None
) -> Receiver:
    return Receiver(OTLP_PATH, otlp_records, 200, b"{}", script, port, refuse)
