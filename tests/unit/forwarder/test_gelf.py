"""GELF mapping: real-shaped Falco k8s_audit alerts, and properties over arbitrary input."""

import json
import re
from typing import Any

import pytest
from forwarder_helpers import falco_alert
from hypothesis import example, given, settings
from hypothesis import strategies as st

from falco_forwarder.alert_time import alert_time_ns
from falco_forwarder.config import JujuTopology
from falco_forwarder.gelf import GelfMessage, encode_gelf, field_name, to_gelf

JUJU = JujuTopology("cos", "f2c5e3a1-7b4d-4e2a-9c1d-0123456789ab", "falco-k8s", "falco-k8s/0")
EXTRA = re.compile(r"_[A-Za-z0-9_]+")
REQUIRED = {"version", "host", "short_message", "timestamp", "level"}
# Additional field names Graylog drops or keeps for itself once it strips the "_".
GRAYLOG_OWN = {f"_{name}" for name in ("id", "message", "source", "timestamp", "level", "host")}
GRAYLOG_OWN |= {"_short_message", "_full_message", "_streams", "_facility", "_file", "_line"}


def text(message: GelfMessage, key: str) -> str:
    """A field the test expects to hold text (GELF values may also be numbers)."""
    value = message[key]
    assert isinstance(value, str), f"{key} is {value!r}"
    return value


def never_called() -> float:
    raise AssertionError("the alert's own time must be used")


def test_create_privileged_pod():
    message = to_gelf(falco_alert(7), JUJU, 65536, now=never_called)

    assert message == {
        "version": "1.1",
        "host": "falco-k8s-0",
        "short_message": falco_alert(7)["output"],
        "full_message": falco_alert(7)["output"],
        "timestamp": 1795756046.123,
        "level": 4,
        "_falco_rule": "Create Privileged Pod",
        "_falco_priority": "Warning",
        "_falco_source": "k8s_audit",
        "_falco_tags": "k8s,NIST_800-53_AC-6",
        "_juju_model": "cos",
        "_juju_model_uuid": "f2c5e3a1-7b4d-4e2a-9c1d-0123456789ab",
        "_juju_application": "falco-k8s",
        "_juju_unit": "falco-k8s/0",
        "_evt_time": 1795756046123456789,
        "_ka_user_name": "admin",
        "_ka_target_namespace": "default",
        "_ka_resp_name": "nginx-7",
        "_jevt_value_requestObject_kind": "Pod",
        "_ka_req_pod_containers_privileged": "true",
        "_ka_req_pod_containers_image": '["nginx:1.27"]',
    }


def test_attach_exec_pod_prefers_the_message_property():
    alert = {
        "hostname": "falco-k8s-1",
        "output": "05:10:00.000000001: Notice Attach/Exec to pod (user=dev pod=db-0 ns=prod "
        'action=exec command=["sh","-c","id"])',
        "message": "Attach/Exec to pod (user=dev pod=db-0)",
        "priority": "Notice",
        "rule": "Attach/Exec Pod",
        "source": "k8s_audit",
        "tags": ["k8s", "mitre_execution"],
        "time": "2026-11-27T05:10:00.000000001Z",
        "output_fields": {
            "ka.user.name": "dev",
            "ka.target.name": "db-0",
            "ka.uri.param[command]": "sh",
            "ka.target.subresource": "exec",
        },
    }
    message = to_gelf(alert, JUJU, None)

    assert message["short_message"] == "Attach/Exec to pod (user=dev pod=db-0)"
    assert message["full_message"] == alert["output"]
    assert message["level"] == 5
    assert message["timestamp"] == 1795756200.0
    assert message["_ka_uri_param_command"] == "sh"
    assert message["_falco_tags"] == "k8s,mitre_execution"


