"""What every encoder does the same way, on a real Falco 0.44.1 alert line."""

import json
from typing import Any

import pytest

from falco_forwarder import gelf, loki, otlp
from falco_forwarder.config import JujuTopology

JUJU = JujuTopology("cos", "f2c5e3a1-7b4d-4e2a-9c1d-0123456789ab", "falco-k8s", "falco-k8s/0")
# One line as Falco 0.44.1 wrote it to the charm's file_output (k8saudit 0.18.0 rules), with
# the empty "ka.auth.reason" that 80 of 180 real GELF messages carried.
REAL_ALERT = (
    '{"hostname":"vm","message":"K8s Namespace Created (user=system:apiserver namespace=kube-'
    'system resource=namespaces resp=201 decision=allow reason=)","output":"2026-12-06T03:43:'
    "48.489207000+0000: Informational K8s Namespace Created (user=system:apiserver namespace="
    'kube-system resource=namespaces resp=201 decision=allow reason=)","output_fields":{"evt.'
    'time.iso8601":1796528628489207000,"ka.auth.decision":"allow","ka.auth.reason":"","ka.res'
    'ponse.code":"201","ka.target.name":"kube-system","ka.target.resource":"namespaces","ka.u'
    'ser.name":"system:apiserver"},"priority":"Informational","rule":"K8s Namespace Created",'
    '"source":"k8s_audit","tags":["k8s"],"time":"2026-12-06T03:43:48.489207000Z"}'
)


def gelf_fields(alert: dict[str, Any]) -> set[str]:
    return set(json.loads(gelf.encode(alert, JUJU, None)))


def loki_fields(alert: dict[str, Any]) -> set[str]:
    body = json.loads(loki.frame([loki.encode_entry(alert, JUJU)], JUJU))
    line = json.loads(body["streams"][0]["values"][0][1])
    return set(line.get("output_fields", {}))


def otlp_fields(alert: dict[str, Any]) -> set[str]:
    body = json.loads(otlp.frame([otlp.encode_record(alert, JUJU)], JUJU))
    (record,) = body["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    return {attribute["key"] for attribute in record["attributes"]}


@pytest.mark.parametrize(
    ("fields_of", "empty", "kept"),
    [
        (gelf_fields, "_ka_auth_reason", "_ka_auth_decision"),
        (loki_fields, "ka.auth.reason", "ka.auth.decision"),
        (otlp_fields, "ka.auth.reason", "ka.auth.decision"),
    ],
    ids=["gelf", "loki", "otlp"],
)
def test_every_encoder_leaves_out_empty_and_null_output_fields(
    fields_of: Any, empty: str, kept: str
):
    alert = json.loads(REAL_ALERT)
    alert["output_fields"]["ka.impersonated.user.name"] = None

    fields = fields_of(alert)

    assert kept in fields
    assert empty not in fields
    assert not any("impersonated" in name for name in fields)
