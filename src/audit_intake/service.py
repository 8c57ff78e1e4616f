"""The running intake: the webhook door, the spool, the feed to Falco, and the status endpoint.

`Intake.reload` applies new tokens and a new certificate in place (SIGHUP): a connection already
open finishes with what it started with, the next one uses the new ones.
"""

from __future__ import annotations

import errno
import logging
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Final, Self, cast

from audit_intake import metrics
from audit_intake.config import AcceptedToken, ConfigError, IntakeConfig, load_config
from audit_intake.eventlist import count_events
from audit_intake.feed import FalcoFeed
from audit_intake.metrics import IntakeMetrics
from audit_intake.spool import Spool, SpooledBatch
from audit_intake.webhook import WebhookServer, tls_context

logger = logging.getLogger(__name__)

HEALTH_PATH: Final = "/healthz"
METRICS_PATH: Final = "/metrics"
_POLL_SECONDS: Final = 0.1  # how often the serving loops look for shutdown
# At an upgrade the webhook port is k8saudit's until Falco reloads onto its loopback port.
BIND_WAIT_SECONDS: Final = 30.0


class Intake:
    """Binds both ports on construction; serves after `start`, until `close`.

    A webhook port in use is tried again for ``bind_wait_seconds`` before giving up.
    """

    def __init__(self, config: IntakeConfig, *, bind_wait_seconds: float = 0.0):
        self.config = config
        self.tokens: tuple[AcceptedToken, ...] = config.tokens
        self.tls_context: ssl.SSLContext | None = tls_context(config.tls_pem)
        self.spool = Spool(config.spool_dir, config.spool_max_bytes)
        self.metrics = IntakeMetrics(self._gauges)
        self.feed = FalcoFeed(self.spool, config.k8saudit_url, config.settle_seconds, self.metrics)
        self._servers: list[ThreadingHTTPServer] = []
        self._started = False
        try:
            self._servers.append(self._bind_webhook(bind_wait_seconds))
            self._servers.append(StatusServer((config.metrics_host, config.metrics_port), self))
        except BaseException:
            self.close()
            raise
        self._threads = [
            threading.Thread(target=server.serve_forever, args=(_POLL_SECONDS,), name=name)
            for server, name in zip(self._servers, ("webhook", "status"), strict=True)
        ]

    def _bind_webhook(self, wait_seconds: float) -> WebhookServer:
        address = (self.config.webhook_host, self.config.webhook_port)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                return WebhookServer(address, self)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                    raise
                logger.warning("port %d in use: trying again", address[1])
                time.sleep(0.5)

    @property
    def webhook_port(self) -> int:
        """The bound webhook port (useful when the configuration asks for port 0)."""
        return self._servers[0].server_address[1]

    @property
    def metrics_port(self) -> int:
        """The bound status port."""
        return self._servers[1].server_address[1]

    def start(self) -> None:
        """Feed Falco and serve both ports."""
        self._started = True
        self.feed.start()
        for thread in self._threads:
            thread.start()
        scheme = "https" if self.tls_context else "http"
        logger.info(
            "taking audit batches on %s://%s:%d%s for %s, status on :%d",
            scheme,
            self.config.webhook_host,
            self.webhook_port,
            self.config.webhook_path,
            self.config.k8saudit_url,
            self.metrics_port,
        )

    def taken(self, batch: SpooledBatch, body: bytes) -> None:
        """A batch was kept and answered 200: count it and hand it to the feed."""
        events = count_events(body)
        self.metrics.taken(events, len(body), time.time())
        self.feed.enqueue(batch, events)

    def reload(self, path: Path) -> bool:
        """Apply the tokens and certificate in the file at ``path``; a bad file changes nothing."""
        try:
            config = load_config(path)
            if config.static_part() != self.config.static_part():
                raise ConfigError("only tokens and tls_pem change without a restart")
            context = tls_context(config.tls_pem)
        except (ConfigError, ssl.SSLError, OSError) as exc:
            logger.error("configuration not reloaded, the running one stays: %s", exc)
            self.metrics.inc(metrics.RELOADS, result="error")
            return False
        self.tokens, self.tls_context, self.config = config.tokens, context, config
        self.metrics.inc(metrics.RELOADS, result="ok")
        logger.info("reloaded: %d accepted tokens, %s", len(config.tokens), _scheme(context))
        return True

    @property
    def healthy(self) -> bool:
        """Whether the feed to Falco runs (the servers answer if this is asked)."""
        return self.feed.alive

    def close(self) -> None:
        """Stop taking batches, stop the feed; the spool keeps what Falco may not have."""
        for server in self._servers:
            if self._started:
                server.shutdown()
            server.server_close()
        if self._started:
            self.feed.stop()
        self.spool.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _gauges(self) -> dict[str, float]:
        batches, size = self.spool.unsettled
        return {
            metrics.SPOOL_BYTES: self.spool.disk_bytes,
            metrics.SPOOL_LIMIT: self.spool.max_bytes,
            metrics.UNSETTLED: batches,
            metrics.UNSETTLED_BYTES: size,
        }


def _scheme(context: ssl.SSLContext | None) -> str:
    return "https" if context is not None else "plain http"


class StatusServer(ThreadingHTTPServer):
    """``GET /metrics`` and ``GET /healthz`` (for Pebble and Prometheus), plain HTTP."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], intake: Intake):
        self.intake = intake
        super().__init__(address, _StatusHandler)


class _StatusHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "audit-intake"
    sys_version = ""
    timeout = 60.0

    def do_GET(self) -> None:
        intake = cast(StatusServer, self.server).intake
        path = self.path.split("?", 1)[0]
        if path == METRICS_PATH:
            self._reply(200, intake.metrics.render().encode(), metrics.CONTENT_TYPE)
        elif path == HEALTH_PATH:
            healthy = intake.healthy
            self._reply(200 if healthy else 503, b"ok\n" if healthy else b"feed stopped\n")
        else:
            self._reply(404, b"not found\n")

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass
