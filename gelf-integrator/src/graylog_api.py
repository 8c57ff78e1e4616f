"""A small client for Graylog's REST API (standard library only, no ops).

Token auth is HTTP basic auth with the token as user name and the literal ``token`` as
password. Every request carries ``X-Requested-By`` (Graylog's CSRF filter answers 400 to
a non-GET request without it). Errors never carry the token: only the method, the path,
the status and Graylog's own message.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Final, cast

REQUESTED_BY: Final = "gelf-integrator"
TIMEOUT_SECONDS: Final = 10.0
# Graylog's error bodies are short JSON ({"type": "ApiError", "message": ...}); cap what we keep.
_MAX_MESSAGE_CHARS: Final = 200


class GraylogError(Exception):
    """Any failure to get an answer we can use from Graylog."""


class GraylogUnreachableError(GraylogError):
    """No HTTP answer: connection refused, timeout, DNS or TLS failure."""


class GraylogUntrustedError(GraylogError):
    """Graylog's TLS certificate does not verify against the CA (or the system's CAs)."""


@dataclass
class GraylogHttpError(GraylogError):
    """Graylog answered with an error status."""

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

    def __init__(self, base_url: str, token: str, ca_cert: str | None = None):
        self.base_url = base_url.rstrip("/")
        credentials = base64.b64encode(f"{token}:token".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {credentials}",
            "Accept": "application/json",
            "X-Requested-By": REQUESTED_BY,
        }
        self._token = token
        context = ssl.create_default_context(cadata=ca_cert) if ca_cert else None
        self._opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPSHandler(context=context)
        )
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
        # The base URL is checked to be http(s) by the charm's config validation.
        request = urllib.request.Request(  # noqa: S310
            self.base_url + path, data=data, headers=headers, method=method
        )
        try:
            with self._opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            message = _error_message(e).replace(self._token, "<token>")
            raise GraylogHttpError(method, path, e.code, message) from None
        except (TimeoutError, urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise GraylogUntrustedError(f"{self.base_url}: {reason.verify_message}") from None
            raise GraylogUnreachableError(f"{self.base_url}: {reason}") from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise GraylogHttpError(method, path, 200, "answer is not JSON") from None


def field_of(document: Any, key: str) -> Any:
    """``document[key]`` when an answer is the JSON object expected, else None."""
    if isinstance(document, dict):
        return cast("dict[str, Any]", document).get(key)
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would send the token to another URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _error_message(error: urllib.error.HTTPError) -> str:
    """Graylog's own message from an error answer, short and on one line."""
    try:
        raw = error.read(4096)
    except OSError:
        raw = b""
    text = raw.decode("utf-8", "replace")
    try:
        decoded: Any = json.loads(text)
    except ValueError:
        decoded = None
    message = field_of(decoded, "message")
    if isinstance(message, str):
        text = message
    text = " ".join(text.split()) or str(error.reason)
    return text[:_MAX_MESSAGE_CHARS]
