"""A stand-in for Graylog on 127.0.0.1: its REST API subset and real GELF HTTP inputs.

Graylog itself (Java, MongoDB, OpenSearch) cannot run here. This models, from
Graylog2/graylog2-server at tags 6.3.15 and 7.1.7, the files under
``graylog2-server/src/main/java/org/graylog2/``: ``rest/resources/HelloWorldResource.java``,
``rest/resources/system/inputs/{InputsResource,InputStatesResource}.java``,
``rest/resources/system/indexer/IndexSetsResource.java``,
``rest/resources/streams/StreamResource.java``,
``rest/resources/streams/rules/StreamRuleResource.java``, ``plugin/Message.java``,
``inputs/codecs/GelfDecoder.java``, ``inputs/transports/netty/HttpHandler.java``,
``shared/security/RestPermissions.java`` and ``VerboseCsrfProtectionFilter``:

- ``HelloWorldResource`` (``GET /api/``: the version), ``InputsResource`` (``GET``/``POST
  /api/system/inputs``; configuration comes back under ``attributes``; a new input's
  desired state is RUNNING, so it starts by itself; the port is not range-checked),
  ``InputStatesResource`` (``GET /api/system/inputstates``, ``PUT .../{id}`` starts),
  ``IndexSetsResource`` (``GET /api/system/indices/index_sets``), ``StreamResource``
  (``GET``/``POST /api/streams``, ``POST /api/streams/{id}/resume|pause``; new streams are
  paused; 7.x takes ``CreateEntityRequest`` ``{"entity", "share_request"}``, 6.x
  ``UnwrappedCreateEntityRequest`` with the fields at the top level; the other shape is a
  400), ``StreamRuleResource`` (``POST /api/streams/{id}/rules``), ``RestPermissions``
  names, and ``VerboseCsrfProtectionFilter`` (a non-GET request without ``X-Requested-By``
  is a 400). Token auth is basic auth ``<token>:token``; here
  every route needs it (401 otherwise).
- A GELF HTTP input per running input: ``HttpHandler`` (the configured auth header, else 401;
  POST only, else 405; path exactly ``/gelf``, else 404; then 202, whatever the decoder makes
  of the body; a body over ``max_chunk_size`` is refused with 413 by Netty's aggregator) and
  ``GelfDecoder`` (the same in both versions) + ``Message.addField`` (the rules in
  `decode_gelf`). Compressed payloads are not modelled.
- Stream routing by exact-match rules (``StreamRuleType.EXACT``), AND or OR, running streams
  only.

With ``tls``, the API is served over https (the client then needs the test CA).
``mangle`` and ``raw`` make it misbehave as a broken proxy or Graylog could: an answer
rewritten (a field missing), or raw bytes sent instead, optionally one byte at a time.

Not modelled: clustering (one node), paging, sharing, other rule types, extractors, pipelines.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
GELF_HTTP_INPUT = "org.graylog2.inputs.gelf.http.GELFHttpInput"
ALL_PERMISSIONS = frozenset({"*"})
# Message.RESERVED_FIELDS that GELF cannot set (ES_FIELDS), and what GelfDecoder sets itself.
_UNSETTABLE = frozenset({"_id", "_ttl", "_source", "_all", "_index", "_type", "_score"})
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.@-_")
_REQUIRED_INPUT_CONFIG = ("bind_address", "port", "recv_buffer_size")


class ApiError(Exception):
    def __init__(self, status: int, message: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Received:
    """One decoded GELF message, with the titles of the streams it was routed to."""

    fields: dict[str, Any]
    streams: list[str]


@dataclass
class GelfInput:
    """A GELF HTTP input: its stored summary and, while running, its listener."""

    summary: dict[str, Any]
    state: str = "STOPPED"
    detailed_message: str | None = None
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None
    received: list[Received] = field(default_factory=list[Received])
    rejected: list[str] = field(default_factory=list[str])


class FakeGraylog:
    """Graylog's REST API on an ephemeral loopback port; GELF inputs on their own ports."""

    def __init__(
        self,
        version: str = "7.1.7+3b6c2a1",
        tokens: dict[str, frozenset[str]] | None = None,
        tls: ssl.SSLContext | None = None,
    ):
        self.version = version
        self.tokens = tokens if tokens is not None else {"admin-token": ALL_PERMISSIONS}
        self.requests: list[tuple[str, str]] = []
        self.inputs: dict[str, GelfInput] = {}
        self.streams: dict[str, dict[str, Any]] = {}
        self.index_sets = [
            {"id": "6650a1b2c3d4e5f601234567", "title": "Default index set", "default": True},
            {"id": "6650a1b2c3d4e5f601234568", "title": "Graylog Events", "default": False},
        ]
        self.fail: dict[tuple[str, str], tuple[int, str]] = {}
        """(method, path) -> (status, message) answered instead of the real thing."""
        self.mangle: dict[tuple[str, str], Callable[[Any], Any]] = {}
        """(method, path without query) -> a rewrite of the JSON answer, after the real work."""
        self.raw: dict[tuple[str, str], RawAnswer] = {}
        """(method, path without query) -> bytes sent on the socket instead of an answer."""
        self._ids = (f"{0x6650A1B2C3D4E5F601230000 + n:024x}" for n in itertools.count(1))
        self._lock = threading.RLock()
        self._server = _Server((LOOPBACK, 0), _ApiHandler, self)
        self.scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,))
        self._thread.start()
        self._add_default_stream()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}/api"

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    def stop(self) -> None:
        for gelf_input in list(self.inputs.values()):
            self.stop_input(gelf_input.summary["id"])
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def new_id(self) -> str:
        return next(self._ids)

    def _add_default_stream(self) -> None:
        stream_id = "000000000000000000000001"
        self.streams[stream_id] = {
            "id": stream_id,
            "title": "Default Stream",
            "description": "Contains messages that are not explicitly routed to other streams",
            "rules": [],
            "matching_type": "AND",
            "disabled": False,
            "is_default": True,
            "index_set_id": self.index_sets[0]["id"],
            "remove_matches_from_default_stream": False,
        }

    # -- the REST API ---------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, path))
            permissions = self._authenticate(headers.get("Authorization", ""))
            if method != "GET" and not headers.get("X-Requested-By"):
                raise ApiError(
                    400,
                    'CSRF protection header is missing. Please add a "X-Requested-By" header '
                    "to your request.",
                )
            if (method, path) in self.fail:
                raise ApiError(*self.fail[(method, path)])
            status, answer = self._route(method, path, permissions, body)
            rewrite = self.mangle.get((method, path.split("?", 1)[0]))
            return (status, answer) if rewrite is None else (status, rewrite(answer))

    def _authenticate(self, authorization: str) -> frozenset[str]:
        scheme, _, encoded = authorization.partition(" ")
        if scheme != "Basic":
            raise ApiError(401)
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            raise ApiError(401) from None
        if password != "token" or user not in self.tokens:
            raise ApiError(401)
        return self.tokens[user]

    @staticmethod
    def _require(permissions: frozenset[str], *needed: str) -> None:
        """Any one of ``needed`` is enough (Graylog's checkAnyPermission)."""
        if "*" not in permissions and not permissions.intersection(needed):
            raise ApiError(403, "Not authorized")

    def _route(  # noqa: C901 (one case per route, as Graylog's resources list them)
        self, method: str, path: str, perms: frozenset[str], body: bytes
    ) -> tuple[int, Any]:
        route = path.split("?", 1)[0].removeprefix("/api").rstrip("/").split("/")[1:]
        match method, route:
            case "GET", []:
                return 200, {
                    "cluster_id": "b2c1d1e0-0000-4000-8000-000000000001",
                    "node_id": "a1b2c3d4-0000-4000-8000-000000000002",
                    "version": self.version,
                    "tagline": "Manage your logs in the dark",
                }
            case "GET", ["system", "inputs"]:
                listed = (
                    [i.summary for i in self.inputs.values()] if _can(perms, "inputs:read") else []
                )
                return 200, {"inputs": listed, "total": len(listed)}
            case "POST", ["system", "inputs"]:
                return self._create_input(perms, _json(body))
            case "GET", ["system", "inputstates"]:
                states = [self._state(i) for i in self.inputs.values() if i.state != "STOPPED"]
                return 200, {"states": states if _can(perms, "inputs:read") else []}
            case "PUT", ["system", "inputstates", input_id]:
                self._require(perms, "inputs:changestate")
                if input_id not in self.inputs:
                    raise ApiError(404, f"Couldn't find input {input_id}")
                self.start_input(input_id)
                return 200, {"id": input_id}
            case "GET", ["system", "indices", "index_sets"]:
                readable = self.index_sets if _can(perms, "indexsets:read") else []
                return 200, {"total": len(readable), "index_sets": readable, "stats": None}
            case "GET", ["streams"]:
                listed = list(self.streams.values()) if _can(perms, "streams:read") else []
                return 200, {"total": len(listed), "streams": listed}
            case "POST", ["streams"]:
                return self._create_stream(perms, _json(body))
            case "POST", ["streams", stream_id, "rules"]:
                return self._create_rule(perms, stream_id, _json(body))
            case "POST", ["streams", stream_id, ("resume" | "pause") as action]:
                self._require(perms, "streams:changestate", "streams:edit")
                if stream_id not in self.streams:
                    raise ApiError(404, f"Stream <{stream_id}> not found!")
                self.streams[stream_id]["disabled"] = action == "pause"
                return 204, None
            case _:
                raise ApiError(404, f"HTTP 404 Not Found: {method} {path}")

    def _create_input(self, perms: frozenset[str], request: Any) -> tuple[int, Any]:
        self._require(perms, "inputs:create")
        if not isinstance(request, dict) or not request.get("title") or not request.get("type"):
            raise ApiError(400, "Unable to map property title/type")
        self._require(perms, f"inputtypes:create:{request['type']}", "inputtypes:create")
        if request["type"] != GELF_HTTP_INPUT:
            raise ApiError(404, "There is no such input type registered.")
        if not request.get("global") and not request.get("node"):
            raise ApiError(400, "Only global inputs or inputs on a node")
        configuration = request.get("configuration") or {}
        if any(key not in configuration for key in _REQUIRED_INPUT_CONFIG):
            raise ApiError(400, "Missing or invalid input configuration.")
        input_id = self.new_id()
        self.inputs[input_id] = GelfInput(
            summary={
                "id": input_id,
                "title": request["title"],
                "type": request["type"],
                "name": "GELF HTTP",
                "global": bool(request.get("global")),
                "node": request.get("node"),
                "created_at": "2026-12-01T22:40:00.000Z",
                "creator_user_id": "admin",
                "content_pack": None,
                "attributes": dict(configuration),
                "static_fields": {},
            }
        )
        self.start_input(input_id)  # the desired state of a new input is RUNNING
        return 201, {"id": input_id}

    def _state(self, gelf_input: GelfInput) -> dict[str, Any]:
        return {
            "id": gelf_input.summary["id"],
            "state": gelf_input.state,
            "started_at": "2026-12-01T22:40:00.000Z",
            "detailed_message": gelf_input.detailed_message,
            "message_input": gelf_input.summary,
        }

    def _create_stream(self, perms: frozenset[str], request: Any) -> tuple[int, Any]:
        self._require(perms, "streams:create")
        if not isinstance(request, dict):
            raise ApiError(400, "Unable to map the request body")
        wrapped = int(self.version.split(".", 1)[0]) >= 7
        if wrapped:
            if "entity" not in request or set(request) - {"entity", "share_request"}:
                raise ApiError(
                    400,
                    "Unable to map property title. Known properties: entity, share_request",
                )
            stream = request["entity"]
        else:
            if "entity" in request:
                raise ApiError(400, 'Unrecognized field "entity"')
            stream = {k: v for k, v in request.items() if k != "share_request"}
        if not isinstance(stream, dict) or not stream.get("title"):
            raise ApiError(400, "title: must not be empty")
        if stream.get("index_set_id") not in {s["id"] for s in self.index_sets}:
            raise ApiError(
                400, "Index set with ID <{}> does not exist!".format(stream.get("index_set_id"))
            )
        stream_id = self.new_id()
        self.streams[stream_id] = {
            "id": stream_id,
            "title": stream["title"],
            "description": stream.get("description"),
            "rules": [
                {**rule, "id": self.new_id(), "stream_id": stream_id}
                for rule in stream.get("rules") or []
            ],
            "matching_type": stream.get("matching_type") or "AND",
            "disabled": True,  # StreamResource.create / StreamServiceImpl: new streams are paused
            "is_default": False,
            "index_set_id": stream["index_set_id"],
            "remove_matches_from_default_stream": bool(
                stream.get("remove_matches_from_default_stream")
            ),
        }
        return 201, {"stream_id": stream_id}

    def _create_rule(self, perms: frozenset[str], stream_id: str, rule: Any) -> tuple[int, Any]:
        self._require(perms, "streams:edit")
        if stream_id not in self.streams:
            raise ApiError(404, f"Stream <{stream_id}> not found!")
        if not isinstance(rule, dict) or not {"type", "value", "field"} <= set(rule):
            raise ApiError(400, "Unable to map the stream rule")
        rule_id = self.new_id()
        self.streams[stream_id]["rules"].append({**rule, "id": rule_id, "stream_id": stream_id})
        return 201, {"streamrule_id": rule_id}

    # -- GELF HTTP inputs -------------------------------------------------------------------

    def start_input(self, input_id: str) -> None:
        gelf_input = self.inputs[input_id]
        if gelf_input.state == "RUNNING":
            return
        port = gelf_input.summary["attributes"]["port"]
        try:
            server = _Server((LOOPBACK, int(port)), _GelfHandler, (self, gelf_input))
        except (OSError, OverflowError, ValueError) as e:
            gelf_input.state, gelf_input.detailed_message = "FAILED", f"bind {port}: {e}"
            return
        gelf_input.server = server
        gelf_input.thread = threading.Thread(target=server.serve_forever, args=(0.02,))
        gelf_input.thread.start()
        gelf_input.state, gelf_input.detailed_message = "RUNNING", None

    def stop_input(self, input_id: str) -> None:
        gelf_input = self.inputs[input_id]
        if gelf_input.server is not None and gelf_input.thread is not None:
            gelf_input.server.shutdown()
            gelf_input.server.server_close()
            gelf_input.thread.join()
        gelf_input.server = gelf_input.thread = None
        gelf_input.state = "STOPPED"

    def route(self, message: dict[str, Any]) -> list[str]:
        """Titles of the running streams a decoded message goes to (StreamRouterEngine)."""
        titles = []
        for stream in self.streams.values():
            if stream["disabled"]:
                continue
            if stream.get("is_default"):
                titles.append(stream["title"])
                continue
            matches = [_rule_matches(rule, message) for rule in stream["rules"]]
            if matches and (all(matches) if stream["matching_type"] == "AND" else any(matches)):
                titles.append(stream["title"])
        return titles

    def received(self) -> list[Received]:
        with self._lock:
            return [r for i in self.inputs.values() for r in i.received]

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The decoded messages once ``count`` arrived (decoding follows the 202 answer)."""
        deadline = time.monotonic() + timeout
        while len(received := self.received()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(received)} of {count} GELF messages arrived")
            time.sleep(0.005)
        return received


def _can(permissions: frozenset[str], permission: str) -> bool:
    return "*" in permissions or permission in permissions


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        raise ApiError(400, "Failed to parse JSON") from None


def _rule_matches(rule: dict[str, Any], message: dict[str, Any]) -> bool:
    if rule["type"] != 1:
        raise NotImplementedError("only exact-match rules are modelled")
    value = message.get(rule["field"])
    matched = value is not None and str(value) == rule["value"]
    return matched != bool(rule.get("inverted"))


class GelfRejectedError(ValueError):
    """GelfDecoder would throw InputProcessingException: the message is lost."""


def decode_gelf(body: bytes, received_at: float | None = None) -> dict[str, Any]:
    """A message's stored fields, by GelfDecoder.decode and Message.addField (7.1.7)."""
    try:
        node = json.loads(body.decode("utf-8"))
    except ValueError as e:
        raise GelfRejectedError(f"invalid JSON: {e}") from None
    if not isinstance(node, dict):
        raise GelfRejectedError("JSON is null/could not be parsed (invalid JSON)")
    _validate(node)
    fields: dict[str, Any] = {}

    def add(key: str, value: Any) -> None:
        """Message.addField: reserved or invalid keys and blank optional strings are dropped."""
        key = key.strip()
        value = value.strip() if isinstance(value, str) else value
        valid_key = key and key not in _UNSETTABLE and not set(key) - _KEY_CHARS
        if valid_key and (value != "" or key in ("message", "source")):
            fields[key] = value

    timestamp = _timestamp(node.get("timestamp"))
    add("message", str(node.get("short_message", node.get("message", ""))))
    add("source", _as_text(node.get("host")))
    fields["timestamp"] = timestamp if timestamp > 0 else (received_at or time.time())
    if "full_message" in node:
        add("full_message", _as_text(node["full_message"]))
    for key, value in node.items():
        name = key[1:] if key.startswith("_") and len(key) > 1 else key
        if key == "version" or name in ("short_message", "host", "timestamp") or name in fields:
            continue
        stored = _stored_value(value)
        if stored is not None:
            add(name, stored)
    return fields


