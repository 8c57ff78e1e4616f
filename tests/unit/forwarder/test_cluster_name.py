"""The cluster name Falco adds to every rule's alert reaches every sink, in the sink's idiom.

The alerts are real lines Falco 0.44.1 wrote with the charm's files (``falco-0.44.1-alerts.jsonl``:
``../shared/real-e2e``'s 34 k8saudit alerts, one per rule, and 2 "hot restart failure" alerts),
given the extra fields of the falco.yaml the charm renders as Falco adds them (the stand-in
`fakes.fake_falco.with_extra_fields`). The forwarder delivers them to real receivers on
127.0.0.1: Falco's JSON over HTTP, a GELF HTTP input, Loki and an OTLP collector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes.fake_cos_receivers import (
    Receiver,
    loki_entries,
    loki_receiver,
    otlp_receiver,
    otlp_records,
)
from fakes.fake_falco import falco_json, with_extra_fields
from forwarder_helpers import (
    ForwarderFactory,
    SinkFactory,
    append_alert,
    falco_alert,
    sink_dict,
    wait_for,
)

from falco._falco_yaml import FalcoSettings, render_falco_yaml
from falco_forwarder import gelf, loki, otlp
from falco_forwarder.config import FORMAT_GELF, FORMAT_LOKI, FORMAT_OTLP, JujuTopology

REAL_LINES = (Path(__file__).parent / "falco-0.44.1-alerts.jsonl").read_bytes().splitlines()
RULES = ("/etc/falco/k8s_audit_rules.yaml", "/etc/falco/rules.d")
CLUSTER = "prod-eu-1.example_2"
JUJU = JujuTopology("cos", "f2c5e3a1-7b4d-4e2a-9c1d-0123456789ab", "falco-k8s", "falco-k8s/0")


def falco_config(cluster: str = "") -> dict[str, Any]:
    """The falco.yaml the charm renders for ``cluster`` (its ``cluster_name``)."""
    return yaml.safe_load(render_falco_yaml(FalcoSettings(cluster_name=cluster), RULES))


def real_alerts(cluster: str = "") -> list[dict[str, Any]]:
    """The real alerts as Falco writes them on the charm's falco.yaml for ``cluster``."""
    config = falco_config(cluster)
    return [with_extra_fields(json.loads(line), config) for line in REAL_LINES]


def rule_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [alert for alert in alerts if alert["source"] != "internal"]


def test_the_stand_in_writes_the_real_lines_byte_for_byte():
    """Without extra fields, the stand-in's lines are Falco's: its format is Falco's."""
    assert [falco_json(alert) for alert in real_alerts()] == REAL_LINES


def test_falco_names_the_cluster_in_every_rules_alert_and_nowhere_else():
    plain, named = real_alerts(), real_alerts(CLUSTER)

    assert [a["output_fields"].get("cluster") for a in rule_alerts(named)] == [CLUSTER] * 34
    for before, after in zip(plain, named, strict=True):
        assert after["output_fields"] == {
            **before["output_fields"],
            **({"cluster": CLUSTER} if before["source"] != "internal" else {}),
        }
        # Only output_fields: the text stays Falco's own.
        assert (after["output"], after.get("message")) == (before["output"], before.get("message"))


def test_the_cluster_name_reaches_every_sink(
    make_forwarder: ForwarderFactory, make_sink: SinkFactory, receivers: list[Receiver]
):
    http, graylog = make_sink(), make_sink()
    loki_rx, otlp_rx = loki_receiver(), otlp_receiver()
    receivers += [loki_rx, otlp_rx]
    forwarder = make_forwarder(
        [
            sink_dict("http_output", http.url()),
            sink_dict("graylog", graylog.url(path="/gelf"), FORMAT_GELF),
            sink_dict("loki", loki_rx.url, FORMAT_LOKI),
            sink_dict("otel", otlp_rx.url, FORMAT_OTLP),
        ]
    )
    lines = [falco_json(alert) for alert in rule_alerts(real_alerts(CLUSTER))]
    for line in lines:
        append_alert(forwarder, line)

    wait_for(
        lambda: (
            (len(http.bodies), len(graylog.bodies), len(loki_rx.accepted), len(otlp_rx.accepted))
            == (34, 34, 34, 34)
        ),
        timeout=20,
    )
    # Falco's JSON (http_output, falcosidekick): the line as Falco wrote it, name included.
    assert http.bodies == lines
    # GELF: _cluster, what the gelf integrator's stream rules match (stored as "cluster").
    messages = [json.loads(body) for body in graylog.bodies]
    assert [m["_cluster"] for m in messages] == [CLUSTER] * 34
    assert not [name for m in messages for name in m if name.startswith("_cluster_")]
    # Loki: the stream label "cluster"; not again in the line.
    assert [labels["cluster"] for labels, _, _ in loki_rx.accepted] == [CLUSTER] * 34
    assert not [line for _, _, line in loki_rx.accepted if CLUSTER in line]
    # OTLP: the resource's k8s.cluster.name; not again among the record's attributes.
    assert [_attrs(resource)["k8s.cluster.name"] for resource, _ in otlp_rx.accepted] == [
        CLUSTER
    ] * 34
    assert not [r for _, r in otlp_rx.accepted if "cluster" in _attrs(r)]


@pytest.mark.parametrize("alert", real_alerts(), ids=lambda a: a["rule"])
def test_without_a_name_no_sink_names_a_cluster(alert: dict[str, Any]):
    assert "_cluster" not in gelf.to_gelf(alert, JUJU)
    ((labels, _, _),) = loki_entries(loki.frame([loki.encode_entry(alert, JUJU)], JUJU))
    assert "cluster" not in labels
    ((resource, _),) = otlp_records(otlp.frame([otlp.encode_record(alert, JUJU)], JUJU))
    assert "k8s.cluster.name" not in _attrs(resource)


def test_an_otlp_batch_across_a_rename_keeps_each_alert_under_its_own_cluster():
    """A request spanning a change of cluster_name: a resource per run, alerts in log order."""
    named = [dict(falco_alert(i), output_fields={"cluster": c}) for i, c in enumerate("aabba")]
    body = otlp.frame([otlp.encode_record(alert, JUJU) for alert in named], JUJU)

    runs = [
        (_attrs(group["resource"]).get("k8s.cluster.name"), len(scope["logRecords"]))
        for group in json.loads(body)["resourceLogs"]
        for scope in group["scopeLogs"]
    ]
    assert runs == [("a", 2), ("b", 2), ("a", 1)]
    bodies = [record["body"]["stringValue"] for _, record in otlp_records(body)]
    assert bodies == [alert["output"] for alert in named]


def test_gelf_never_cuts_the_cluster_name_to_fit_the_size_limit():
    """A cut name would put the alert in no cluster's stream: it goes whole, and last."""
    alert = falco_alert(output_fields={"cluster": "c" * 100, "big": "x" * 4000})
    untrimmed = len(gelf.encode(alert, JUJU, None))

    for limit in range(450, untrimmed, 53):  # down to short_message cut to a character
        message = gelf.to_gelf(alert, JUJU, limit)
        assert len(gelf.encode_gelf(message)) <= limit
        assert message["_cluster"] == "c" * 100
    assert gelf.to_gelf(alert, JUJU, 450)["short_message"] == "0"


def _attrs(holder: dict[str, Any]) -> dict[str, Any]:
    return {kv["key"]: next(iter(kv["value"].values())) for kv in holder.get("attributes", [])}
