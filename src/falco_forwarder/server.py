"""The HTTP receiver Falco's http_output posts to: validate, spool for every sink, answer.

The answer never waits for a sink: an alert is acknowledged (200) as soon as it is
on disk for every sink. Invalid requests get 4xx and are counted by reason.
"""

import contextlib
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, NoReturn, cast
from urllib.parse import urlsplit

from falco_forwarder.burstlog import BurstLog
from falco_forwarder.metrics import CONTENT_TYPE, RECEIVED, REJECTED, Metrics
from falco_forwarder.spool import Spool

logger = logging.getLogger(__name__)

HEALTH_PATH: Final = "/healthz"
METRICS_PATH: Final = "/metrics"
REJECT_REASONS: Final = (
    "content_type",
    "length_required",
    "bad_length",
    "too_large",
    "incomplete_body",
    "malformed_json",
    "not_object",
    "spool_error",
)
# A refused body up to this size is read and discarded so the client sees our answer
# instead of a connection reset.
_DRAIN_LIMIT: Final = 16 * 1024 * 1024
_CHUNK: Final = 64 * 1024


class _Rejection(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, status: int, reason: str, unread: int = 0):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.unread = unread


class AlertServer(ThreadingHTTPServer):
    """Threaded receiver whose `stop` finishes in-flight requests and drops idle connections."""

    daemon_threads = False
    block_on_close = True

    def __init__(
        self, address: tuple[str, int], spool: Spool, metrics: Metrics, max_body_bytes: int
    ):
        self.spool = spool
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.rejections = BurstLog(logger)
        self.stopping = False
        self._idle: set[socket.socket] = set()
        self._idle_lock = threading.Lock()
        super().__init__(address, _Handler)

    def enter_idle(self, conn: socket.socket) -> bool:
        """Mark ``conn`` as waiting for a request; False if the server is stopping."""
        with self._idle_lock:
            if self.stopping:
                return False
            self._idle.add(conn)
            return True

    def leave_idle(self, conn: socket.socket) -> None:
        """Mark ``conn`` as busy with a request (or gone)."""
        with self._idle_lock:
            self._idle.discard(conn)

    def stop(self) -> None:
        """Stop accepting, wake idle kept-alive connections, wait for in-flight requests.

        Must be called from another thread than the one running ``serve_forever``.
        """
        self.shutdown()
        with self._idle_lock:
            self.stopping = True
            for conn in self._idle:
                # Reading side only: the handler sees end-of-stream and exits.
                with contextlib.suppress(OSError):  # the peer may have reset it already
                    conn.shutdown(socket.SHUT_RD)
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "falco-forwarder"
    timeout = 60.0  # idle kept-alive connections and stalled uploads are closed after this

    @property
    def _server(self) -> AlertServer:
        return cast(AlertServer, self.server)

    def handle(self) -> None:
        self.close_connection = True
        try:
            while self._server.enter_idle(self.connection):
                self.handle_one_request()
                if self.close_connection:
                    return
        finally:
            self._server.leave_idle(self.connection)

    def parse_request(self) -> bool:
        self._server.leave_idle(self.connection)  # a request line arrived
        return super().parse_request()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == HEALTH_PATH:
            self._reply(200, b"ok\n")
        elif path == METRICS_PATH:
            spool = self._server.spool
            text = self._server.metrics.render(spool.depths(), spool.total_bytes())
            self._reply(200, text.encode(), CONTENT_TYPE)
        else:
            self._reply(404, b"not found\n")

    def do_POST(self) -> None:
        if urlsplit(self.path).path in (HEALTH_PATH, METRICS_PATH):
            self.close_connection = True  # the body is not read
            self._reply(405, b"use GET\n", extra={"Allow": "GET"})
            return
        try:
            body = self._read_alert()
        except _Rejection as rejection:
            self._reject(rejection)
            return
        try:
            self._server.spool.put(body)
        except OSError as e:
            self._reject(_Rejection(503, "spool_error"), detail=str(e))
            return
        self._server.metrics.inc(RECEIVED)
        self._server.rejections.end("receiving valid alerts again")
        self._reply(200, b"")

    def _read_alert(self) -> bytes:
        """The request body if it is a JSON object within the size limit, else `_Rejection`."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise _Rejection(411, "length_required")
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise _Rejection(411, "length_required")
        if not declared.strip().isdigit():
            raise _Rejection(400, "bad_length")
        length = int(declared)
        if length > self._server.max_body_bytes:
            raise _Rejection(413, "too_large", unread=length)
        if self.headers.get_content_type() != "application/json":
            raise _Rejection(400, "content_type", unread=length)
        body = self.rfile.read(length)
        if len(body) < length:
            raise _Rejection(400, "incomplete_body")
        try:
            alert = json.loads(body, parse_constant=_no_constants)
        except (ValueError, RecursionError) as e:
            raise _Rejection(400, "malformed_json") from e
        if not isinstance(alert, dict):
            raise _Rejection(400, "not_object")
        return body

    def _reject(self, rejection: _Rejection, detail: str = "") -> None:
        self._server.metrics.inc(REJECTED, reason=rejection.reason)
        self._server.rejections.event(
            "refused an alert from %s: %s %s%s",
            self.client_address[0],
            rejection.status,
            rejection.reason,
            f" ({detail})" if detail else "",
        )
        self.close_connection = True
        if rejection.unread <= _DRAIN_LIMIT:
            self._discard(rejection.unread)
        self._reply(rejection.status, f"{rejection.reason}\n".encode())

    def _discard(self, count: int) -> None:
        while count > 0 and (chunk := self.rfile.read(min(count, _CHUNK))):
            count -= len(chunk)

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        extra: dict[str, str] | None = None,
    ) -> None:
        if self._server.stopping:
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s " + format, self.client_address[0], *args)


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")