def _stored_value(value: Any) -> Any:
    """How GelfDecoder keeps a JSON value: None when it skips it."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))  # containers become their JSON text
    if isinstance(value, bool) or value is None:
        return None  # Jackson BooleanNode / NullNode: skipped
    if isinstance(value, int):
        return (value + 2**63) % 2**64 - 2**63  # JsonNode.asLong wraps
    return value


def _validate(node: dict[str, Any]) -> None:
    if "host" in node:
        if not isinstance(node["host"], str):
            raise GelfRejectedError('has invalid "host"')
        if not node["host"].strip():
            raise GelfRejectedError('has empty mandatory "host" field.')
    short, message = node.get("short_message"), node.get("message")
    if "short_message" in node:
        if not isinstance(short, str):
            raise GelfRejectedError('has invalid "short_message"')
        if not short.strip() and not _as_text(message).strip():
            raise GelfRejectedError('has empty mandatory "short_message" field.')
    elif "message" in node:
        if not isinstance(message, str) or not message.strip():
            raise GelfRejectedError('has invalid or empty "message"')
    else:
        raise GelfRejectedError('is missing mandatory "short_message" or "message" field.')


def _as_text(value: Any) -> str:
    """JsonNode.asText: text as is, numbers as written, containers and null as ''."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return ""


