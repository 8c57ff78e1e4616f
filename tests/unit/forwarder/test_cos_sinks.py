"""Loki and OTLP sinks: the encoders on real-shaped alerts, and delivery to real receivers."""

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fakes.fake_cos_receivers import (
    Receiver,
    loki_entries,
    loki_receiver,
    otlp_receiver,
    otlp_records,
)
from forwarder_helpers import (
    ForwarderFactory,
    append_alert,
    config_dict,
    encode,
    falco_alert,
    metric,
    sink_dict,
    wait_for,
)

from falco_forwarder import loki, otlp
from falco_forwarder.alert_time import alert_time_ns
from falco_forwarder.config import (
    FORMAT_LOKI,
    FORMAT_OTLP,
    FORMATS,
    ConfigError,
    ForwarderConfig,
    JujuTopology,
)
from falco_forwarder.metrics import DROP_REASONS

JUJU = JujuTopology("cos", "f2c5e3a1-7b4d-4e2a-9c1d-0123456789ab", "falco-k8s", "falco-k8s/0")
OUTAGE_SECONDS = 30
ALERT_NS = 1795756046123456789  # falco_alert's time, 2026-11-27T05:07:26.123456789Z


def loki_body(alert: dict[str, Any], **kwargs: Any) -> bytes:
    """The push body of a request carrying only ``alert``."""
    return loki.frame([loki.encode_entry(alert, JUJU, **kwargs)], JUJU)


def otlp_body(alert: dict[str, Any], **kwargs: Any) -> bytes:
    """The export request carrying only ``alert``."""
    return otlp.frame([otlp.encode_record(alert, JUJU, **kwargs)], JUJU)


def _attrs(kvs: list[dict[str, Any]]) -> dict[str, Any]:
    return {kv["key"]: next(iter(kv["value"].values())) for kv in kvs}


# -- the registry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "module"), [(FORMAT_LOKI, loki), (FORMAT_OTLP, otlp)], ids=["loki", "otlp"]
)
def test_each_batching_format_is_one_table_entry_with_an_encoder_and_a_frame(
    fmt: str, module: Any
):
    assert FORMATS[fmt].frame is module.frame
    assert FORMATS[fmt].encode in (loki.encode_entry, otlp.encode_record)


@pytest.mark.parametrize("module", [loki, otlp], ids=["loki", "otlp"])
def test_a_batch_carries_its_alerts_in_log_order(module: Any):
    alerts = [falco_alert(i) for i in range(3)]
    encode_one = loki.encode_entry if module is loki else otlp.encode_record
    body = module.frame([encode_one(alert, JUJU) for alert in alerts], JUJU)

    if module is loki:
        names = [
            json.loads(line)["output_fields"]["ka.resp.name"] for _, _, line in loki_entries(body)
        ]
    else:
        names = [_attrs(record["attributes"])["ka.resp.name"] for _, record in otlp_records(body)]
    assert names == ["nginx-0", "nginx-1", "nginx-2"]


def test_an_unknown_format_is_refused_naming_the_known_ones(tmp_path: Path):
    data = config_dict(tmp_path, [sink_dict("s", "http://127.0.0.1:1/", "syslog")])
    with pytest.raises(ConfigError, match="loki, otlp-json"):
        ForwarderConfig.from_dict(data)


# -- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T05:07:26.123456789Z", ALERT_NS),
        ("2026-11-27T05:07:26Z", ALERT_NS - 123456789),
        ("2026-11-27T07:07:26.5+02:00", ALERT_NS - 123456789 + 500_000_000),
        ("2026-11-27T05:07:26", 42),  # no zone: not a moment
        ("yesterday", 42),
        (None, 42),
        (1795756046, 42),
    ],
)
def test_alert_time_keeps_falcos_nanoseconds_and_falls_back_to_now(value: object, expected: int):
    assert alert_time_ns(value, now=lambda: 42) == expected


# -- Loki --------------------------------------------------------------------------------------


