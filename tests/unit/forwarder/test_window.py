"""Distant sinks: several requests in flight, batches, and the checkpoint over what was acked."""

from collections import Counter
from typing import Any

import pytest
from fakes.fake_cos_receivers import LOKI_PATH, OTLP_PATH, Receiver, loki_receiver, otlp_receiver
from forwarder_helpers import (
    LOOPBACK,
    ForwarderFactory,
    Reply,
    SinkFactory,
    append_alert,
    encode,
    falco_alert,
    free_port,
    metric,
    sink_dict,
    wait_for,
)

from falco_forwarder.config import FORMAT_LOKI, FORMAT_OTLP


def drained(port: int, sink: str) -> bool:
    return metric(port, "falco_forwarder_backlog_bytes", sink=sink) == 0


def test_a_fast_sink_gets_one_request_at_a_time_in_log_order(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    sent = [encode(falco_alert(i)) for i in range(200)]
    for body in sent:
        append_alert(forwarder, body)

    wait_for(lambda: drained(forwarder.port, "s"))
    assert sink.bodies == sent
    assert sink.most_at_once == 1


def test_a_slow_sink_gets_several_requests_at_once_and_every_alert_once(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    sink = make_sink(delay=0.05)  # answers 50 ms after each request
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    sent = [encode(falco_alert(i)) for i in range(300)]
    for body in sent:
        append_alert(forwarder, body)

    wait_for(lambda: drained(forwarder.port, "s"), timeout=30)
    assert sink.most_at_once > 8  # one at a time, 300 alerts would take 15 s
    assert Counter(sink.bodies) == Counter(sent)  # each once
    assert metric(forwarder.port, "falco_forwarder_delivered_total", sink="s") == 300


def test_a_failure_in_the_window_resends_from_the_acknowledged_prefix_and_loses_nothing(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    sink = make_sink(delay=0.03, script=[*([200] * 60), Reply(503), Reply(503)])
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    sent = [encode(falco_alert(i)) for i in range(200)]
    for body in sent:
        append_alert(forwarder, body)

    wait_for(lambda: drained(forwarder.port, "s"), timeout=30)
    received = Counter(sink.bodies)
    assert set(received) == set(sent)
    # Only what the sink failed is sent again; what it took beyond the failure is not.
    assert sum(received.values()) - len(sent) == 2
    assert metric(forwarder.port, "falco_forwarder_retried_total", sink="s") == 2
    assert metric(forwarder.port, "falco_forwarder_delivered_total", sink="s") == 200


@pytest.mark.parametrize(
    ("fmt", "path", "make"),
    [(FORMAT_LOKI, LOKI_PATH, loki_receiver), (FORMAT_OTLP, OTLP_PATH, otlp_receiver)],
)
def test_loki_and_otlp_take_what_waits_in_few_requests(
    fmt: str, path: str, make: Any, make_forwarder: ForwarderFactory, receivers: list[Receiver]
):
    port = free_port()
    forwarder = make_forwarder([sink_dict("cos", f"http://{LOOPBACK}:{port}{path}", fmt)])
    names = [f"pod-{i}" for i in range(500)]
    for name in names:
        append_alert(forwarder, encode(falco_alert(output_fields={"ka.resp.name": name})))
    receiver = make(port=port)  # it comes up with 500 alerts waiting
    receivers.append(receiver)

    wait_for(lambda: drained(forwarder.port, "cos"), timeout=30)
    assert receiver.requests <= 5
    assert len(receiver.accepted) == 500
    assert metric(forwarder.port, "falco_forwarder_delivered_total", sink="cos") == 500
