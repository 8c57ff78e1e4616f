"""The apiserver's door: one authenticated POST per connection, answered once the batch is on disk.

Every answer closes its connection (``Connection: close``), and TLS offers only ``http/1.1`` in
ALPN (kube-apiserver would otherwise speak HTTP/2 and keep one connection for good): the
apiserver dials anew for each batch, so kube-proxy, which balances connections, balances
batches. The token is checked before anything else and before the body is read: a post
without it costs the pod no disk and never reaches Falco.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, Protocol, cast
from urllib.parse import urlsplit

from audit_intake import metrics
from audit_intake.bearer import refusal
from audit_intake.config import AcceptedToken, IntakeConfig
from audit_intake.metrics import IntakeMetrics
from audit_intake.spool import Spool, SpooledBatch, SpoolFullError


class BatchIntake(Protocol):
    """What the webhook needs of the intake it serves: its settings, its spool, its counts."""

    config: IntakeConfig
    tokens: tuple[AcceptedToken, ...]
    tls_context: ssl.SSLContext | None
    spool: Spool
    metrics: IntakeMetrics

    def taken(self, batch: SpooledBatch, body: bytes) -> None:
        """The batch is on disk and answered: hand it on to Falco."""
        ...


logger = logging.getLogger(__name__)

# The apiserver's webhook client gives up on a request after 30 s (its ?timeout=30s).
READ_TIMEOUT_SECONDS: Final = 30.0
HANDSHAKE_SECONDS: Final = 10.0
MAX_CONNECTIONS: Final = 64  # the apiserver sends at most 15 batches at once (its burst)
# After refusing a request whose body is on its way, read and discard it for this long, so
# the client reads the answer instead of a connection reset.
DRAIN_SECONDS: Final = 2.0
MAX_REQUEST_LINE: Final = 8192
REPORT_EVERY_SECONDS: Final = 60.0  # at most one log line per refusal reason this often
_TEXT: Final = "text/plain; charset=utf-8"
_REASONS: Final = {
    404: metrics.NOT_FOUND,
    405: metrics.METHOD_NOT_ALLOWED,
    411: metrics.LENGTH_REQUIRED,
    413: metrics.TOO_LARGE,
    415: metrics.UNSUPPORTED_MEDIA_TYPE,
}


def tls_context(pem: Path | None) -> ssl.SSLContext | None:
    """A server context for the PEM (certificate, chain, key), HTTP/1.1 only; None for plain HTTP.

    Raises ssl.SSLError or OSError when the PEM cannot be served.
    """
    if pem is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(pem))
    context.set_alpn_protocols(["http/1.1"])
    return context


class RefusalLog:
    """Logs refusals without letting a flood of them flood the log: a line per reason a minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def note(self, reason: str, client: str, now: float) -> None:
        """Log this refusal, or count it for the next line when one was logged recently."""
        with self._lock:
            held = self._held.get(reason, 0)
            if now - self._last.get(reason, -REPORT_EVERY_SECONDS) < REPORT_EVERY_SECONDS:
                self._held[reason] = held + 1
                return
            self._last[reason] = now
            self._held[reason] = 0
        more = f" (and {held} more since the last report)" if held else ""
        logger.warning("refused a request from %s: %s%s", client, reason, more)


class WebhookServer(ThreadingHTTPServer):
    """Takes the apiserver's audit batches for ``intake``; TLS when the intake has a context."""

    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(self, address: tuple[str, int], intake: BatchIntake):
        self.intake = intake
        self.refusals = RefusalLog()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _WebhookHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in its own thread, or close it at once past the limit."""
        if not self._slots.acquire(blocking=False):
            self.intake.metrics.inc(metrics.REFUSED, reason=metrics.TOO_MANY_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve the connection, then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection; the TLS handshake happens here, off the accepting thread."""
        context = self.intake.tls_context
        if context is None:
            self.RequestHandlerClass(request, client_address, self)
            return
        raw = cast("socket.socket", request)
        raw.settimeout(HANDSHAKE_SECONDS)
        try:
            secured = context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.intake.metrics.inc(metrics.REFUSED, reason=metrics.TLS_HANDSHAKE)
            logger.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        with secured:
            self.RequestHandlerClass(secured, client_address, self)


