"""The forwarder's JSON configuration: the contract between the charm and the forwarder.

The charm builds a plain dict, checks it with `config_from_dict` and writes
`config_to_dict(...)` as JSON; the forwarder reads it back with `load_config`.
Every section is required; a sink's ``headers``, ``ca_cert`` and
``max_message_bytes`` may be omitted (they default to ``{}``, ``None``, ``None``).
Unknown keys are rejected so that a typo in the charm fails loudly.
"""

import importlib
import json
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeAlias
from urllib.parse import urlsplit

FORMAT_FALCO_JSON: Final = "falco-json"
FORMAT_GELF: Final = "gelf"
FORMAT_LOKI: Final = "loki"
FORMAT_OTLP: Final = "otlp-json"
# The sink format registry: each format and the module of this package whose ``encode`` turns
# one Falco alert into that sink's request body (None: the alert as Falco wrote it). A module is
# imported only when a sink uses it.
FORMATS: Final[Mapping[str, str | None]] = MappingProxyType(
    {FORMAT_FALCO_JSON: None, FORMAT_GELF: "gelf", FORMAT_LOKI: "loki", FORMAT_OTLP: "otlp"}
)

# Sink names become checkpoint file names and metric label values.
_SINK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# A URL longer than this is no endpoint's (browsers and servers stop at 2-8 KiB).
MAX_URL_CHARS = 2048
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,15})://")
_VISIBLE_ASCII = re.compile(r"[!-~]+")
# RFC 9110 token characters for header names; field values: visible Latin-1, spaces, tabs.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\xa0-\xff]*")
# Headers that frame the request: a sink's extra headers must never override them.
_FRAMING_HEADERS = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection", "expect"}
)


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


@dataclass(frozen=True)
class ListenConfig:
    """Address the health and metrics endpoint binds to."""

    host: str
    port: int


@dataclass(frozen=True)
class AlertLogConfig:
    """Falco's alert log (the queue), where checkpoints go, and its rotation and retention.

    ``file`` is the file Falco appends to; rotated segments sit next to it. The segment size
    is the step retention works in: the log stays within ``retention_bytes`` plus one segment.
    """

    file: Path
    state_dir: Path
    retention_bytes: int
    segment_bytes: int


@dataclass(frozen=True)
class JujuTopology:
    """Juju identity of the unit, attached to every GELF message."""

    model: str
    model_uuid: str
    application: str
    unit: str


@dataclass(frozen=True)
class RetryConfig:
    """Backoff bounds for failed deliveries and the per-request timeout, in seconds."""

    initial_seconds: float
    max_seconds: float
    timeout_seconds: float


@dataclass(frozen=True)
class SinkConfig:
    """One destination; ``headers`` and ``ca_cert`` stay out of ``repr`` (they hold secrets)."""

    name: str
    format: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict[str, str], repr=False)
    ca_cert: str | None = field(default=None, repr=False)
    max_message_bytes: int | None = None

    @property
    def safe_url(self) -> str:
        """The URL without userinfo, query or fragment, fit for logs."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


def url_problem(url: str) -> str:
    """Why ``url`` cannot be a sink's URL, or "": visible ASCII http(s), a host, a port 1-65535.

    The one URL rule: the charm applies it to options and relation data as well. The reason
    quotes nothing after the scheme: a password holding an unencoded '/', '?', '#' or '@' is not
    where a URL parser looks for it, so no part of the URL is safe to show.
    """
    if problem := _url_text_problem(url):
        return problem
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the URL's host or port is malformed (percent-encode /?#@ in a password)"
    if not parts.hostname:
        return "the URL has no host"
    if port == 0:
        return "the URL's port must be 1 to 65535, not 0"
    return ""


def _url_text_problem(url: str) -> str:
    """What is wrong with ``url`` before parsing it: its length, scheme or characters."""
    if len(url) > MAX_URL_CHARS:
        return f"the URL is {len(url)} characters long; the limit is {MAX_URL_CHARS}"
    scheme = _SCHEME.match(url)
    if scheme is None or scheme.group(1).lower() not in ("http", "https"):
        got = f"scheme {scheme.group(1)!r}" if scheme else "no scheme"
        return f"only http:// and https:// URLs are accepted (got {got})"
    if not _VISIBLE_ASCII.fullmatch(url):
        return "the URL must be visible ASCII: no space, control or non-ASCII character"
    return ""


Encoder: TypeAlias = Callable[[Mapping[str, Any], JujuTopology, int | None], bytes]


def encoder(fmt: str) -> Encoder | None:
    """The encoder registered for ``fmt``, or None to post the alert as it came."""
    module = FORMATS[fmt]
    return None if module is None else importlib.import_module(f"falco_forwarder.{module}").encode


@dataclass(frozen=True)
class ForwarderConfig:
    """The whole forwarder configuration."""

    listen: ListenConfig
    alert_log: AlertLogConfig
    juju: JujuTopology
    retry: RetryConfig
    sinks: tuple[SinkConfig, ...]


def load_config(path: str | Path) -> ForwarderConfig:
    """Read and validate the JSON configuration file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e
    return config_from_dict(data)


def config_from_dict(data: object) -> ForwarderConfig:
    """Validate ``data`` (parsed JSON) and build the configuration, or raise `ConfigError`."""
    top = _section(data, "config", required={"listen", "alert_log", "juju", "retry", "sinks"})
    listen = _section(top["listen"], "listen", required={"host", "port"})
    alert_log = _section(
        top["alert_log"],
        "alert_log",
        required={"file", "state_dir", "retention_bytes", "segment_bytes"},
    )
    alert_log_config = AlertLogConfig(
        file=Path(_string(alert_log, "file", "alert_log")),
        state_dir=Path(_string(alert_log, "state_dir", "alert_log")),
        retention_bytes=_integer(alert_log, "retention_bytes", "alert_log", minimum=1),
        segment_bytes=_integer(alert_log, "segment_bytes", "alert_log", minimum=1),
    )
    if alert_log_config.segment_bytes > alert_log_config.retention_bytes:
        raise ConfigError("alert_log.segment_bytes must not exceed alert_log.retention_bytes")
    juju = _section(top["juju"], "juju", required={"model", "model_uuid", "application", "unit"})
    retry = _section(
        top["retry"], "retry", required={"initial_seconds", "max_seconds", "timeout_seconds"}
    )
    retry_config = RetryConfig(
        initial_seconds=_positive_number(retry, "initial_seconds", "retry"),
        max_seconds=_positive_number(retry, "max_seconds", "retry"),
        timeout_seconds=_positive_number(retry, "timeout_seconds", "retry"),
    )
    if retry_config.initial_seconds > retry_config.max_seconds:
        raise ConfigError("retry.initial_seconds must not exceed retry.max_seconds")
    port = _integer(listen, "port", "listen", minimum=0)
    if port > 65535:
        raise ConfigError("listen.port must be at most 65535")
    sinks_data = top["sinks"]
    if not isinstance(sinks_data, list):
        raise ConfigError("sinks must be a list")
    sinks = tuple(_sink(item, f"sinks[{i}]") for i, item in enumerate(sinks_data))  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    names = [sink.name for sink in sinks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"duplicate sink names: {', '.join(duplicates)}")
    return ForwarderConfig(
        listen=ListenConfig(host=_string(listen, "host", "listen"), port=port),
        alert_log=alert_log_config,
        juju=JujuTopology(
            model=_string(juju, "model", "juju"),
            model_uuid=_string(juju, "model_uuid", "juju"),
            application=_string(juju, "application", "juju"),
            unit=_string(juju, "unit", "juju"),
        ),
        retry=retry_config,
        sinks=sinks,
    )


def config_to_dict(config: ForwarderConfig) -> dict[str, Any]:
    """Serialise ``config`` to the JSON-ready dict that `config_from_dict` reads back."""
    return {
        "listen": {"host": config.listen.host, "port": config.listen.port},
        "alert_log": {
            "file": str(config.alert_log.file),
            "state_dir": str(config.alert_log.state_dir),
            "retention_bytes": config.alert_log.retention_bytes,
            "segment_bytes": config.alert_log.segment_bytes,
        },
        "juju": {
            "model": config.juju.model,
            "model_uuid": config.juju.model_uuid,
            "application": config.juju.application,
            "unit": config.juju.unit,
        },
        "retry": {
            "initial_seconds": config.retry.initial_seconds,
            "max_seconds": config.retry.max_seconds,
            "timeout_seconds": config.retry.timeout_seconds,
        },
        "sinks": [
            {
                "name": sink.name,
                "format": sink.format,
                "url": sink.url,
                "headers": dict(sink.headers),
                "ca_cert": sink.ca_cert,
                "max_message_bytes": sink.max_message_bytes,
            }
            for sink in config.sinks
        ],
    }


def _sink(data: object, where: str) -> SinkConfig:
    item = _section(
        data,
        where,
        required={"name", "format", "url"},
        optional={"headers", "ca_cert", "max_message_bytes"},
    )
    name = _string(item, "name", where)
    if not _SINK_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}.name {name!r} must be 1-63 characters of [A-Za-z0-9_.-], "
            "starting with a letter or digit"
        )
    where = name  # from here on, errors name the sink (the relation or option it comes from)
    fmt = _string(item, "format", where)
    if fmt not in FORMATS:
        raise ConfigError(f"{where}.format must be one of {', '.join(FORMATS)}")
    url = _string(item, "url", where)
    if url_problem(url):
        raise ConfigError(f"{where}.url must be an ASCII http:// or https:// URL with a host")
    ca_cert = item.get("ca_cert")
    if ca_cert is not None:
        if not isinstance(ca_cert, str):
            raise ConfigError(f"{where}.ca_cert must be a PEM string or null")
        try:
            ssl.create_default_context(cadata=ca_cert)
        except (ssl.SSLError, ValueError, TypeError) as e:  # TypeError: not ASCII
            raise ConfigError(f"{where}.ca_cert is not a valid PEM certificate") from e
    max_message_bytes = None
    if item.get("max_message_bytes") is not None:
        max_message_bytes = _integer(item, "max_message_bytes", where, minimum=1)
    return SinkConfig(
        name=name,
        format=fmt,
        url=url,
        headers=_headers(item.get("headers", {}), f"{where}.headers"),
        ca_cert=ca_cert,
        max_message_bytes=max_message_bytes,
    )


def _headers(data: object, where: str) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be an object")
    headers: dict[str, str] = {}
    for key, value in data.items():  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(key, str) or not _HEADER_NAME.fullmatch(key):
            raise ConfigError(f"{where} has an invalid header name")
        if key.lower() in _FRAMING_HEADERS:
            raise ConfigError(f"{where}[{key!r}] is set by the forwarder itself")
        # The value is a secret: never echo it in the error. HTTP sends it as Latin-1.
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise ConfigError(f"{where}[{key!r}] must be visible Latin-1 text on one line")
        headers[key] = value
    return headers


def _section(
    data: object,
    where: str,
    *,
    required: set[str],
    optional: frozenset[str] | set[str] = frozenset(),
) -> dict[str, object]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be an object")
    section: dict[str, object] = dict(data)  # pyright: ignore[reportUnknownArgumentType]
    missing = sorted(required - section.keys())
    if missing:
        raise ConfigError(f"{where} is missing {', '.join(missing)}")
    unknown = sorted(map(str, section.keys() - required - optional))
    if unknown:
        raise ConfigError(f"{where} has unknown keys: {', '.join(unknown)}")
    return section


def _string(section: Mapping[str, object], key: str, where: str) -> str:
    value = section[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key} must be a non-empty string")
    return value


def _integer(section: Mapping[str, object], key: str, where: str, *, minimum: int) -> int:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}.{key} must be an integer >= {minimum}")
    return value


def _positive_number(section: Mapping[str, object], key: str, where: str) -> float:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise ConfigError(f"{where}.{key} must be a number > 0 and < 1e9")
    return float(value)
