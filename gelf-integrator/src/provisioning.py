"""Idempotent Graylog set-up for the related senders: one GELF HTTP input, one stream each.

Learnt from Graylog2/graylog2-server 6.3.15 and 7.1.7 (``InputsResource``,
``InputStatesResource``, ``StreamResource``, ``IndexSetsResource``,
``HelloWorldResource``): a new input runs by itself, a new stream starts paused
(``POST /streams/{id}/resume`` starts it), 7.x wraps a new stream as
``{"entity": ..., "share_request": ...}`` where 6.x takes the fields at the top
level, and an input's configuration comes back under ``attributes``.

Only what a run finds wrong is written: a second run over a converged Graylog makes no
write request. Streams are ours when their description carries our marker; nothing
else is ever changed, and ours are paused, never deleted, when their sender goes.
Every problem names the option to look at (``api_url``, ``api_token_secret``, ``ca_cert``,
``gelf_url``) and says what is wrong, never echoing the token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit

from graylog_api import (
    GraylogApi,
    GraylogHttpError,
    GraylogUnreachableError,
    GraylogUntrustedError,
    field_of,
)

GELF_HTTP_INPUT: Final = "org.graylog2.inputs.gelf.http.GELFHttpInput"
RUNNING: Final = "RUNNING"
EXACT_MATCH: Final = 1  # StreamRuleType.EXACT
# GELF additional fields lose their leading "_" in Graylog: _juju_model is stored as juju_model.
MODEL_FIELD: Final = "juju_model"
APPLICATION_FIELD: Final = "juju_application"
CLUSTER_FIELD: Final = "cluster"
SUPPORTED_MAJORS: Final = (6, 7)

_MAX_VERSION_CHARS: Final = 32
# Graylog's IDs are MongoDB ObjectIds (24 hex digits); accept a little more, nothing unsafe.
_ID: Final = re.compile(r"[0-9A-Za-z_-]{1,64}")
_T = TypeVar("_T")


class ProvisioningBlockedError(Exception):
    """Graylog refused, or answered what we cannot use: the operator must act."""


class ProvisioningWaitingError(Exception):
    """Graylog did not answer; the next hook tries again."""


@dataclass(frozen=True)
class Sender:
    """A related application whose alerts get a stream (one per cluster, when it names one)."""

    model: str
    application: str
    cluster: str | None = None

    @property
    def name(self) -> str:
        """``[cluster/]model/application``: unique, as none of the three holds a ``/``."""
        prefix = f"{self.cluster}/" if self.cluster else ""
        return f"{prefix}{self.model}/{self.application}"

    @property
    def stream_title(self) -> str:
        """The stream's title in Graylog, which names the sender."""
        return f"Falco alerts: {self.name}"


@dataclass(frozen=True)
class Provisioned:
    """What a run left in place, for the status."""

    version: str
    input_id: str
    port: int
    running_streams: tuple[str, ...]
    paused_streams: tuple[str, ...]


def owner_marker(owner: str) -> str:
    """The line that marks a stream as created by the integrator application ``owner``."""
    return f"Managed by Juju application {owner} (gelf-integrator)."


def provision(
    api: GraylogApi,
    *,
    port: int,
    max_message_bytes: int,
    senders: Iterable[Sender],
    owner: str,
    auth: tuple[str, str] | None = None,
) -> Provisioned:
    """Converge Graylog on one running GELF HTTP input and one running stream per sender.

    ``owner`` ("<model>/<app>" of the integrator) marks the streams this run may touch;
    ``auth`` (header name, value) is set on an input it creates.

    Raises:
        ProvisioningBlockedError: on 401/403 (naming the missing permission) or an unexpected
            answer.
        ProvisioningWaitingError: when Graylog gives no whole answer in time.
    """
    call = _Caller(api)
    hello = call(lambda: api.get("/"), "GET", "/", "none")
    version = str(field_of(hello, "version") or "")[:_MAX_VERSION_CHARS]
    major = _major(version)
    input_id = _ensure_input(
        call, api, port=port, max_message_bytes=max_message_bytes, auth=auth, owner=owner
    )
    running, paused = _ensure_streams(call, api, sorted(set(senders), key=_title), owner, major)
    return Provisioned(version, input_id, port, running, paused)


def _title(sender: Sender) -> str:
    return sender.stream_title


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    if not (head.isascii() and head.isdigit()) or int(head) < SUPPORTED_MAJORS[0]:
        raise ProvisioningBlockedError(
            f"api_url: Graylog {version or '?'} is not supported (6.x and 7.x are)"
        )
    return int(head)