def test_secret_get_with_missing_and_odd_values():
    alert = {
        "output": "K8s Secret Get Successfully (user=system:serviceaccount:ns:sa secret=db)",
        "priority": "error",
        "rule": "K8s Secret Get Successfully",
        "time": "2026-11-27T05:07:26.9996+01:00",
        "tags": ["k8s", 3, None],
        "output_fields": {
            "ka.user.name": "system:serviceaccount:ns:sa",
            "ka.response.code": 200,
            "ka.auth.reason": None,
            "ka.req.ratio": 0.5,
            "id": "abc",
            "_id": "def",
            "falco.rule": "spoofed",
            "falco.source": "spoofed too",  # the alert has no source: the name stays reserved
            "big": 2**64 - 1,  # Graylog would wrap it to -1 as a long
            "huge": 10**400,  # too large even for a float
            "long": -(2**63),
        },
    }
    message = to_gelf(alert, JUJU, None)

    assert message["host"] == "falco-k8s/0"  # no hostname: the unit
    assert message["level"] == 3
    assert message["timestamp"] == 1795752447.0  # .9996 s rounds up to the next second
    assert message["_falco_tags"] == "k8s,3,"
    assert message["_ka_response_code"] == 200
    assert message["_ka_req_ratio"] == 0.5
    assert "_ka_auth_reason" not in message
    assert "_id" not in message
    assert message["_field_id"] == "def"  # "_id" sorts before "id"
    assert message["_field_id_2"] == "abc"
    assert message["_falco_rule"] == "K8s Secret Get Successfully"
    assert message["_falco_rule_2"] == "spoofed"
    assert "_falco_source" not in message
    assert message["_falco_source_2"] == "spoofed too"
    assert message["_big"] == "18446744073709551615"
    assert message["_huge"] == "1" + "0" * 400
    assert message["_long"] == -(2**63)


@pytest.mark.parametrize(
    ("alert", "short_message"),
    [
        ({"rule": "Only a rule", "output": ""}, "Only a rule"),
        ({"message": None, "output": None}, "falco alert"),
        ({"output": {"odd": True}}, '{"odd":true}'),
        ({"message": " ", "output": "Real alert text\n"}, "Real alert text"),
        ({"output": "\n", "rule": "\t"}, "falco alert"),
    ],
)
def test_short_message_is_never_blank(alert: dict[str, Any], short_message: str):
    assert to_gelf(alert, JUJU)["short_message"] == short_message


@pytest.mark.parametrize(("hostname", "host"), [(" ", "falco-k8s/0"), (" node-1\n", "node-1")])
def test_host_is_never_blank(hostname: str, host: str):
    assert to_gelf({"hostname": hostname}, JUJU)["host"] == host


@pytest.mark.parametrize(
    ("priority", "level"),
    [
        ("Emergency", 0),
        ("ALERT", 1),
        ("critical", 2),
        ("Error", 3),
        ("Warning", 4),
        ("Notice", 5),
        ("Informational", 6),
        ("Info", 6),
        ("Debug", 7),
        ("Verbose", 6),
        (None, 6),
        (3, 6),
    ],
)
def test_level_is_the_syslog_severity(priority: object, level: int):
    assert to_gelf({"priority": priority}, JUJU)["level"] == level


@pytest.mark.parametrize(
    "time", [None, "yesterday", "2026-13-01T00:00:00Z", "2026-11-27T05:07:26", 1795756046]
)
def test_timestamp_falls_back_to_now(time: object):
    assert (
        to_gelf({"time": time}, JUJU, now=lambda: 1700000000.12345)["timestamp"] == 1700000000.123
    )


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("ka.user.name", "_ka_user_name"),
        ("jevt.value[/requestObject/kind]", "_jevt_value_requestObject_kind"),
        ("ka.req.pod.volumes.hostpath[/etc]", "_ka_req_pod_volumes_hostpath_etc"),
        ("a__b..c", "_a_b_c"),
        ("__lead", "_lead"),
        ("id", "_field_id"),
        ("source", "_field_source"),
        ("message", "_field_message"),
        ("timestamp", "_field_timestamp"),
        ("streams", "_field_streams"),
        ("gl2_remote_ip", "_field_gl2_remote_ip"),
        ("Source", "_Source"),
        ("...", "_field"),
        ("ünïcode", "_n_code"),
        ("x" * 300, "_" + "x" * 100),
    ],
)
def test_field_names(key: str, name: str):
    assert field_name(key) == name