def test_loki_labels_are_rule_priority_source_and_topology_only():
    ((labels, ts, line),) = loki_entries(loki_body(falco_alert()))
    assert labels == {
        "rule": "Create Privileged Pod",
        "priority": "Warning",
        "source": "k8s_audit",
        "juju_model": "cos",
        "juju_model_uuid": JUJU.model_uuid,
        "juju_application": "falco-k8s",
        "juju_unit": "falco-k8s/0",
    }
    assert ts == ALERT_NS
    fields = json.loads(line)
    assert (fields["user"], fields["namespace"]) == ("admin", "default")
    assert fields["output"].startswith("05:07:26.123456789: Warning Pod started")
    assert fields["output_fields"]["ka.resp.name"] == "nginx-0"


def test_loki_leaves_out_empty_labels_and_caps_long_ones():
    alert = falco_alert(source="", rule="r" * 5000)
    del alert["priority"]
    ((labels, _, _),) = loki_entries(loki_body(alert))
    assert "source" not in labels
    assert "priority" not in labels
    assert labels["rule"] == "r" * loki.MAX_LABEL_CHARS


def test_loki_takes_any_json_object():
    ((labels, ts, line),) = loki_entries(loki_body({"output_fields": [1]}, now=lambda: 7))
    assert ts == 7
    assert json.loads(line) == {}
    assert set(labels) == {"juju_model", "juju_model_uuid", "juju_application", "juju_unit"}


# -- OTLP --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "number"),
    [("Emergency", 21), ("Alert", 19), ("Critical", 18), ("Error", 17), ("Warning", 13),
     ("Notice", 10), ("Informational", 9), ("Debug", 5), ("Odd", 0)],
)  # fmt: skip
def test_otlp_severity_follows_the_data_models_syslog_mapping(priority: str, number: int):
    """The OpenTelemetry logs data model's Appendix B, syslog column.

    Emergency FATAL(21), Alert ERROR3(19), Critical ERROR2(18), Error ERROR(17), Warning
    WARN(13), Notice INFO2(10), Informational INFO(9), Debug DEBUG(5).
    """
    ((_, record),) = otlp_records(otlp_body(falco_alert(priority=priority)))
    assert record["severityNumber"] == number
    assert record["severityText"] == priority


def test_otlp_attributes_come_from_rule_tags_and_output_fields():
    ((resource, record),) = otlp_records(otlp_body(falco_alert(), now=lambda: 99))
    attributes = _attrs(record["attributes"])
    assert attributes["falco.rule"] == "Create Privileged Pod"
    assert attributes["falco.source"] == "k8s_audit"
    assert attributes["falco.tags"] == {
        "values": [{"stringValue": "k8s"}, {"stringValue": "NIST_800-53_AC-6"}]
    }
    assert attributes["ka.user.name"] == "admin"
    assert attributes["ka.req.pod.containers.privileged"] is True
    assert attributes["evt.time"] == "1795756046123456789"  # int64 as a string
    assert record["body"] == {"stringValue": falco_alert()["output"]}
    assert (record["timeUnixNano"], record["observedTimeUnixNano"]) == (str(ALERT_NS), "99")
    topology = {
        "juju_model": "cos",
        "juju_model_uuid": JUJU.model_uuid,
        "juju_application": "falco-k8s",
        "juju_unit": "falco-k8s/0",
    }
    assert _attrs(resource["attributes"]) == {"service.name": "falco", **topology}
    # On the record too: the collector charm makes these log attributes Loki labels.
    assert topology.items() <= attributes.items()


def test_otlp_maps_every_json_value_and_never_overwrites_its_own_attributes():
    fields = {"falco.rule": "spoof", "big": 2**70, "nan": float("nan"), "f": 1.5, "o": {"a": None}}
    ((_, record),) = otlp_records(otlp_body(falco_alert(output_fields=fields)))
    attributes = _attrs(record["attributes"])
    assert attributes["falco.rule"] == "Create Privileged Pod"
    assert attributes["falco.output_fields.falco.rule"] == "spoof"
    assert (attributes["big"], attributes["nan"], attributes["f"]) == (str(2**70), "nan", 1.5)
    assert attributes["o"] == {"values": [{"key": "a", "value": {"stringValue": "null"}}]}


