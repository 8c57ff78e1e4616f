"""End to end: Falco-like appends to the alert log, a real forwarder, real sinks on loopback."""

import json
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from forwarder_helpers import (
    LOOPBACK,
    ForwarderFactory,
    Reply,
    SinkFactory,
    append_alert,
    append_line,
    encode,
    falco_alert,
    free_port,
    metric,
    sink_dict,
    wait_for,
)

from falco_forwarder import gelf
from falco_forwarder.forwarder import Forwarder
from falco_forwarder.gelf import LEVELS, GelfMessage


def test_fans_out_to_every_sink(make_sink: SinkFactory, make_forwarder: ForwarderFactory):
    http_output, graylog, sidekick = make_sink(), make_sink(), make_sink(default=202)
    forwarder = make_forwarder(
        [
            sink_dict("http_output", http_output.url(path="/alerts?x=1")),
            sink_dict(
                "graylog",
                graylog.url(path="/gelf"),
                "gelf",
                headers={"Authorization": "Bearer s3cret"},
                max_message_bytes=65536,
            ),
            sink_dict("falcosidekick", sidekick.url()),
        ]
    )
    bodies = [encode(falco_alert(i)) for i in range(25)]
    for body in bodies:
        append_alert(forwarder, body)

    for sink in (http_output, graylog, sidekick):
        wait_for(lambda sink=sink: len(sink.received) == len(bodies))
    assert http_output.bodies == bodies
    assert sidekick.bodies == bodies
    assert http_output.received[0].path == "/alerts?x=1"
    assert http_output.received[0].headers["Content-Type"] == "application/json"
    assert "Authorization" not in http_output.received[0].headers

    gelf = [json.loads(body) for body in graylog.bodies]
    assert [m["_ka_resp_name"] for m in gelf] == [f"nginx-{i}" for i in range(25)]
    first = gelf[0]
    assert first["version"] == "1.1"
    assert first["host"] == "falco-k8s-0"
    assert first["level"] == LEVELS["warning"]
    assert first["timestamp"] == 1795756046.123
    assert first["_falco_rule"] == "Create Privileged Pod"
    assert first["_jevt_value_requestObject_kind"] == "Pod"
    assert first["_ka_req_pod_containers_privileged"] == "true"
    assert first["_juju_unit"] == "falco-k8s/0"
    assert graylog.received[0].headers["Authorization"] == "Bearer s3cret"
    assert graylog.received[0].path == "/gelf"

    for name in ("http_output", "graylog", "falcosidekick"):
        wait_for(
            lambda name=name: (
                metric(forwarder.port, "falco_forwarder_backlog_bytes", sink=name) == 0
            )
        )
        assert metric(forwarder.port, "falco_forwarder_delivered_total", sink=name) == 25
    assert metric(forwarder.port, "falco_forwarder_alert_log_bytes") == sum(
        len(body) + 1 for body in bodies
    )


def test_sink_outage_delays_only_that_sink_and_loses_nothing(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    port = free_port()
    healthy = make_sink()
    forwarder = make_forwarder(
        [
            sink_dict("down", f"http://{LOOPBACK}:{port}/"),
            sink_dict("up", healthy.url()),
        ]
    )
    bodies = [encode(falco_alert(i)) for i in range(30)]
    for body in bodies:
        append_alert(forwarder, body)

    wait_for(lambda: len(healthy.received) == 30, what="the healthy sink not to be held up")
    backlog = sum(len(body) + 1 for body in bodies)
    assert metric(forwarder.port, "falco_forwarder_backlog_bytes", sink="down") == backlog
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_retried_total", sink="down") >= 3)

    revived = make_sink(port=port)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_backlog_bytes", sink="down") == 0)
    assert revived.bodies == bodies  # each once, in order
    assert metric(forwarder.port, "falco_forwarder_delivered_total", sink="down") == 30
    assert metric(forwarder.port, "falco_forwarder_retried_total", sink="up") == 0


def test_5xx_is_retried_until_accepted(make_sink: SinkFactory, make_forwarder: ForwarderFactory):
    sink = make_sink(script=[500, 503], default=202)
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    body = encode(falco_alert())
    append_alert(forwarder, body)

    wait_for(lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="s") == 1)
    assert sink.bodies == [body] * 3
    assert metric(forwarder.port, "falco_forwarder_retried_total", sink="s") == 2


def test_429_waits_for_retry_after(make_sink: SinkFactory, make_forwarder: ForwarderFactory):
    sink = make_sink(script=[Reply(429, {"Retry-After": "0.4"})])
    forwarder = make_forwarder(
        [sink_dict("s", sink.url())],
        retry={"initial_seconds": 0.01, "max_seconds": 5.0, "timeout_seconds": 2.0},
    )
    append_alert(forwarder, encode(falco_alert()))

    wait_for(lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="s") == 1)
    first, second = sink.received
    assert second.at - first.at >= 0.35  # full jitter alone would wait at most 0.01 s
    assert metric(forwarder.port, "falco_forwarder_retried_total", sink="s") == 1