class _WebhookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "audit-intake"
    sys_version = ""
    timeout = READ_TIMEOUT_SECONDS

    server: WebhookServer  # pyright: ignore[reportIncompatibleVariableOverride]

    def handle(self) -> None:
        """One request, then the connection closes: the next batch is balanced anew."""
        self.close_connection = True
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        except OSError:
            return
        if not self.raw_requestline:
            return
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self._refuse(414, metrics.BAD_REQUEST)
        elif self.parse_request():
            self._take()

    def handle_expect_100(self) -> bool:
        return True  # "100 Continue" only once the token is checked (in _take)

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ) -> None:
        """The refusals of ``parse_request``: a malformed request line or headers."""
        self.request_version = self.protocol_version  # answer with a status line regardless
        self._refuse(code, metrics.BAD_REQUEST)

    def _take(self) -> None:
        intake = self.server.intake
        reason = refusal(self.headers.get("Authorization"), intake.tokens, time.time())
        if reason:
            self._refuse(401, reason, {"WWW-Authenticate": 'Bearer realm="audit-intake"'})
            return
        problem = self._framing_problem()
        if problem is not None:
            self._refuse(*problem)
            return
        length = int(self.headers["Content-Length"])
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.send_response_only(100)
            self.end_headers()
        try:
            body = self.rfile.read(length)
        except OSError:
            body = b""
        if len(body) < length:
            self._refuse(400, metrics.INCOMPLETE_BODY, drain=False)
            return
        try:
            batch = intake.spool.append(body)
        except SpoolFullError:
            self._refuse(503, metrics.SPOOL_FULL, {"Retry-After": "10"}, drain=False)
            return
        except OSError as exc:
            logger.error("cannot keep a batch of %d bytes: %s", length, exc)
            self._refuse(503, metrics.SPOOL_ERROR, {"Retry-After": "10"}, drain=False)
            return
        self._answer(200, b"")
        intake.taken(batch, body)

    def _framing_problem(self) -> tuple[int, str, dict[str, str]] | None:
        """Why an authenticated request is not a batch k8saudit would take, or None.

        k8saudit's own checks come after the path and method: a JSON content type, and a
        body within its batch limit; a body the intake could not count is refused too.
        """
        headers = self.headers
        length = headers.get("Content-Length", "")
        problems: tuple[tuple[bool, int, dict[str, str]], ...] = (
            (urlsplit(self.path).path != self.server.intake.config.webhook_path, 404, {}),
            (self.command != "POST", 405, {"Allow": "POST"}),
            ("application/json" not in headers.get("Content-Type", "").lower(), 415, {}),
            (headers.get("Content-Encoding", "identity").strip().lower() != "identity", 415, {}),
            (bool(headers.get("Transfer-Encoding")) or not length.isdigit(), 411, {}),
            (
                length.isdigit() and int(length) > self.server.intake.config.max_batch_bytes,
                413,
                {},
            ),
        )
        for found, status, extra in problems:
            if found:
                return status, _REASONS[status], extra
        return None

    def _refuse(
        self,
        status: int,
        reason: str,
        headers: dict[str, str] | None = None,
        *,
        drain: bool = True,
    ) -> None:
        """Answer ``status``, count ``reason``; read off a body on its way so the answer lands."""
        intake = self.server.intake
        intake.metrics.inc(metrics.REFUSED, reason=reason)
        self.server.refusals.note(reason, self.client_address[0], time.monotonic())
        text = f"{reason.replace('_', ' ')}\n".encode()
        try:
            self._answer(status, text, headers)
        except OSError:
            return
        if drain:
            self._drain()

    def _drain(self) -> None:
        headers = getattr(self, "headers", None)
        length = headers.get("Content-Length", "") if headers is not None else ""
        left = (
            min(int(length), self.server.intake.config.max_batch_bytes) if length.isdigit() else 0
        )
        deadline = time.monotonic() + DRAIN_SECONDS
        try:
            while left > 0 and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", _TEXT)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # every request is counted; refusals are logged by RefusalLog
