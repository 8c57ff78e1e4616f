"""End to end: Falco-like POSTs to a real forwarder delivering to real sinks on loopback."""

import http.client
import json
import logging
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from forwarder_helpers import (
    LOOPBACK,
    ForwarderFactory,
    Reply,
    SinkFactory,
    encode,
    falco_alert,
    free_port,
    metric,
    post_alert,
    sink_dict,
    wait_for,
)

from falco_forwarder import gelf
from falco_forwarder.forwarder import Forwarder
from falco_forwarder.gelf import LEVELS, GelfMessage
from falco_forwarder.spool import Entry, Spool


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
        assert post_alert(forwarder.port, body, path="/alerts") == 200

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
            lambda name=name: metric(forwarder.port, "falco_forwarder_queue_depth", sink=name) == 0
        )
        assert metric(forwarder.port, "falco_forwarder_delivered_total", sink=name) == 25
    assert metric(forwarder.port, "falco_forwarder_received_total") == 25
    assert metric(forwarder.port, "falco_forwarder_spool_bytes") == 0


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
        assert post_alert(forwarder.port, body) == 200

    wait_for(lambda: len(healthy.received) == 30, what="the healthy sink not to be held up")
    assert metric(forwarder.port, "falco_forwarder_queue_depth", sink="down") == 30
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_retried_total", sink="down") >= 3)

    revived = make_sink(port=port)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_queue_depth", sink="down") == 0)
    assert revived.bodies == bodies  # each once, in order
    assert metric(forwarder.port, "falco_forwarder_delivered_total", sink="down") == 30
    assert metric(forwarder.port, "falco_forwarder_retried_total", sink="up") == 0


def test_5xx_is_retried_until_accepted(make_sink: SinkFactory, make_forwarder: ForwarderFactory):
    sink = make_sink(script=[500, 503], default=202)
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    body = encode(falco_alert())
    assert post_alert(forwarder.port, body) == 200

    wait_for(lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="s") == 1)
    assert sink.bodies == [body] * 3
    assert metric(forwarder.port, "falco_forwarder_retried_total", sink="s") == 2


def test_429_waits_for_retry_after(make_sink: SinkFactory, make_forwarder: ForwarderFactory):
    sink = make_sink(script=[Reply(429, {"Retry-After": "0.4"})])
    forwarder = make_forwarder(
        [sink_dict("s", sink.url())],
        retry={"initial_seconds": 0.01, "max_seconds": 5.0, "timeout_seconds": 2.0},
    )
    assert post_alert(forwarder.port, encode(falco_alert())) == 200

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
        assert post_alert(forwarder.port, body) == 200

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


def test_spooled_alerts_survive_a_restart(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, spool_dir: Path
):
    port = free_port()
    sinks = [sink_dict("later", f"http://{LOOPBACK}:{port}/")]
    first = make_forwarder(sinks)
    bodies = [encode(falco_alert(i)) for i in range(10)]
    for body in bodies:
        assert post_alert(first.port, body) == 200
    first.close()
    assert len(list((spool_dir / "later").glob("*.json"))) == 10

    sink = make_sink(port=port)
    second = make_forwarder(sinks)
    wait_for(lambda: metric(second.port, "falco_forwarder_delivered_total", sink="later") == 10)
    assert sink.bodies == bodies
    assert list((spool_dir / "later").iterdir()) == []


def test_full_spool_drops_the_oldest(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, spool_dir: Path
):
    port = free_port()
    bodies = [encode(falco_alert(i)) for i in range(10)]  # same length each
    forwarder = make_forwarder(
        [sink_dict("s", f"http://{LOOPBACK}:{port}/")],
        spool={"dir": str(spool_dir), "max_bytes": 6 * len(bodies[0])},
    )
    for body in bodies:
        assert post_alert(forwarder.port, body) == 200
    assert (
        metric(forwarder.port, "falco_forwarder_dropped_total", sink="s", reason="spool_full") == 4
    )
    assert metric(forwarder.port, "falco_forwarder_queue_depth", sink="s") == 6
    assert metric(forwarder.port, "falco_forwarder_spool_bytes") == 6 * len(bodies[0])

    sink = make_sink(port=port)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_queue_depth", sink="s") == 0)
    assert sink.bodies == bodies[4:]


