"""The sinks: every kind in registry order, and the forwarder's config file built from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from charm_pod import falco_container, peers, pod
from ops import testing

from constants import MIB
from falco_forwarder.config import FORMATS, ConfigError, ForwarderConfig, JujuTopology, SinkConfig
from sinks._forwarder_config import ForwarderOptions, render_forwarder_config, segment_bytes
from sinks._kinds import SINK_KINDS
from sinks._otlp import otlp_logs_url

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = JujuTopology("sec", "7f6c1a2e-9b1d-4c55-8d0e-2f1f0c9e4b11", "falco-k8s", "falco-k8s/0")
TOKEN = "graylog-input-token-5f2c"


def loki_relation() -> testing.Relation:
    units = {
        n: {"endpoint": json.dumps({"url": f"http://loki-{n}.loki:3100/loki/api/v1/push"})}
        for n in (0, 1)
    }
    return testing.Relation("send-loki-logs", remote_app_name="loki", remote_units_data=units)


def otlp_relation() -> testing.Relation:
    endpoints = [
        {"protocol": "http", "endpoint": "http://otel.cos.svc:4318", "telemetries": ["logs"]}
    ]
    return testing.Relation(
        "send-otlp", remote_app_name="otel", remote_app_data={"endpoints": json.dumps(endpoints)}
    )


def test_every_kind_gives_its_sinks_in_registry_order_with_its_format(ctx, falco_fs):
    graylog = testing.Relation(
        "graylog",
        remote_app_name="graylog",
        remote_app_data={"url": json.dumps("https://graylog:12201/gelf")},
    )
    sidekick = testing.Relation(
        "http-endpoint",
        remote_app_name="falcosidekick-k8s",
        remote_app_data={"url": json.dumps("http://falcosidekick:2801/")},
    )
    state = testing.State(
        config={"http_output": "https://siem.example.com/falco"},
        containers=pod(falco_container(falco_fs)),
        relations={graylog, sidekick, loki_relation(), otlp_relation(), peers()},
        leader=True,
    )

    out = ctx.run(ctx.on.config_changed(), state)

    config_file = Path(out.get_container("forwarder").mounts["config"].source) / "config.json"
    sinks: list[dict[str, Any]] = json.loads(config_file.read_text())["sinks"]
    otlp = f"otlp-{otlp_relation_id(out)}"
    assert [(s["name"], s["format"], s["url"]) for s in sinks] == [
        ("http_output", "falco-json", "https://siem.example.com/falco"),
        ("graylog", "gelf", "https://graylog:12201/gelf"),
        ("falcosidekick", "falco-json", "http://falcosidekick:2801/"),
        ("loki-0", "loki", "http://loki-0.loki:3100/loki/api/v1/push"),
        ("loki-1", "loki", "http://loki-1.loki:3100/loki/api/v1/push"),
        (otlp, "otlp-json", "http://otel.cos.svc:4318/v1/logs"),
    ]


def otlp_relation_id(state: testing.State) -> int:
    [relation] = [r for r in state.relations if r.endpoint == "send-otlp"]
    return relation.id


@pytest.mark.parametrize(
    "endpoint",
    ["http://otel:4318", "http://otel:4318/", "http://otel:4318/v1/logs"],
)
def test_an_otlp_endpoint_gets_the_logs_path_once(endpoint: str):
    assert otlp_logs_url(endpoint) == "http://otel:4318/v1/logs"


def test_every_relation_fed_kind_reads_a_relation_the_charm_declares():
    metadata = yaml.safe_load((ROOT / "metadata.yaml").read_text())
    declared = set(metadata["requires"]) | set(metadata.get("provides", {}))
    relations = {kind.relation for kind in SINK_KINDS if kind.relation is not None}
    assert relations <= declared
    assert len(relations) == len([k for k in SINK_KINDS if k.relation is not None])


def test_every_forwarder_format_is_one_the_forwarder_encodes():
    assert {"falco-json", "gelf", "loki", "otlp-json"} <= FORMATS.keys()


def test_the_config_text_is_what_the_forwarder_reads_back():
    sink = SinkConfig("graylog", "gelf", "https://graylog:12201/gelf", {"X-Token": TOKEN})

    text = render_forwarder_config((sink,), TOPOLOGY, ForwarderOptions())

    config = ForwarderConfig.from_dict(json.loads(text))
    assert config.sinks == (sink,)
    assert config.juju == TOPOLOGY
    assert config.alert_log.retention_bytes == 512 * MIB
    assert config.alert_log.segment_bytes == 32 * MIB
    assert (
        render_forwarder_config((sink,), TOPOLOGY, ForwarderOptions()) == text
    )  # same input, same bytes


def test_a_sink_the_forwarder_would_refuse_is_refused_as_it_is_built():
    with pytest.raises(ConfigError, match=r"^graylog\.ca_cert is not a valid"):
        SinkConfig("graylog", "gelf", "https://graylog:12201/gelf", ca_cert="not a PEM")


def test_a_refused_header_never_shows_its_secret_value():
    with pytest.raises(ConfigError) as refused:
        SinkConfig("graylog", "gelf", "https://graylog/gelf", {"X-Token": f"{TOKEN}\n"})

    assert TOKEN not in str(refused.value)


@pytest.mark.parametrize(
    ("retention_mb", "segment_mb"), [(16, 1), (64, 4), (512, 32), (1024, 64), (100_000, 64)]
)
def test_segments_are_a_sixteenth_of_retention_within_1_and_64_mib(retention_mb, segment_mb):
    assert segment_bytes(retention_mb * MIB) == segment_mb * MIB
