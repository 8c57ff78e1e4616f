"""The sinks and the forwarder's config file, built from plain endpoints: no charm, no Pebble."""

from __future__ import annotations

import json

import pytest

from alert_sinks import (
    FALCOSIDEKICK,
    GRAYLOG,
    HTTP_OUTPUT,
    SINK_KINDS,
    Endpoint,
    build_sinks,
    render_forwarder_config,
    segment_bytes,
)
from constants import LOKI_SINK_RELATION, MIB, OTLP_SINK_RELATION
from falco_forwarder.config import FORMATS, ForwarderConfig, JujuTopology, SinkConfig
from sink_relations import RELATION_READERS
from state import InvalidStateError

TOPOLOGY = JujuTopology("sec", "7f6c1a2e-9b1d-4c55-8d0e-2f1f0c9e4b11", "falco-k8s", "falco-k8s/0")
TOKEN = "graylog-input-token-5f2c"


def test_every_source_gives_its_sinks_in_registry_order_with_its_format():
    sinks = build_sinks(
        {
            OTLP_SINK_RELATION: [Endpoint("http://otel.cos.svc:4318", key="7")],
            LOKI_SINK_RELATION: [
                Endpoint("http://loki-0.loki:3100/loki/api/v1/push", key="loki/0"),
                Endpoint("http://loki-1.loki:3100/loki/api/v1/push", key="loki/1"),
            ],
            FALCOSIDEKICK: [Endpoint("http://falcosidekick:2801/", key="3")],
            GRAYLOG: [Endpoint("https://graylog:12201/gelf", headers={"X-Token": TOKEN})],
            HTTP_OUTPUT: [Endpoint("https://siem.example.com/falco")],
        }
    )

    assert [(s.name, s.format, s.url) for s in sinks] == [
        ("http_output", "falco-json", "https://siem.example.com/falco"),
        ("graylog", "gelf", "https://graylog:12201/gelf"),
        ("falcosidekick", "falco-json", "http://falcosidekick:2801/"),
        ("loki-0", "loki", "http://loki-0.loki:3100/loki/api/v1/push"),
        ("loki-1", "loki", "http://loki-1.loki:3100/loki/api/v1/push"),
        ("otlp-7", "otlp-json", "http://otel.cos.svc:4318/v1/logs"),
    ]
    assert sinks[1].headers == {"X-Token": TOKEN}


@pytest.mark.parametrize(
    "endpoint",
    ["http://otel:4318", "http://otel:4318/", "http://otel:4318/v1/logs"],
)
def test_an_otlp_endpoint_gets_the_logs_path_once(endpoint: str):
    [sink] = build_sinks({OTLP_SINK_RELATION: [Endpoint(endpoint, key="1")]})

    assert sink.url == "http://otel:4318/v1/logs"


def test_no_endpoints_means_no_sinks():
    assert build_sinks({}) == ()


def test_a_source_without_a_registered_kind_is_refused():
    with pytest.raises(ValueError, match="no sink kind registered for kafka"):
        build_sinks({"kafka": [Endpoint("http://kafka-rest:8082/")]})


def test_every_registered_kind_has_a_format_the_forwarder_encodes():
    assert {kind.format for kind in SINK_KINDS.values()} <= FORMATS.keys()


def test_the_config_text_is_what_the_forwarder_reads_back():
    sink = SinkConfig("graylog", "gelf", "https://graylog:12201/gelf", {"X-Token": TOKEN})

    text = render_forwarder_config((sink,), TOPOLOGY, 512)

    config = ForwarderConfig.from_dict(json.loads(text))
    assert config.sinks == (sink,)
    assert config.juju == TOPOLOGY
    assert config.alert_log.retention_bytes == 512 * MIB
    assert config.alert_log.segment_bytes == 32 * MIB
    assert render_forwarder_config((sink,), TOPOLOGY, 512) == text  # same input, same bytes


def test_a_sink_the_forwarder_would_refuse_is_an_operator_problem():
    endpoint = Endpoint("https://graylog:12201/gelf", ca_cert="not a PEM")

    with pytest.raises(InvalidStateError, match=r"^alert sinks: graylog\.ca_cert is not a valid"):
        build_sinks({GRAYLOG: [endpoint]})


def test_a_refused_header_never_shows_its_secret_value():
    endpoint = Endpoint("https://graylog/gelf", headers={"X-Token": f"{TOKEN}\n"})

    with pytest.raises(InvalidStateError) as refused:
        build_sinks({GRAYLOG: [endpoint]})

    assert TOKEN not in str(refused.value)


@pytest.mark.parametrize(
    ("retention_mb", "segment_mb"), [(16, 1), (64, 4), (512, 32), (1024, 64), (100_000, 64)]
)
def test_segments_are_a_sixteenth_of_retention_within_1_and_64_mib(retention_mb, segment_mb):
    assert segment_bytes(retention_mb * MIB) == segment_mb * MIB


def test_every_sink_kind_has_a_reader_and_every_relation_reader_a_kind():
    assert set(SINK_KINDS) == {HTTP_OUTPUT, GRAYLOG, *RELATION_READERS}