def test_a_full_volume_still_accepts_alerts_and_counts_what_it_displaces(
    small_spool_volume: Path,
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    caplog: pytest.LogCaptureFixture,
):
    port = free_port()
    bodies = [encode(falco_alert(i)) for i in range(100)]
    forwarder = make_forwarder([sink_dict("s", f"http://{LOOPBACK}:{port}/")])  # sink down
    for body in bodies:
        assert post_alert(forwarder.port, body) == 200
    queued = int(metric(forwarder.port, "falco_forwarder_queue_depth", sink="s"))
    dropped = metric(forwarder.port, "falco_forwarder_dropped_total", sink="s", reason="disk_full")
    assert queued > 10
    assert dropped == 100 - queued
    assert metric(forwarder.port, "falco_forwarder_rejected_total", reason="spool_error") == 0
    assert "spool volume full before the 10485760-byte cap" in caplog.text

    sink = make_sink(port=port)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_queue_depth", sink="s") == 0)
    assert sink.bodies == bodies[100 - queued :]


def test_a_post_during_a_long_spool_load_waits_instead_of_being_refused(
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    monkeypatch: pytest.MonkeyPatch,
):
    loading, loaded = threading.Event(), threading.Event()
    scan = Spool._scan  # pyright: ignore[reportPrivateUsage]

    def slow_scan(spool: Spool, sink: str) -> list[Entry]:
        loading.set()  # as after a long outage: many thousands of entries to read
        assert loaded.wait(10)
        return scan(spool, sink)

    monkeypatch.setattr(Spool, "_scan", slow_scan)
    sink, port = make_sink(), free_port()
    started: list[Forwarder] = []
    starting = threading.Thread(
        target=lambda: started.append(
            make_forwarder([sink_dict("s", sink.url())], listen={"host": LOOPBACK, "port": port})
        )
    )
    starting.start()
    try:
        assert loading.wait(10)
        falco = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        falco.connect()  # refused if the listener were bound after the load
        body = encode(falco_alert())
        falco.request("POST", "/", body, {"Content-Type": "application/json"})
    finally:
        loaded.set()
        starting.join()
    assert falco.getresponse().status == 200
    falco.close()
    wait_for(lambda: sink.bodies == [body])
    assert metric(started[0].port, "falco_forwarder_received_total") == 1


def _queued_behind_a_down_sink(
    make_forwarder: ForwarderFactory, spool_dir: Path, count: int
) -> tuple[Forwarder, int, list[bytes]]:
    """A forwarder whose only sink is unreachable, with ``count`` alerts queued for it."""
    port = free_port()
    forwarder = make_forwarder([sink_dict("s", f"http://{LOOPBACK}:{port}/")])
    bodies = [encode(falco_alert(i)) for i in range(count)]
    for body in bodies:
        assert post_alert(forwarder.port, body) == 200
    assert sorted(p.name for p in (spool_dir / "s").iterdir()) == [
        f"{seq:020d}.json" for seq in range(1, count + 1)
    ]
    return forwarder, port, bodies


def test_sink_up_is_0_while_a_sink_fails_and_1_once_it_answers_again(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory, spool_dir: Path
):
    forwarder, port, bodies = _queued_behind_a_down_sink(make_forwarder, spool_dir, 2)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_sink_up", sink="s") == 0)

    sink = make_sink(port=port, script=[400])  # refused, but answering: up
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_queue_depth", sink="s") == 0)
    assert metric(forwarder.port, "falco_forwarder_sink_up", sink="s") == 1
    assert sink.bodies == bodies


