"""The forwarder's HTTP endpoint: ``GET /healthz`` for Pebble, ``GET /metrics`` for status.

Alerts do not come in here any more (Falco writes them to the alert log), so every other
route is 404, and any other standard method on either path is 405 with ``Allow``.
"""

from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, cast
from urllib.parse import urlsplit

from falco_forwarder.metrics import CONTENT_TYPE

HEALTH_PATH: Final = "/healthz"
METRICS_PATH: Final = "/metrics"
ALLOW: Final = "GET, HEAD"
_TEXT: Final = "text/plain; charset=utf-8"


class StatusServer(ThreadingHTTPServer):
    """Serves the health check and the metrics rendered by ``render_metrics``."""

    daemon_threads = True  # nothing in flight is worth waiting for at shutdown

    def __init__(self, address: tuple[str, int], render_metrics: Callable[[], str]):
        self.render_metrics = render_metrics
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "falco-forwarder"
    timeout = 60.0  # idle kept-alive connections are closed after this
    _head_only = False

    def do_GET(self) -> None:
        server = cast(StatusServer, self.server)
        path = urlsplit(self.path).path
        if path == HEALTH_PATH:
            self._reply(200, b"ok\n")
        elif path == METRICS_PATH:
            self._reply(200, server.render_metrics().encode(), CONTENT_TYPE)
        else:
            self._reply(404, b"not found\n")

    def do_HEAD(self) -> None:
        self._head_only = True
        self.do_GET()

    def _not_allowed(self) -> None:
        self.close_connection = True  # a body, if any, is not read
        if urlsplit(self.path).path in (HEALTH_PATH, METRICS_PATH):
            self._reply(405, b"use GET\n", extra={"Allow": ALLOW})
        else:
            self._reply(404, b"not found\n")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed  # noqa: N815

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str = _TEXT,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not self._head_only:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass
