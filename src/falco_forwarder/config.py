"""The forwarder's JSON configuration: the contract between the charm and the forwarder.

Each type checks itself when built, so a configuration that exists is a valid one: the charm
builds the types and writes ``ForwarderConfig.to_dict()`` as JSON, the forwarder reads it back
with `load_config`. Every section is required; ``dedup_window_seconds`` and a sink's
``headers``, ``ca_cert`` and ``max_message_bytes`` may be omitted (0, ``{}``, ``None``,
``None``). Unknown keys are rejected so
that a typo in the charm fails loudly. The sink formats and their encoders are the table
`FORMATS`, beside the types that name them.
"""

import json
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Self, TypeAlias
from urllib.parse import urlsplit

from falco_forwarder import gelf, loki, otlp


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


@dataclass(frozen=True)
class JujuTopology:
    """Juju identity of the unit, attached to every alert by every encoder."""

    model: str
    model_uuid: str
    application: str
    unit: str

    def __post_init__(self) -> None:
        for name in ("model", "model_uuid", "application", "unit"):
            _check_text(getattr(self, name), f"juju.{name}")


Encoder: TypeAlias = Callable[[Mapping[str, Any], JujuTopology, int | None], bytes]
Framer: TypeAlias = Callable[[Sequence[bytes], JujuTopology], bytes]


@dataclass(frozen=True)
class SinkFormat:
    """How a sink format turns alerts into request bodies."""

    encode: Encoder | None
    """One alert to its piece of a request; None: the line exactly as Falco wrote it."""
    frame: Framer | None = None
    """Many pieces to one request body (the protocol takes batches); None: one per request."""


FORMAT_FALCO_JSON: Final = "falco-json"
FORMAT_GELF: Final = "gelf"
FORMAT_LOKI: Final = "loki"
FORMAT_OTLP: Final = "otlp-json"
# The sink formats: a new kind of sink is one encoder module and one entry here.
FORMATS: Final[Mapping[str, SinkFormat]] = MappingProxyType(
    {
        FORMAT_FALCO_JSON: SinkFormat(None),
        FORMAT_GELF: SinkFormat(gelf.encode),
        FORMAT_LOKI: SinkFormat(loki.encode_entry, loki.frame),
        FORMAT_OTLP: SinkFormat(otlp.encode_record, otlp.frame),
    }
)

# The longest fold window: a summary held longer would no longer be news.
MAX_DEDUP_WINDOW_SECONDS: Final = 3600
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


@dataclass(frozen=True)
class ListenConfig:
    """Address the health and metrics endpoint binds to."""

    host: str
    port: int

    def __post_init__(self) -> None:
        _check_text(self.host, "listen.host")
        _check_integer(self.port, "listen.port", minimum=0)
        if self.port > 65535:
            raise ConfigError("listen.port must be at most 65535")

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """Build from the parsed ``listen`` section."""
        section = _section(data, "listen", required={"host", "port"})
        return cls(section["host"], section["port"])  # pyright: ignore[reportArgumentType]


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

    def __post_init__(self) -> None:
        for name in ("file", "state_dir"):
            if not isinstance(getattr(self, name), Path):
                raise ConfigError(f"alert_log.{name} must be a path")
        _check_integer(self.retention_bytes, "alert_log.retention_bytes", minimum=1)
        _check_integer(self.segment_bytes, "alert_log.segment_bytes", minimum=1)
        if self.segment_bytes > self.retention_bytes:
            raise ConfigError("alert_log.segment_bytes must not exceed alert_log.retention_bytes")

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """Build from the parsed ``alert_log`` section."""
        where = "alert_log"
        section = _section(
            data, where, required={"file", "state_dir", "retention_bytes", "segment_bytes"}
        )
        return cls(
            Path(_check_text(section["file"], f"{where}.file")),
            Path(_check_text(section["state_dir"], f"{where}.state_dir")),
            section["retention_bytes"],  # pyright: ignore[reportArgumentType]
            section["segment_bytes"],  # pyright: ignore[reportArgumentType]
        )