def test_4xx_drops_without_retry_and_logs_once_per_burst(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="falco_forwarder")
    sink = make_sink(script=[400] * 5, default=200)
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    bodies = [encode(falco_alert(i)) for i in range(6)]
    for body in bodies:
        append_alert(forwarder, body)

    wait_for(lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="s") == 1)
    assert sink.bodies == bodies  # no request repeated
    assert (
        metric(forwarder.port, "falco_forwarder_dropped_total", sink="s", reason="http_4xx") == 5
    )
    assert metric(forwarder.port, "falco_forwarder_retried_total", sink="s") == 0
    refusals = [r for r in caplog.records if "refused an alert" in r.getMessage()]
    assert len(refusals) == 1
    assert "HTTP 400" in refusals[0].getMessage()
    recoveries = [
        r.getMessage() for r in caplog.records if "accepting alerts again" in r.getMessage()
    ]
    assert recoveries == ["sink s: accepting alerts again (4 more occurrences not logged)"]


def test_an_alert_the_gelf_mapping_fails_on_is_dropped_and_the_rest_delivered(
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    real_to_gelf = gelf.to_gelf

    def buggy_to_gelf(alert: dict[str, Any], *args: Any) -> GelfMessage:
        if alert["rule"] == "poison":
            raise OverflowError("a bug in the mapping")
        return real_to_gelf(alert, *args)

    monkeypatch.setattr(gelf, "to_gelf", buggy_to_gelf)
    graylog, http_output = make_sink(), make_sink()
    forwarder = make_forwarder(
        [sink_dict("graylog", graylog.url(), "gelf"), sink_dict("http_output", http_output.url())]
    )
    bodies = [
        encode(falco_alert(0)),
        encode(falco_alert(1, rule="poison")),
        encode(falco_alert(2)),
    ]
    for body in bodies:
        append_alert(forwarder, body)

    wait_for(lambda: len(graylog.bodies) == 2 and len(http_output.bodies) == 3)
    assert [json.loads(b)["_falco_rule"] for b in graylog.bodies] == ["Create Privileged Pod"] * 2
    assert (
        metric(
            forwarder.port, "falco_forwarder_dropped_total", sink="graylog", reason="unmappable"
        )
        == 1
    )
    assert metric(forwarder.port, "falco_forwarder_backlog_bytes", sink="graylog") == 0
    assert "sink graylog: cannot map an alert to gelf; dropping it" in caplog.text  # the format
    assert "OverflowError: a bug in the mapping" in caplog.text


def test_https_sink_is_verified_against_its_ca_cert(
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    tls_server: tuple[ssl.SSLContext, str],
):
    context, ca_pem = tls_server
    sink = make_sink(tls=context)
    forwarder = make_forwarder(
        [
            sink_dict("trusted", sink.url("https"), ca_cert=ca_pem),
            sink_dict("untrusted", sink.url("https")),
        ]
    )
    append_alert(forwarder, encode(falco_alert()))

    wait_for(
        lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="trusted") == 1
    )
    wait_for(
        lambda: metric(forwarder.port, "falco_forwarder_retried_total", sink="untrusted") >= 2
    )
    assert len(sink.received) == 1
    assert metric(forwarder.port, "falco_forwarder_delivered_total", sink="untrusted") == 0
    assert metric(forwarder.port, "falco_forwarder_backlog_bytes", sink="untrusted") > 0


def _down(make_forwarder: ForwarderFactory, **overrides: Any) -> tuple[Forwarder, int]:
    """A forwarder whose only sink, ``s``, is unreachable until a sink starts on the port."""
    port = free_port()
    return make_forwarder([sink_dict("s", f"http://{LOOPBACK}:{port}/")], **overrides), port