# -- delivery to real receivers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "make"), [(FORMAT_LOKI, loki_receiver), (FORMAT_OTLP, otlp_receiver)]
)
def test_5xx_and_429_are_retried_until_the_receiver_takes_the_alert(
    fmt: str, make: Any, make_forwarder: ForwarderFactory, receivers: list[Receiver]
):
    receiver = make(script=[503, 500, 429])
    receivers.append(receiver)
    forwarder = make_forwarder([sink_dict("cos", receiver.url, fmt)])
    append_alert(forwarder, encode(falco_alert()))

    wait_for(lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="cos") == 1)
    assert len(receiver.accepted) == 1
    assert metric(forwarder.port, "falco_forwarder_retried_total", sink="cos") == 3


@pytest.mark.parametrize(
    ("fmt", "make"), [(FORMAT_LOKI, loki_receiver), (FORMAT_OTLP, otlp_receiver)]
)
def test_a_refused_alert_is_dropped_counted_and_the_rest_of_its_batch_gets_through(
    fmt: str, make: Any, make_forwarder: ForwarderFactory, receivers: list[Receiver]
):
    receiver = make(refuse=b"nginx-1")  # refuses any request carrying alert 1
    receivers.append(receiver)
    forwarder = make_forwarder([sink_dict("cos", receiver.url, fmt)])
    for i in range(3):
        append_alert(forwarder, encode(falco_alert(i)))

    wait_for(lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="cos") == 2)
    reason = {"sink": "cos", "reason": "http_4xx"}
    assert metric(forwarder.port, "falco_forwarder_dropped_total", **reason) == 1
    assert len(receiver.accepted) == 2
    assert receiver.refused >= 1


def test_no_alert_is_lost_across_a_30_s_outage_of_loki_and_the_collector(
    make_forwarder: ForwarderFactory, receivers: list[Receiver]
):
    """Alerts keep coming while both receivers are down for 30 s: each arrives once, in order."""
    loki_rx, otlp_rx = loki_receiver(), otlp_receiver()
    receivers += [loki_rx, otlp_rx]
    forwarder = make_forwarder(
        [sink_dict("loki", loki_rx.url, FORMAT_LOKI), sink_dict("otel", otlp_rx.url, FORMAT_OTLP)]
    )
    names = [f"pod-{i}" for i in range(200)]
    for name in names[:20]:
        append_alert(forwarder, _alert_named(name))
    wait_for(lambda: len(loki_rx.accepted) == 20 and len(otlp_rx.accepted) == 20)
    loki_rx.stop()
    otlp_rx.stop()
    for name in names[20:180]:  # a steady flow through the whole outage
        append_alert(forwarder, _alert_named(name))
        time.sleep(OUTAGE_SECONDS / 160)
    waiting = sum(len(_alert_named(name)) + 1 for name in names[20:180])  # lines, newlines
    for sink in ("loki", "otel"):
        assert metric(forwarder.port, "falco_forwarder_backlog_bytes", sink=sink) == waiting
        assert metric(forwarder.port, "falco_forwarder_sink_up", sink=sink) == 0
    loki_rx.start()
    otlp_rx.start()
    for name in names[180:]:
        append_alert(forwarder, _alert_named(name))

    wait_for(lambda: len(loki_rx.accepted) == 200 and len(otlp_rx.accepted) == 200, timeout=60)
    assert [
        json.loads(line)["output_fields"]["ka.resp.name"] for _, _, line in loki_rx.accepted
    ] == names
    assert [
        _attrs(record["attributes"])["ka.resp.name"] for _, record in otlp_rx.accepted
    ] == names
    for sink in ("loki", "otel"):  # counted once the receiver's answer is read
        delivered = "falco_forwarder_delivered_total"
        wait_for(lambda s=sink, d=delivered: metric(forwarder.port, d, sink=s) == 200)
        for reason in DROP_REASONS:
            labels = {"sink": sink, "reason": reason}
            assert metric(forwarder.port, "falco_forwarder_dropped_total", **labels) == 0


def _alert_named(name: str) -> bytes:
    fields = dict(falco_alert()["output_fields"], **{"ka.resp.name": name})
    return encode(falco_alert(output_fields=fields))
