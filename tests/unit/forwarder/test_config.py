"""The configuration contract: the documented example parses, bad input is named precisely."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from falco_forwarder import gelf, loki, otlp
from falco_forwarder.config import (
    FORMATS,
    AlertLogConfig,
    ConfigError,
    ForwarderConfig,
    JujuTopology,
    ListenConfig,
    RetryConfig,
    SinkConfig,
    SinkFormat,
    load_config,
)

EXAMPLE: dict[str, Any] = {
    "listen": {"host": "127.0.0.1", "port": 9802},
    "alert_log": {
        "file": "/var/lib/falco-alerts/log/falco.log",
        "state_dir": "/var/lib/falco-alerts/state",
        "retention_bytes": 536870912,
        "segment_bytes": 33554432,
    },
    "juju": {
        "model": "m",
        "model_uuid": "uuid",
        "application": "falco-k8s",
        "unit": "falco-k8s/0",
    },
    "retry": {"initial_seconds": 0.5, "max_seconds": 60.0, "timeout_seconds": 10.0},
    "sinks": [
        {
            "name": "http_output",
            "format": "falco-json",
            "url": "https://example/alerts",
            "headers": {},
            "ca_cert": None,
            "max_message_bytes": None,
        },
        {
            "name": "graylog",
            "format": "gelf",
            "url": "http://graylog:12201/gelf",
            "headers": {"Authorization": "Bearer s3cret"},
            "ca_cert": None,
            "max_message_bytes": 65536,
        },
        {"name": "falcosidekick", "format": "falco-json", "url": "http://sidekick:2801/"},
    ],
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """EXAMPLE with the value at a dotted path (list indexes allowed) replaced or deleted."""
    data = copy.deepcopy(EXAMPLE)
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()


def test_parses_the_documented_example():
    config = ForwarderConfig.from_dict(EXAMPLE)

    assert config.listen.port == 9802
    assert config.alert_log.file == Path("/var/lib/falco-alerts/log/falco.log")
    assert config.alert_log.state_dir == Path("/var/lib/falco-alerts/state")
    assert config.alert_log.retention_bytes == 512 << 20
    assert config.juju == JujuTopology("m", "uuid", "falco-k8s", "falco-k8s/0")
    assert config.retry.max_seconds == 60.0
    graylog = config.sinks[1]
    assert graylog == SinkConfig(
        "graylog",
        "gelf",
        "http://graylog:12201/gelf",
        {"Authorization": "Bearer s3cret"},
        None,
        65536,
    )
    assert config.sinks[2].headers == {}
    assert config.sinks[2].max_message_bytes is None


def test_round_trips_through_json(tmp_path: Path):
    config = ForwarderConfig.from_dict(EXAMPLE)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))

    assert load_config(path) == config


def test_repr_hides_secrets(tls_server: tuple[object, str]):
    _, ca_pem = tls_server
    sink = SinkConfig("g", "gelf", "http://g/", {"Authorization": "s3cret"}, ca_pem)
    config = ForwarderConfig.from_dict(EXAMPLE)

    assert "s3cret" not in repr(sink)
    assert "BEGIN CERT" not in repr(sink)
    assert "s3cret" not in repr(config)
    assert "graylog" in repr(config)


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        (
            "https://user:pw@graylog.example:12201/gelf?token=x#f",
            "https://graylog.example:12201/gelf",
        ),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://sidekick/", "http://sidekick/"),
    ],
)
def test_safe_url_drops_credentials_and_query(url: str, safe: str):
    assert SinkConfig("s", "gelf", url).safe_url == safe


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("listen", DELETE, "config is missing listen"),
        ("extra", 1, "config has unknown keys: extra"),
        ("listen.port", 70000, "listen.port must be at most 65535"),
        ("listen.port", "9802", "listen.port must be an integer >= 0"),
        ("listen.host", "", "listen.host must be a non-empty string"),
        ("alert_log", [], "alert_log must be an object"),
        ("alert_log.file", "", "alert_log.file must be a non-empty string"),
        ("alert_log.retention_bytes", 0, "alert_log.retention_bytes must be an integer >= 1"),
        ("alert_log.segment_bytes", True, "alert_log.segment_bytes must be an integer >= 1"),
        ("alert_log.segment_bytes", 1 << 30, "segment_bytes must not exceed"),
        ("juju.unit", None, "juju.unit must be a non-empty string"),
        ("retry.initial_seconds", 0, "retry.initial_seconds must be a number > 0"),
        ("retry.max_seconds", float("nan"), "retry.max_seconds must be a number > 0"),
        ("retry.initial_seconds", 61, "must not exceed retry.max_seconds"),
        ("sinks", {}, "sinks must be a list"),
        ("sinks.0.name", "../etc", "sinks[0].name '../etc' must be"),
        ("sinks.0.name", "graylog", "duplicate sink names: graylog"),
        ("sinks.0.format", "syslog", "http_output.format must be one of falco-json, gelf"),
        ("sinks.0.url", "ftp://x/", "http_output.url must be an ASCII http:// or https:// URL"),
        (
            "sinks.0.url",
            "http:///path",
            "http_output.url must be an ASCII http:// or https:// URL",
        ),
        (
            "sinks.0.url",
            "http://x:port/",
            "http_output.url must be an ASCII http:// or https:// URL",
        ),
        ("sinks.0.headers", [], "http_output.headers must be an object"),
        ("sinks.0.headers", {"Bad Name": "v"}, "http_output.headers has an invalid header name"),
        ("sinks.0.headers", {"X-Key": "a\r\nInjected: 1"}, "must be visible Latin-1 text"),
        ("sinks.0.headers", {"X-Key": "sn\u2603w"}, "must be visible Latin-1 text"),
        ("sinks.0.headers", {"Content-Length": "9"}, "is set by the forwarder itself"),
        ("sinks.0.url", "http://graylog/gélf", "http_output.url must be an ASCII http"),
        ("sinks.0.ca_cert", 5, "http_output.ca_cert must be a PEM string or null"),
        ("sinks.0.ca_cert", "not a pem", "http_output.ca_cert is not a valid PEM certificate"),
        ("sinks.1.max_message_bytes", 0, "graylog.max_message_bytes must be an integer >= 1"),
        ("sinks.2.colour", "red", "sinks[2] has unknown keys: colour"),
        ("sinks.2.url", DELETE, "sinks[2] is missing url"),
    ],
)
def test_rejects_invalid_config(path: str, value: Any, message: str):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ForwarderConfig.from_dict(with_change(path, value))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SinkConfig("s", "gelf", "ftp://x/"), "s.url must be an ASCII http"),
        (lambda: SinkConfig("s", "syslog", "http://x/"), "s.format must be one of"),
        (lambda: SinkConfig("../s", "gelf", "http://x/"), "sink.name '../s' must be"),
        (lambda: SinkConfig("s", "gelf", "http://x/", ca_cert="nope"), "not a valid PEM"),
        (lambda: SinkConfig("s", "gelf", "http://x/", {"Host": "h"}), "set by the forwarder"),
        (lambda: RetryConfig(2, 1, 1), "initial_seconds must not exceed"),
        (lambda: ListenConfig("", 1), "listen.host must be a non-empty string"),
        (lambda: AlertLogConfig(Path("f"), Path("s"), 1, 2), "segment_bytes must not exceed"),
        (lambda: JujuTopology("m", "", "a", "a/0"), "juju.model_uuid must be a non-empty"),
    ],
)
def test_each_config_type_checks_itself_when_built(build: Any, message: str):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build()


def test_every_format_names_its_encoder_in_the_table():
    assert FORMATS["falco-json"] == SinkFormat(None)  # the line as Falco wrote it
    assert FORMATS["gelf"] == SinkFormat(gelf.encode)
    assert FORMATS["loki"] == SinkFormat(loki.encode_entry, loki.frame)
    assert FORMATS["otlp-json"] == SinkFormat(otlp.encode_record, otlp.frame)


def test_header_values_stay_out_of_errors():
    data = with_change("sinks.1.headers", {"Authorization": "Bearer s3cret\n"})

    with pytest.raises(ConfigError) as error:
        ForwarderConfig.from_dict(data)
    assert "s3cret" not in str(error.value)


def test_accepts_no_sinks_and_ephemeral_port():
    config = ForwarderConfig.from_dict({**with_change("listen.port", 0), "sinks": []})

    assert isinstance(config, ForwarderConfig)
    assert config.sinks == ()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"{", "is not valid JSON"),
        (b"\xff", "is not UTF-8"),
        (b"[]", "config must be an object"),
    ],
)
def test_load_config_errors(tmp_path: Path, content: bytes | None, message: str):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(ConfigError, match=message):
        load_config(path)
