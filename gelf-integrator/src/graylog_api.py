"""A small client for Graylog's REST API (standard library only, no ops).

Token auth is HTTP basic auth with the token as user name and the literal ``token`` as
password. Every request carries ``X-Requested-By`` (Graylog's CSRF filter answers 400 to
a non-GET request without it). Errors never carry the token: only the method, the path,
the status and Graylog's own message.

All calls of one client share one deadline for the whole exchange (name lookup, connect,
TLS, headers and body), not a timeout per socket read: a Graylog that dribbles its answer
cannot hold a hook, during which Juju runs no other hook for the unit.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final, cast
from urllib.parse import urlsplit

REQUESTED_BY: Final = "gelf-integrator"
BUDGET_SECONDS: Final = 3.0
"""How long all the calls of one client may take together: a hook stays well under 5 s."""
MAX_ANSWER_BYTES: Final = 16 * 2**20
# Graylog's error bodies are short JSON ({"type": "ApiError", "message": ...}); cap what we keep.
_MAX_MESSAGE_CHARS: Final = 200


class GraylogError(Exception):
    """Any failure to get an answer we can use from Graylog."""


class GraylogUnreachableError(GraylogError):
    """No whole HTTP answer in time: connection refused, slow answer, DNS or network failure."""


class GraylogUntrustedError(GraylogError):
    """Graylog's TLS certificate does not verify against the CA (or the system's CAs)."""


@dataclass
class GraylogHttpError(GraylogError):
    """Graylog answered, but not with a 2xx status and a JSON body."""

    method: str
    path: str
    status: int
    message: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}: HTTP {self.status}: {self.message}"


@dataclass
class RequestLog:
    """What a client sent (method, path), for the debug log: never a header or a body."""

    requests: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])


class GraylogApi:
    """Authenticated JSON requests against one Graylog REST API base URL."""

    def __init__(
        self,
        base_url: str,
        token: str,
        ca_cert: str | None = None,
        budget_seconds: float = BUDGET_SECONDS,
    ):
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)  # checked to be http(s) with a host by the config
        self._https = parts.scheme == "https"
        self._host, self._port, self._path = parts.hostname or "", parts.port, parts.path
        credentials = base64.b64encode(f"{token}:token".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {credentials}",
            "Accept": "application/json",
            "X-Requested-By": REQUESTED_BY,
        }
        self._token = token
        self._ca_cert = ca_cert
        self._context: ssl.SSLContext | None = None
        self._budget = budget_seconds
        self._deadline = time.monotonic() + budget_seconds
        self.log = RequestLog()

    def __repr__(self) -> str:
        return f"GraylogApi({self.base_url!r})"

    def get(self, path: str) -> Any:
        """GET ``path`` (relative to the base URL)."""
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        """POST ``body`` as JSON (or nothing) to ``path``."""
        return self.request("POST", path, body)

    def put(self, path: str) -> Any:
        """PUT to ``path`` with no body (Graylog's state changes take none)."""
        return self.request("PUT", path)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; return the decoded JSON answer, or None for an empty one."""
        self.log.requests.append((method, path))
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            status, raw = self._exchange(method, self._path + path, data, headers)
        except TimeoutError:
            raise GraylogUnreachableError(f"no whole answer within {self._budget:g} s") from None
        except ssl.SSLCertVerificationError as e:
            raise GraylogUntrustedError(str(e.verify_message)) from None
        except (OSError, http.client.HTTPException) as e:
            raise GraylogUnreachableError(_reason(e)) from None
        if not 200 <= status < 300:  # a redirect too: following it would send the token away
            raise GraylogHttpError(method, path, status, self._error_message(raw, status))
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # nesting deeper than the parser goes
            raise GraylogHttpError(method, path, status, "answer is not JSON") from None

    def _exchange(
        self, method: str, target: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        connection, sock = self._connect()
        try:
            connection.request(method, target, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read(MAX_ANSWER_BYTES + 1)
            if len(raw) > MAX_ANSWER_BYTES:
                raise http.client.HTTPException(f"answer over {MAX_ANSWER_BYTES} bytes")
            if response.length:  # read(amt) returns what came before the close, silently
                raise http.client.IncompleteRead(raw, response.length)
            return response.status, raw
        finally:
            connection.close()
            sock.close()

    def _connect(self) -> tuple[http.client.HTTPConnection, socket.socket]:
        """A connected (and TLS-wrapped) connection whose socket reads end by the deadline."""
        remaining = self._remaining()
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=remaining, context=self._tls_context()
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=remaining)
        # http.client's own hook for making the socket: here the name lookup is bounded too.
        connection._create_connection = self._open_socket  # type: ignore[attr-defined]
        try:
            connection.connect()  # the TLS handshake runs under one timeout for all its reads
        except BaseException:
            connection.close()  # the plain socket, when TLS failed
            raise
        sock = connection.sock
        connection.sock = _DeadlineSocket(sock, self._deadline)
        return connection, sock

    def _open_socket(self, address: tuple[str, int], *_: Any, **__: Any) -> socket.socket:
        addresses = _resolve(address, self._remaining())
        error: OSError = OSError(f"{address[0]}: no address")
        for family, kind, proto, _name, where in addresses:
            sock = socket.socket(family, kind, proto)
            sock.settimeout(self._remaining())
            try:
                sock.connect(where)
            except OSError as e:
                sock.close()
                error = e
            else:
                return sock
        raise error

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                self._context = ssl.create_default_context(cadata=self._ca_cert or None)
            except (ssl.SSLError, ValueError):
                raise GraylogUntrustedError("ca_cert cannot be loaded as a CA") from None
        return self._context

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    def _error_message(self, raw: bytes, status: int) -> str:
        """Graylog's own message from an error answer, short, on one line, without the token."""
        text = raw[:4096].decode("utf-8", "replace")
        try:
            decoded: Any = json.loads(text)
        except (ValueError, RecursionError):
            decoded = None
        message = field_of(decoded, "message")
        if isinstance(message, str):
            text = message
        text = " ".join(text.split()) or http.client.responses.get(status, "")
        return text.replace(self._token, "<token>")[:_MAX_MESSAGE_CHARS]


def field_of(document: Any, key: str) -> Any:
    """``document[key]`` when an answer is the JSON object expected, else None."""
    if isinstance(document, dict):
        return cast("dict[str, Any]", document).get(key)
    return None


def _reason(error: BaseException) -> str:
    """What went wrong, briefly: the OS's words, or the HTTP parser's exception name."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


def _resolve(address: tuple[str, int], seconds: float) -> list[AddressInfo]:
    """``getaddrinfo`` within ``seconds``: the C resolver takes no timeout of its own."""
    found: list[list[AddressInfo] | OSError] = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(*address, type=socket.SOCK_STREAM))
        except OSError as e:
            found.append(e)

    thread = threading.Thread(target=lookup, daemon=True)  # left behind if the lookup hangs
    thread.start()
    thread.join(seconds)
    if not found:
        raise TimeoutError
    if isinstance(found[0], OSError):
        raise found[0]
    return found[0]


class _DeadlineSocket:
    """A connected socket whose every send and read ends by one deadline."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._deadline = deadline

    def _arm(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self._sock.settimeout(remaining)

    def sendall(self, data: bytes) -> None:
        self._arm()
        self._sock.sendall(data)

    def recv_into(self, buffer: Any) -> int:
        self._arm()
        return self._sock.recv_into(buffer)

    def makefile(self, mode: str = "rb", *_: Any, **__: Any) -> io.BufferedReader:
        return io.BufferedReader(_Reader(self))

    def close(self) -> None:
        """Nothing: http.client closes early when the server will; the client closes last."""


class _Reader(io.RawIOBase):
    """The response's byte stream, read through `_DeadlineSocket` (as ``socket.makefile``)."""

    def __init__(self, sock: _DeadlineSocket):
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)