class _Caller:
    """Runs one API call, turning failures into operator-facing provisioning errors."""

    def __init__(self, api: GraylogApi):
        self._base_path = urlsplit(api.base_url).path

    def __call__(self, send: Callable[[], _T], method: str, path: str, permission: str) -> _T:
        where = f"{method} {self._base_path}{path}"
        try:
            return send()
        except GraylogUnreachableError as e:
            raise ProvisioningWaitingError(f"api_url: Graylog API: {e}; retrying") from None
        except GraylogUntrustedError as e:
            raise ProvisioningBlockedError(
                f"ca_cert: Graylog API certificate not trusted ({e})"
            ) from None
        except GraylogHttpError as e:
            if e.status == 401:
                raise ProvisioningBlockedError(
                    "api_token_secret: Graylog rejected the token (HTTP 401)"
                ) from None
            if e.status == 403:
                raise ProvisioningBlockedError(
                    f"api_token_secret: the token's user lacks {permission} (HTTP 403 on {where})"
                ) from None
            raise ProvisioningBlockedError(
                f"api_url: {where}: HTTP {e.status}: {e.message}"
            ) from None


def _ensure_input(
    call: _Caller,
    api: GraylogApi,
    *,
    port: int,
    max_message_bytes: int,
    auth: tuple[str, str] | None,
    owner: str,
) -> str:
    inputs = call(lambda: api.get("/system/inputs"), "GET", "/system/inputs", "inputs:read")
    on_port = [i for i in _items(inputs, "inputs") if _port_of(i) == port]
    ours = [i for i in on_port if i.get("type") == GELF_HTTP_INPUT and i.get("global")]
    if not ours and on_port:
        other = on_port[0]
        raise ProvisioningBlockedError(
            f"gelf_url: port {port} is taken by Graylog input {str(other.get('title'))!r} "
            f"({other.get('type')})"
        )
    if not ours:
        body = _input_body(port, max_message_bytes, auth, owner)
        created = call(
            lambda: api.post("/system/inputs", body),
            "POST",
            "/system/inputs",
            "inputs:create, inputtypes:create",
        )
        return _id(created, "id", "POST /system/inputs")  # Graylog starts a new input
    input_id = _id(ours[0], "id", "GET /system/inputs")
    states = call(
        lambda: api.get("/system/inputstates"), "GET", "/system/inputstates", "inputs:read"
    )
    state = next((s for s in _items(states, "states") if s.get("id") == input_id), None)
    if state is None or state.get("state") != RUNNING:
        path = f"/system/inputstates/{input_id}"
        call(lambda: api.put(path), "PUT", path, "inputs:changestate")
        if state is not None and state.get("detailed_message"):
            raise ProvisioningBlockedError(
                f"gelf_url: Graylog input on port {port} was {state.get('state')}: "
                f"{state.get('detailed_message')}; asked it to start"
            )
    return input_id


def _items(document: Any, key: str) -> list[dict[str, Any]]:
    """The objects listed under ``key`` in an answer; anything else is ignored."""
    listed = field_of(document, key)
    if not isinstance(listed, list):
        return []
    return [cast("dict[str, Any]", i) for i in cast("list[Any]", listed) if isinstance(i, dict)]


def _text(document: Any, key: str, request: str) -> str:
    """A text field Graylog always sends; its absence blocks rather than guessing."""
    value = field_of(document, key)
    if not isinstance(value, str) or not value:
        raise ProvisioningBlockedError(f"api_url: {request} answered without {key!r}")
    return value


def _id(document: Any, key: str, request: str) -> str:
    """An object ID, which goes into later request paths: only what Graylog's IDs are made of."""
    value = _text(document, key, request)
    if not _ID.fullmatch(value):
        raise ProvisioningBlockedError(f"api_url: {request} answered an invalid {key!r}")
    return value


def _port_of(summary: Mapping[str, Any]) -> int | None:
    port = field_of(summary.get("attributes"), "port")  # configuration comes back there
    try:
        return int(port)
    except (TypeError, ValueError, OverflowError):
        return None