def test_trims_full_message_first():
    alert = falco_alert(output="o" * 5000, message="Privileged pod")
    untrimmed = to_gelf(alert, JUJU)
    message = to_gelf(alert, JUJU, 1500)

    assert len(encode_gelf(message)) <= 1500
    assert message["full_message"] == "o" * len(text(message, "full_message"))
    assert len(encode_gelf(message)) > 1500 - 2  # cut no more than needed
    assert {k: v for k, v in message.items() if k != "full_message"} == {
        k: v for k, v in untrimmed.items() if k != "full_message"
    }


def test_then_the_largest_extra_fields():
    alert = {
        "output": "x" * 3000,
        "message": "m" * 2000,
        "output_fields": {"big": "b" * 2000, "bigger": "é" * 2000, "number": 12345},
    }
    message = to_gelf(alert, JUJU, 3000)
    encoded = encode_gelf(message)

    assert len(encoded) <= 3000
    assert "full_message" not in message
    assert "_bigger" not in message  # 4000 bytes of UTF-8: the largest, gone first
    assert message["_big"] == "b" * len(text(message, "_big"))  # then cut as much as needed
    assert 0 < len(text(message, "_big")) < 2000
    assert len(encoded) > 3000 - 2
    assert message["_number"] == 12345
    assert message["short_message"] == "m" * 2000


def test_short_message_is_trimmed_before_the_identity_fields():
    alert = {"message": "m" * 3000, "rule": "Create Privileged Pod", "output_fields": {"n": 1}}
    message = to_gelf(alert, JUJU, 1024)

    assert len(encode_gelf(message)) <= 1024
    assert "_n" not in message
    assert message["short_message"] == "m" * len(text(message, "short_message"))
    assert len(text(message, "short_message")) > 600
    assert message["_falco_rule"] == "Create Privileged Pod"
    assert message["_juju_model_uuid"] == JUJU.model_uuid


@pytest.mark.parametrize("limit", range(256, 700, 16))
def test_identity_fields_are_whole_or_absent_and_the_rule_goes_last(limit: int):
    alert = falco_alert(
        rule="Create Privileged Pod In Namespace kube-system",
        output="o" * 400,
        output_fields={f"field.{i}": "v" * 20 for i in range(8)},
    )
    full = to_gelf(alert, JUJU)
    message = to_gelf(alert, JUJU, limit)

    assert len(encode_gelf(message)) <= limit
    identity = [key for key in full if key.startswith(("_falco_", "_juju_"))]
    assert all(message[key] == full[key] for key in identity if key in message)
    if any(key in message for key in identity):
        assert "_falco_rule" in message


def test_json_encoded_values_are_removed_whole_never_cut():
    containers = [{"image": f"registry.example/app-{i}:1.0", "privileged": True} for i in range(9)]
    alert = falco_alert(output="", output_fields={"ka.req.pod.containers": containers})
    for limit in range(400, 1200, 7):
        message = to_gelf(alert, JUJU, limit)
        if "_ka_req_pod_containers" in message:
            assert json.loads(text(message, "_ka_req_pod_containers")) == containers


def test_trims_multibyte_text_on_character_boundaries():
    alert = {"output": "🦅" * 2000, "output_fields": {"note": 'ж\n"' * 500}}
    message = to_gelf(alert, JUJU, 1024)
    encoded = encode_gelf(message)

    assert len(encoded) <= 1024
    assert json.loads(encoded.decode("utf-8")) == message
    assert set(text(message, "short_message")) == {"🦅"}