def test_an_entry_gone_from_disk_is_dropped_and_counted_not_retried(
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    spool_dir: Path,
    caplog: pytest.LogCaptureFixture,
):
    forwarder, port, bodies = _queued_behind_a_down_sink(make_forwarder, spool_dir, 3)
    (spool_dir / "s" / f"{2:020d}.json").unlink()  # e.g. removed by hand

    sink = make_sink(port=port)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_queue_depth", sink="s") == 0)
    assert sink.bodies == [bodies[0], bodies[2]]
    assert metric(forwarder.port, "falco_forwarder_dropped_total", sink="s", reason="missing") == 1
    assert f"spool entry {spool_dir / 's' / f'{2:020d}.json'} is gone" in caplog.text


def test_an_unreadable_entry_is_retried_in_order_never_skipped(
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    spool_dir: Path,
    caplog: pytest.LogCaptureFixture,
):
    forwarder, port, bodies = _queued_behind_a_down_sink(make_forwarder, spool_dir, 3)
    second = spool_dir / "s" / f"{2:020d}.json"
    second.unlink()
    second.mkdir()  # reading it fails with an OSError other than "not found"

    sink = make_sink(port=port)
    wait_for(lambda: caplog.text.count("sink s: delivery failed unexpectedly") >= 2)
    assert sink.bodies == [bodies[0]]  # the third waits behind the second
    second.rmdir()
    second.write_bytes(bodies[1])

    wait_for(lambda: sink.bodies == bodies)
    assert metric(forwarder.port, "falco_forwarder_delivered_total", sink="s") == 3
    assert "IsADirectoryError" in caplog.text


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
        assert post_alert(forwarder.port, body) == 200

    wait_for(lambda: len(graylog.bodies) == 2 and len(http_output.bodies) == 3)
    assert [json.loads(b)["_falco_rule"] for b in graylog.bodies] == ["Create Privileged Pod"] * 2
    assert (
        metric(
            forwarder.port, "falco_forwarder_dropped_total", sink="graylog", reason="unmappable"
        )
        == 1
    )
    assert metric(forwarder.port, "falco_forwarder_queue_depth", sink="graylog") == 0
    assert "sink graylog: cannot map spool entry" in caplog.text
    assert "OverflowError: a bug in the mapping" in caplog.text


def test_corrupt_and_half_written_entries_are_dropped_at_start(
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    spool_dir: Path,
    caplog: pytest.LogCaptureFixture,
):
    body = encode(falco_alert())
    queue = spool_dir / "s"
    queue.mkdir(parents=True)
    (queue / f"{1:020d}.json").write_bytes(b"")  # what a kernel crash can leave
    (queue / f"{2:020d}.json").write_bytes(b"[1, 2]")
    (queue / f"{3:020d}.json").write_bytes(body)
    (spool_dir / f".tmp-{4:020d}").write_bytes(body[:10])  # never acknowledged to Falco
    (spool_dir / "removed-sink").mkdir()
    (spool_dir / "removed-sink" / f"{9:020d}.json").write_bytes(body)

    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="s") == 1)
    assert sink.bodies == [body]
    assert metric(forwarder.port, "falco_forwarder_dropped_total", sink="s", reason="corrupt") == 2
    assert list(queue.iterdir()) == []
    assert sorted(p.name for p in spool_dir.iterdir()) == ["removed-sink", "s"]
    assert (spool_dir / "removed-sink" / f"{9:020d}.json").exists()
    assert "removed-sink alone: not a configured sink (1 alerts)" in caplog.text


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
    assert post_alert(forwarder.port, encode(falco_alert())) == 200

    wait_for(
        lambda: metric(forwarder.port, "falco_forwarder_delivered_total", sink="trusted") == 1
    )
    wait_for(
        lambda: metric(forwarder.port, "falco_forwarder_retried_total", sink="untrusted") >= 2
    )
    assert len(sink.received) == 1
    assert metric(forwarder.port, "falco_forwarder_delivered_total", sink="untrusted") == 0
    assert metric(forwarder.port, "falco_forwarder_queue_depth", sink="untrusted") == 1