def _input_body(
    port: int, max_message_bytes: int, auth: tuple[str, str] | None, owner: str
) -> dict[str, Any]:
    configuration: dict[str, Any] = {
        "bind_address": "0.0.0.0",  # noqa: S104 (Graylog's input, reached by the senders)
        "port": port,
        "recv_buffer_size": 1048576,
        "number_worker_threads": 2,
        "tls_enable": False,
        "tcp_keepalive": False,
        "enable_cors": True,
        "max_chunk_size": max_message_bytes,
        "idle_writer_timeout": 60,
        "override_source": None,
        "decompress_size_limit": 8388608,
    }
    if auth is not None:
        configuration["authorization_header_name"] = auth[0]
        configuration["authorization_header_value"] = auth[1]
    return {
        "title": f"GELF HTTP for Falco ({owner})",
        "type": GELF_HTTP_INPUT,
        "global": True,
        "configuration": configuration,
        "node": None,
    }


def _ensure_streams(
    call: _Caller, api: GraylogApi, senders: list[Sender], owner: str, major: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    listing = call(lambda: api.get("/streams"), "GET", "/streams", "streams:read")
    marker = owner_marker(owner)
    ours = {
        _text(s, "title", "GET /streams"): s
        for s in _items(listing, "streams")
        if str(s.get("description") or "").endswith(marker)
    }
    index_set_id: str | None = None
    for sender in senders:
        stream = ours.get(sender.stream_title)
        if stream is None:
            if index_set_id is None:
                index_set_id = _default_index_set(call, api)
            body = _stream_body(sender, index_set_id, marker, wrapped=major >= 7)
            created = call(
                lambda body=body: api.post("/streams", body), "POST", "/streams", "streams:create"
            )
            _set_stream_state(call, api, _id(created, "stream_id", "POST /streams"), "resume")
        else:
            _add_missing_rules(call, api, stream, sender)
            if stream.get("disabled"):
                _set_stream_state(call, api, _id(stream, "id", "GET /streams"), "resume")
    wanted = {s.stream_title for s in senders}
    paused: list[str] = []
    for title, stream in sorted(ours.items()):
        if title not in wanted:
            if not stream.get("disabled"):
                _set_stream_state(call, api, _id(stream, "id", "GET /streams"), "pause")
            paused.append(title)
    return tuple(sorted(wanted)), tuple(paused)


def _add_missing_rules(
    call: _Caller, api: GraylogApi, stream: Mapping[str, Any], sender: Sender
) -> None:
    """Put back a routing rule someone removed from our stream; other rules stay."""
    present = {
        (str(rule.get("field")), str(rule.get("value")))
        for rule in _items(stream, "rules")
        if rule.get("type") == EXACT_MATCH and not rule.get("inverted")
    }
    path = f"/streams/{_id(stream, 'id', 'GET /streams')}/rules"
    for rule in _rules(sender):
        if (rule["field"], rule["value"]) not in present:
            call(lambda rule=rule: api.post(path, rule), "POST", path, "streams:edit")


def _rules(sender: Sender) -> list[dict[str, Any]]:
    """Exact matches on the fields falco-k8s sends (``_juju_model`` ..., ``_cluster``)."""
    matches = [(MODEL_FIELD, sender.model), (APPLICATION_FIELD, sender.application)]
    if sender.cluster:
        matches.append((CLUSTER_FIELD, sender.cluster))
    return [
        {
            "field": field,
            "type": EXACT_MATCH,
            "value": value,
            "inverted": False,
            "description": f"GELF field _{field} from falco-k8s",
        }
        for field, value in matches
    ]


def _set_stream_state(call: _Caller, api: GraylogApi, stream_id: str, action: str) -> None:
    path = f"/streams/{stream_id}/{action}"
    call(lambda: api.post(path), "POST", path, "streams:changestate")


def _default_index_set(call: _Caller, api: GraylogApi) -> str:
    path = "/system/indices/index_sets?skip=0&limit=0&stats=false"
    listing = call(lambda: api.get(path), "GET", path, "indexsets:read")
    for index_set in _items(listing, "index_sets"):
        if index_set.get("default"):
            return _id(index_set, "id", "GET /system/indices/index_sets")
    raise ProvisioningBlockedError(
        "api_token_secret: Graylog shows no default index set (needs indexsets:read)"
    )


def _stream_body(sender: Sender, index_set_id: str, marker: str, *, wrapped: bool) -> Any:
    stream = {
        "title": sender.stream_title,
        "description": f"Falco alerts of {sender.name}. {marker}",
        "rules": _rules(sender),
        "matching_type": "AND",
        "remove_matches_from_default_stream": False,
        "index_set_id": index_set_id,
    }
    return {"entity": stream, "share_request": None} if wrapped else stream