def test_sink_up_is_0_while_a_sink_fails_and_1_once_it_answers_again(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    forwarder, port = _down(make_forwarder)
    bodies = [encode(falco_alert(i)) for i in range(2)]
    for body in bodies:
        append_alert(forwarder, body)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_sink_up", sink="s") == 0)

    sink = make_sink(port=port, script=[400])  # refused, but answering: up
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_backlog_bytes", sink="s") == 0)
    assert metric(forwarder.port, "falco_forwarder_sink_up", sink="s") == 1
    assert sink.bodies == bodies


def test_alerts_survive_a_restart_and_resume_at_the_checkpoint(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, alerts_dir: Path
):
    port = free_port()
    sinks = [sink_dict("later", f"http://{LOOPBACK}:{port}/")]
    first = make_forwarder(sinks)
    bodies = [encode(falco_alert(i)) for i in range(10)]
    for body in bodies:
        append_alert(first, body)
    first.close()
    # Segment 1, offset 0, line 0: nothing was delivered.
    assert (alerts_dir / "state" / "later.checkpoint").read_text().split()[:3] == [
        "0" * 19 + "1"
    ] + ["0".zfill(20)] * 2

    sink = make_sink(port=port)
    second = make_forwarder(sinks)
    for body in (extra := [encode(falco_alert(i)) for i in range(10, 13)]):
        append_alert(second, body)
    wait_for(lambda: metric(second.port, "falco_forwarder_delivered_total", sink="later") == 13)
    assert sink.bodies == bodies + extra  # each once, in order


def test_a_line_still_being_written_waits_for_its_newline(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    body = encode(falco_alert())
    forwarder.log.file.parent.mkdir(parents=True, exist_ok=True)
    with forwarder.log.file.open("ab", buffering=0) as falco:
        falco.write(body[:40])
        wait_for(lambda: metric(forwarder.port, "falco_forwarder_backlog_bytes", sink="s") == 40)
        assert sink.bodies == []
        falco.write(body[40:] + b"\n")
    wait_for(lambda: sink.bodies == [body])


def test_lines_that_are_not_json_objects_are_skipped_counted_and_logged(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, caplog: pytest.LogCaptureFixture
):
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url()), sink_dict("g", sink.url(), "gelf")])
    good = encode(falco_alert())
    for line in (b"[1, 2]", b"not json", b"", b'{"cut short', good):
        append_line(forwarder.log.file, line)

    wait_for(lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="g") == 1)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="s") == 1)
    for name in ("s", "g"):
        assert (
            metric(forwarder.port, "falco_forwarder_dropped_total", sink=name, reason="malformed")
            == 4
        )
    assert good in sink.bodies
    assert "sink s: skipped a line of the alert log that is not a JSON object: b'[1, 2]'" in (
        caplog.text
    )


def test_a_rotated_segment_is_read_to_its_end_before_the_next(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, alerts_dir: Path
):
    forwarder, port = _down(
        make_forwarder,
        alert_log={
            "file": str(alerts_dir / "log" / "falco.log"),
            "state_dir": str(alerts_dir / "state"),
            "retention_bytes": 1024 * 1024,
            "segment_bytes": 1,  # rotate whatever is there
        },
    )
    bodies = [encode(falco_alert(i)) for i in range(4)]
    log = forwarder.log.file
    append_alert(forwarder, bodies[0])
    rotated = log.with_name("falco.log.000000000001")
    wait_for(rotated.exists, what="the first rotation")
    # Falco opened the file just before the rename: its line lands in the rotated segment,
    append_line(rotated, bodies[1])
    # and so does the start of a line cut short when Falco was killed mid-write.
    with rotated.open("ab") as falco:
        falco.write(b'{"rule": "cut')
    append_alert(forwarder, bodies[2])  # the next Falco: a new active file
    append_alert(forwarder, bodies[3])

    sink = make_sink(port=port)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_backlog_bytes", sink="s") == 0)
    assert sink.bodies == bodies
    assert (
        metric(forwarder.port, "falco_forwarder_dropped_total", sink="s", reason="malformed") == 1
    )


def test_retention_drops_whole_segments_counting_exactly_what_each_sink_missed(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, alerts_dir: Path
):
    bodies = [encode(falco_alert(i)) for i in range(100, 300)]  # same length each
    line = len(bodies[0]) + 1
    segment, retention = 10 * line, 40 * line
    up = make_sink()
    port = free_port()
    forwarder = make_forwarder(
        [sink_dict("up", up.url()), sink_dict("down", f"http://{LOOPBACK}:{port}/")],
        alert_log={
            "file": str(alerts_dir / "log" / "falco.log"),
            "state_dir": str(alerts_dir / "state"),
            "retention_bytes": retention,
            "segment_bytes": segment,
        },
    )
    for i, body in enumerate(bodies):
        append_alert(forwarder, body)
        if i % 10 == 9:  # a full segment: wait for its rotation, as happens at Falco's pace
            wait_for(lambda: not forwarder.log.file.exists(), what="the rotation")
            assert forwarder.log.disk_bytes() <= retention + segment
    wait_for(lambda: len(up.bodies) == 200)
    assert up.bodies == bodies
    assert (
        metric(forwarder.port, "falco_forwarder_dropped_total", sink="up", reason="retention") == 0
    )
    assert len(list((alerts_dir / "log").iterdir())) == 4  # 40 lines: exactly the retention

    down = make_sink(port=port)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_backlog_bytes", sink="down") == 0)
    dropped = metric(
        forwarder.port, "falco_forwarder_dropped_total", sink="down", reason="retention"
    )
    delivered = metric(forwarder.port, "falco_forwarder_delivered_total", sink="down")
    assert dropped == 160  # all but the 4 segments kept, the alert being retried included
    assert delivered == 40
    assert down.bodies == bodies[int(dropped) :]  # the newest, each once, in order
