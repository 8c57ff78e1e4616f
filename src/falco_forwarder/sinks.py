"""One HTTP POST to a sink, classified as delivered, worth retrying, or to be dropped.

The connection is kept alive between requests; HTTPS verifies the certificate against the
sink's ``ca_cert`` or else the system store. A request has one deadline for all of it
(connect, TLS, send, and the whole answer): a sink that answers a byte at a time cannot hold
it longer. `HttpSender.abort`, from any thread, ends a request in progress at once. Header
values are never logged.
"""

import base64
import contextlib
import email.utils
import enum
import http.client
import io
import math
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
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
    """Posts bodies to one sink URL over a reused connection; one thread posts, any aborts."""

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
        self._deadline = 0.0
        self._body = b""  # the request sent last, sent again if its connection was stale
        self._reused = False

    def post(self, body: bytes) -> Attempt:
        """POST ``body`` and read the answer: `send`, then `receive`; never raises."""
        return self.send(body) or self.receive()

    def send(self, body: bytes) -> Attempt | None:
        """Send the request for ``body``; None once sent (then `receive`), or why it failed.

        The request has one deadline, from now to the end of its answer. Never raises.
        """
        self._deadline = time.monotonic() + self._timeout
        self._body = body
        self._reused = self._conn is not None and self._conn.sock is not None
        try:
            try:
                self._send(body)
            except ConnectionError:
                if not self._reused:
                    raise
                self._reused = False  # the sink closed the idle connection: not a retry
                self.close()
                self._send(body)
        except Exception as e:  # an abort from another thread may surface as anything
            return self._failed(e)
        return None

    def receive(self) -> Attempt:
        """Read the answer to the request `send` sent; never raises.

        A kept-alive connection found stale here gets the request again on a fresh one.
        """
        assert self._conn is not None
        try:
            try:
                response = self._conn.getresponse()
            except ConnectionError:
                if not self._reused:
                    raise
                self._reused = False
                self.close()
                self._send(self._body)
                assert self._conn is not None
                response = self._conn.getresponse()
            response.read(_MAX_RESPONSE_BYTES)  # drain it so the connection can be reused
            if not response.isclosed():
                self.close()
        except Exception as e:  # as in `send`
            return self._failed(e)
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

    def _failed(self, error: Exception) -> Attempt:
        self.close()
        if isinstance(error, TimeoutError):
            return Attempt(Outcome.RETRY, f"timed out: no whole answer within {self._timeout:g} s")
        return Attempt(Outcome.RETRY, _describe(error))

    def _send(self, body: bytes) -> None:
        if self._conn is None:
            if self._context is None:
                self._conn = http.client.HTTPConnection(self._host, self._port)
            else:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, context=self._context
                )
            self._conn.auto_open = 0  # never a connection that does not keep the deadline
        if self._conn.sock is None:
            self._conn.timeout = self._remaining()  # for connect and the TLS handshake
            self._conn.connect()
            assert self._conn.sock is not None
            self._conn.sock = _DeadlineSocket(self._conn.sock, self._remaining)  # pyright: ignore[reportAttributeAccessIssue]
        self._conn.request("POST", self._target, body=body, headers=self._headers)

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        return remaining

    def abort(self) -> None:
        """End a request in progress at once (it fails and is not retried by this sender)."""
        self._deadline = 0.0
        conn = self._conn
        sock = getattr(conn, "sock", None)
        if isinstance(sock, _DeadlineSocket):
            sock.shut()

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


class _DeadlineSocket:
    """A connected socket whose every send and receive waits no longer than the deadline.

    http.client only sends with `sendall`, reads through `makefile` and closes.
    """

    def __init__(self, sock: socket.socket, remaining: Callable[[], float]):
        self._sock = sock
        self._remaining = remaining
        self._plain = not isinstance(sock, ssl.SSLSocket) and hasattr(socket, "MSG_MORE")

    def sendall(self, data: Any) -> None:
        self._sock.settimeout(self._remaining())
        if self._plain and bytes(data[-4:]) == b"\r\n\r\n":
            # http.client sends the head, then the body: one segment on the wire, one wakeup
            # of the sink instead of two.
            self._sock.sendall(data, socket.MSG_MORE)
        else:
            self._sock.sendall(data)

    def recv_into(self, buffer: Any) -> int:
        self._sock.settimeout(self._remaining())
        return self._sock.recv_into(buffer)

    def makefile(self, mode: str = "rb", **_: Any) -> io.BufferedReader:
        del mode
        return io.BufferedReader(_Receiver(self))

    def shut(self) -> None:
        """Shut the connection down from another thread: a blocked receive returns at once."""
        with contextlib.suppress(OSError):  # already closed
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def close(self) -> None:
        self._sock.close()


class _Receiver(io.RawIOBase):
    """The byte stream http.client reads an answer from, through `_DeadlineSocket`."""

    def __init__(self, sock: _DeadlineSocket):
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)
