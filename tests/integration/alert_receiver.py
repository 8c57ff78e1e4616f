"""A sink that stands for an operator's HTTP endpoint and for Graylog's GELF HTTP input.

The integration tests run it inside the falco-k8s pod, in the forwarder container (any image
with python3, standard library only), as a Pebble service on the pod's loopback, so that the
charm's `http_output` and the gelf integrator's `gelf_url` can point at
`http://127.0.0.1:<port>/...`. It models only what the forwarder relies on: a POST is answered
once the body is stored, `/gelf` with 202 as Graylog's GELF HTTP input does (Graylog
`GELFHttpHandler`, 6.x), any other path with 200. Each body is appended as one JSON line
(`{"path": ..., "body": ...}`) to the file given, and fsynced before the answer, so a stop of
the service loses nothing it acknowledged.

Usage: python3 alert_receiver.py PORT FILE
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

GELF_PATH = "/gelf"
_write_lock = Lock()


def record(path: str, line: dict[str, str]) -> None:
    """Append one received body, durably, before it is acknowledged."""
    data = (json.dumps(line, sort_keys=True) + "\n").encode()
    with _write_lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def handler_for(store: str) -> type[BaseHTTPRequestHandler]:
    """A request handler that stores each POST body in ``store``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            record(store, {"path": self.path, "body": body.decode("utf-8", "replace")})
            self.send_response(202 if self.path == GELF_PATH else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: Pebble would keep every request line in its log."""

    return Handler


def main(argv: list[str]) -> None:
    """Serve until stopped (Pebble sends SIGTERM)."""
    port, store = int(argv[1]), argv[2]
    os.makedirs(os.path.dirname(store), exist_ok=True)
    with ThreadingHTTPServer(("127.0.0.1", port), handler_for(store)) as server:
        server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