def test_lone_surrogates_are_encoded_as_valid_utf8():
    message = to_gelf({"output": "bad \ud800 text"}, JUJU, 1024)

    assert json.loads(encode_gelf(message))["short_message"] == "bad ? text"


def test_huge_host_and_topology_still_fit():
    juju = JujuTopology("m" * 2000, "u", "a" * 2000, "n" * 2000)
    message = to_gelf({"hostname": "h" * 5000, "rule": "r" * 5000}, juju, 256)

    assert len(encode_gelf(message)) <= 256
    assert text(message, "host").startswith("h")
    assert text(message, "short_message").startswith("r")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
big_values = json_values | st.text(min_size=200, max_size=3000)
output_fields = st.dictionaries(st.text(max_size=40), big_values, max_size=25)


def assert_valid_gelf(message: dict[str, Any], limit: int | None) -> None:
    assert message.keys() >= REQUIRED
    assert message["version"] == "1.1"
    for key in ("host", "short_message"):
        assert isinstance(message[key], str)
        assert message[key].strip()  # Graylog refuses blank ones
    assert isinstance(message["timestamp"], float)
    assert message["level"] in range(8)
    for key, value in message.items():
        assert key in REQUIRED or key == "full_message" or EXTRA.fullmatch(key), key
        assert key != "_id"
        assert key not in GRAYLOG_OWN, key
        assert not key.startswith("_gl2_"), key
        assert isinstance(value, str | int | float), (key, value)
        assert not isinstance(value, bool), (key, value)
        if isinstance(value, int):
            assert -(2**63) <= value < 2**63, (key, value)
    encoded = encode_gelf(message)
    assert json.loads(encoded) == message
    if limit is not None:
        assert len(encoded) <= limit


@settings(max_examples=150, deadline=None)
@given(fields=output_fields, limit=st.none() | st.integers(min_value=1024, max_value=16384))
@example(fields={"": True, "_": None, "id": 1, "ID": 2, "i.d": 3}, limit=1024)
@example(fields={"n": 10**400, "source": " ", "gl2.x": 1, "falco_tags": "x"}, limit=1024)
def test_output_fields_always_give_valid_gelf(fields: dict[str, Any], limit: int | None):
    message = to_gelf(falco_alert(output_fields=fields), JUJU, limit)

    assert_valid_gelf(message, limit)
    if limit is None:  # nothing lost: one additional field per value neither null nor empty
        fixed = to_gelf(falco_alert(output_fields={}), JUJU)
        kept = sum(value is not None and value != "" for value in fields.values())
        assert len(message) == len(fixed) + kept


@settings(max_examples=100, deadline=None)
@given(fields=output_fields)
def test_field_naming_does_not_depend_on_key_order(fields: dict[str, Any]):
    reordered = dict(reversed(fields.items()))

    def gelf(fields: dict[str, Any]) -> dict[str, Any]:
        return to_gelf({"output_fields": fields}, JUJU, now=lambda: 1.0)

    assert gelf(reordered) == gelf(fields)


@settings(max_examples=100, deadline=None)
@given(
    alert=st.dictionaries(
        st.sampled_from(
            [
                "time",
                "rule",
                "priority",
                "source",
                "hostname",
                "output",
                "tags",
                "message",
                "output_fields",
            ]
        ),
        json_values,
    ),
    limit=st.integers(min_value=256, max_value=4096),
)
def test_any_alert_object_gives_valid_gelf(alert: dict[str, Any], limit: int):
    assert_valid_gelf(to_gelf(alert, JUJU, limit), limit)


@pytest.mark.parametrize(
    "time", ["2026-11-27T10:30:00.123456789+05:30", "2026-11-27T10:30:00.5+0530"]
)
def test_gelf_reads_an_alert_time_as_the_loki_and_otlp_sinks_do(time: str):
    nanos = alert_time_ns(time, now=lambda: 0)

    assert nanos != 0
    assert to_gelf({"time": time}, JUJU, now=lambda: 0.0)["timestamp"] == round(nanos / 1e9, 3)