def _timestamp(value: Any) -> float:
    if isinstance(value, bool):
        return -1.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return -1.0
    return -1.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, owner: Any):
        self.owner = owner
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client refusing our test certificate is expected in some tests: stay quiet."""


@dataclass(frozen=True)
class RawAnswer:
    """Bytes a misbehaving server writes, with a pause before each byte (0: all at once)."""

    data: bytes
    seconds_per_byte: float = 0.0

    def send(self, wfile: Any) -> None:
        if not self.seconds_per_byte:
            wfile.write(self.data)
            return
        for byte in self.data:  # bounded: the answer is finite, the client may leave early
            time.sleep(self.seconds_per_byte)
            wfile.write(bytes([byte]))
            wfile.flush()


class _ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        graylog: FakeGraylog = self.server.owner  # type: ignore[attr-defined]
        raw = graylog.raw.get((self.command, self.path.split("?", 1)[0]))
        if raw is not None:
            graylog.requests.append((self.command, self.path))
            self.close_connection = True
            with contextlib.suppress(OSError):
                raw.send(self.wfile)
            return
        try:
            status, answer = graylog.handle(self.command, self.path, self.headers, body)
        except ApiError as e:
            status = e.status
            answer = {"type": "ApiError", "message": e.message} if e.message else None
        data = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _GelfHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        graylog, gelf_input = self.server.owner  # type: ignore[attr-defined]
        attributes = gelf_input.summary["attributes"]
        length = int(self.headers.get("Content-Length") or 0)
        header = attributes.get("authorization_header_name")
        if header and self.headers.get(header) != attributes.get("authorization_header_value"):
            return self._answer(401, length)
        if self.command != "POST":
            return self._answer(405, length)
        if self.path != "/gelf":
            return self._answer(404, length)
        if length > int(attributes.get("max_chunk_size") or 65536):
            return self._answer(413, length)
        body = self.rfile.read(length)
        try:
            fields = decode_gelf(body)
        except GelfRejectedError as e:
            gelf_input.rejected.append(str(e))
        else:
            with graylog._lock:
                gelf_input.received.append(Received(fields, graylog.route(fields)))
        # HttpHandler answers 202 before the codec runs, whatever it makes of the body; here
        # the decoding is done first only so that tests see its outcome once answered.
        self._answer(202, 0)
        return None

    def _answer(self, status: int, unread: int) -> None:
        with contextlib.suppress(OSError):
            self.rfile.read(unread)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def running(graylog: FakeGraylog) -> Iterator[FakeGraylog]:
    try:
        yield graylog
    finally:
        graylog.stop()


def send_to_input(
    port: int, body: bytes, *, path: str = "/gelf", method: str = "POST", headers=None
) -> int:
    """One request to a GELF HTTP input on loopback: its status code."""
    request = urllib.request.Request(
        f"http://{LOOPBACK}:{port}{path}", data=body, headers=headers or {}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]