@dataclass(frozen=True)
class RetryConfig:
    """Backoff bounds for failed deliveries, and the deadline of one whole request, in seconds."""

    initial_seconds: float
    max_seconds: float
    timeout_seconds: float

    def __post_init__(self) -> None:
        for name in ("initial_seconds", "max_seconds", "timeout_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"retry.{name} must be a number > 0 and < 1e9")
            if not 0 < value < 1e9:
                raise ConfigError(f"retry.{name} must be a number > 0 and < 1e9")
        if self.initial_seconds > self.max_seconds:
            raise ConfigError("retry.initial_seconds must not exceed retry.max_seconds")

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """Build from the parsed ``retry`` section."""
        section = _section(
            data, "retry", required={"initial_seconds", "max_seconds", "timeout_seconds"}
        )
        return cls(
            section["initial_seconds"],  # pyright: ignore[reportArgumentType]
            section["max_seconds"],  # pyright: ignore[reportArgumentType]
            section["timeout_seconds"],  # pyright: ignore[reportArgumentType]
        )


@dataclass(frozen=True)
class SinkConfig:
    """One destination; ``headers`` and ``ca_cert`` stay out of ``repr`` (they hold secrets)."""

    name: str
    format: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict[str, str], repr=False)
    ca_cert: str | None = field(default=None, repr=False)
    max_message_bytes: int | None = None

    def __post_init__(self) -> None:
        _check_sink_name(self.name, "sink.name")
        where = self.name  # errors name the sink (the relation or option it comes from)
        if self.format not in FORMATS:
            raise ConfigError(f"{where}.format must be one of {', '.join(FORMATS)}")
        _check_url(self.url, f"{where}.url")
        object.__setattr__(self, "headers", _headers(self.headers, f"{where}.headers"))
        if self.ca_cert is not None:
            _check_ca(self.ca_cert, f"{where}.ca_cert")
        if self.max_message_bytes is not None:
            _check_integer(self.max_message_bytes, f"{where}.max_message_bytes", minimum=1)

    @classmethod
    def from_dict(cls, data: object, where: str) -> Self:
        """Build from one parsed entry of ``sinks``; ``where`` names it until its name is known."""
        item = _section(
            data,
            where,
            required={"name", "format", "url"},
            optional={"headers", "ca_cert", "max_message_bytes"},
        )
        name = _check_sink_name(item["name"], f"{where}.name")
        return cls(
            name,
            _check_text(item["format"], f"{name}.format"),
            _check_text(item["url"], f"{name}.url"),
            item.get("headers", {}),  # pyright: ignore[reportArgumentType]
            item.get("ca_cert"),  # pyright: ignore[reportArgumentType]
            item.get("max_message_bytes"),  # pyright: ignore[reportArgumentType]
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready entry `from_dict` reads back."""
        return {
            "name": self.name,
            "format": self.format,
            "url": self.url,
            "headers": dict(self.headers),
            "ca_cert": self.ca_cert,
            "max_message_bytes": self.max_message_bytes,
        }

    @property
    def sink_format(self) -> SinkFormat:
        """This sink's encoder and framing."""
        return FORMATS[self.format]

    @property
    def safe_url(self) -> str:
        """The URL without userinfo, query or fragment, fit for logs."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True)
class ForwarderConfig:
    """The whole forwarder configuration."""

    listen: ListenConfig
    alert_log: AlertLogConfig
    juju: JujuTopology
    retry: RetryConfig
    sinks: tuple[SinkConfig, ...]
    dedup_window_seconds: int = 0
    """Repeats of an alert within this many seconds fold into one summary per sink; 0: off."""

    def __post_init__(self) -> None:
        _check_integer(self.dedup_window_seconds, "dedup_window_seconds", minimum=0)
        if self.dedup_window_seconds > MAX_DEDUP_WINDOW_SECONDS:
            raise ConfigError(f"dedup_window_seconds must be at most {MAX_DEDUP_WINDOW_SECONDS}")
        names = [sink.name for sink in self.sinks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"duplicate sink names: {', '.join(duplicates)}")

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """Validate ``data`` (parsed JSON) and build the configuration, or raise `ConfigError`."""
        top = _section(
            data,
            "config",
            required={"listen", "alert_log", "juju", "retry", "sinks"},
            optional={"dedup_window_seconds"},
        )
        juju = _section(
            top["juju"], "juju", required={"model", "model_uuid", "application", "unit"}
        )
        sinks = top["sinks"]
        if not isinstance(sinks, list):
            raise ConfigError("sinks must be a list")
        return cls(
            ListenConfig.from_dict(top["listen"]),
            AlertLogConfig.from_dict(top["alert_log"]),
            JujuTopology(juju["model"], juju["model_uuid"], juju["application"], juju["unit"]),  # pyright: ignore[reportArgumentType]
            RetryConfig.from_dict(top["retry"]),
            tuple(SinkConfig.from_dict(item, f"sinks[{i}]") for i, item in enumerate(sinks)),  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
            top.get("dedup_window_seconds", 0),  # pyright: ignore[reportArgumentType]
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict that `from_dict` reads back."""
        return {
            "listen": {"host": self.listen.host, "port": self.listen.port},
            "alert_log": {
                "file": str(self.alert_log.file),
                "state_dir": str(self.alert_log.state_dir),
                "retention_bytes": self.alert_log.retention_bytes,
                "segment_bytes": self.alert_log.segment_bytes,
            },
            "juju": {
                "model": self.juju.model,
                "model_uuid": self.juju.model_uuid,
                "application": self.juju.application,
                "unit": self.juju.unit,
            },
            "retry": {
                "initial_seconds": self.retry.initial_seconds,
                "max_seconds": self.retry.max_seconds,
                "timeout_seconds": self.retry.timeout_seconds,
            },
            "sinks": [sink.to_dict() for sink in self.sinks],
            "dedup_window_seconds": self.dedup_window_seconds,
        }


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
    return ForwarderConfig.from_dict(data)


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
    if "@" in parts.path + parts.query + parts.fragment:
        # 'http://alice:2024/Secr3t@host/' parses as host 'alice', port 2024, and the rest of
        # the password in the path: which the forwarder would log and post to.
        return "the URL has an '@' after its host (percent-encode /?#@ in a password)"
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


def _check_sink_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not _SINK_NAME.fullmatch(name):
        raise ConfigError(
            f"{where} {name!r} must be 1-63 characters of [A-Za-z0-9_.-], "
            "starting with a letter or digit"
        )
    return name


def _check_url(url: object, where: str) -> None:
    if not isinstance(url, str) or url_problem(url):
        raise ConfigError(f"{where} must be an ASCII http:// or https:// URL with a host")


def _check_ca(ca_cert: object, where: str) -> None:
    if not isinstance(ca_cert, str):
        raise ConfigError(f"{where} must be a PEM string or null")
    try:
        ssl.create_default_context(cadata=ca_cert)
    except (ssl.SSLError, ValueError, TypeError) as e:  # TypeError: not ASCII
        raise ConfigError(f"{where} is not a valid PEM certificate") from e


def _headers(data: object, where: str) -> dict[str, str]:
    if not isinstance(data, Mapping):
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


def _check_text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string")
    return value


def _check_integer(value: object, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum}")
    return value
