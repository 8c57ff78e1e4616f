"""One HTTP POST to a sink, classified as delivered, worth retrying, or to be dropped.

The connection is kept alive between alerts; HTTPS verifies the certificate against
the sink's ``ca_cert`` or else the system store. Header values are never logged.
"""

import base64
import email.utils
import enum
import http.client
import math
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from falco_forwarder.config import SinkConfig
from falco_forwarder.metrics import HTTP_4XX, HTTP_OTHER

USER_AGENT: Final = "falco-forwarder/1"
# Enough of a response body to keep the connection reusable; more and we reconnect.
_MAX_RESPONSE_BYTES: Final = 64 * 1024


class Outcome(enum.Enum):
    """What to do with the alert after an attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DROP = "drop"


@dataclass(frozen=True)
class Attempt:
    """The result of one POST: the outcome, a loggable detail, Retry-After, why dropped."""

    outcome: Outcome
    detail: str
    retry_after: float | None = None
    drop_reason: str = ""


class HttpSender:
    """Posts bodies to one sink URL over a reused connection; not thread-safe (one per worker)."""

    def __init__(self, sink: SinkConfig, timeout: float):
        parts = urlsplit(sink.url)
        self._host = parts.hostname or ""
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout
        self._context = (
            ssl.create_default_context(cadata=sink.ca_cert) if parts.scheme == "https" else None
        )
        self._headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if parts.username is not None and not any(
            name.lower() == "authorization" for name in sink.headers
        ):
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(userinfo.encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._headers.update(sink.headers)
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> Attempt:
        """POST ``body`` once (twice if a kept-alive connection turns out stale); never raises."""
        reused = self._conn is not None
        try:
            try:
                response = self._request(body)
            except ConnectionError:
                if not reused:
                    raise
                # The sink closed the idle connection: a fresh one is not a retry.
                self.close()
                response = self._request(body)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return Attempt(Outcome.RETRY, _describe(e))
        status = response.status
        detail = f"HTTP {status} {response.reason}".rstrip()
        if 200 <= status < 300:
            return Attempt(Outcome.DELIVERED, detail)
        if status == 429 or status >= 500:
            return Attempt(
                Outcome.RETRY, detail, retry_after_seconds(response.getheader("Retry-After"))
            )
        reason = HTTP_4XX if 400 <= status < 500 else HTTP_OTHER
        return Attempt(Outcome.DROP, detail, drop_reason=reason)

    def _request(self, body: bytes) -> http.client.HTTPResponse:
        if self._conn is None:
            if self._context is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, self._timeout)
            else:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
        self._conn.request("POST", self._target, body=body, headers=self._headers)
        response = self._conn.getresponse()
        response.read(_MAX_RESPONSE_BYTES)  # drain it so the connection can be reused
        if not response.isclosed():
            self.close()
        return response

    def close(self) -> None:
        """Close the kept-alive connection, if any."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Parse a Retry-After header (seconds or an HTTP date) into seconds from now, or None."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now()
        except ValueError:
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _describe(error: BaseException) -> str:
    """A short error text; exception messages here carry no header values."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {error.verify_message}"
    return str(error) or type(error).__name__
