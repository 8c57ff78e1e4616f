"""The Prometheus exposition of the forwarder's counters and gauges."""

from falco_forwarder.metrics import (
    DROPPED,
    RECEIVED,
    REJECTED,
    DeliveryState,
    Metrics,
    parse_delivery,
)


def test_renders_counters_and_gauges():
    metrics = Metrics(["gelf"], ["too_large"], ["http_4xx"])
    metrics.inc(RECEIVED)
    metrics.inc(RECEIVED)
    metrics.inc(DROPPED, sink="gelf", reason="http_4xx")
    metrics.inc(REJECTED, reason="new_reason")

    text = metrics.render({"gelf": 3}, 1234)

    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[:3] == [
        "# HELP falco_forwarder_received_total"
        " Alerts accepted from Falco and spooled for every sink.",
        "# TYPE falco_forwarder_received_total counter",
        "falco_forwarder_received_total 2",
    ]
    assert 'falco_forwarder_rejected_total{reason="too_large"} 0' in lines
    assert 'falco_forwarder_rejected_total{reason="new_reason"} 1' in lines
    assert 'falco_forwarder_dropped_total{reason="http_4xx",sink="gelf"} 1' in lines
    assert 'falco_forwarder_delivered_total{sink="gelf"} 0' in lines
    assert "# TYPE falco_forwarder_queue_depth gauge" in lines
    assert 'falco_forwarder_queue_depth{sink="gelf"} 3' in lines
    assert "falco_forwarder_spool_bytes 1234" in lines
    assert metrics.value(DROPPED, reason="http_4xx", sink="gelf") == 1  # label order is irrelevant


def test_escapes_label_values():
    metrics = Metrics([], [], [])
    metrics.inc(REJECTED, reason='a"b\\c\nd')

    assert 'falco_forwarder_rejected_total{reason="a\\"b\\\\c\\nd"} 1' in metrics.render({}, 0)


def test_sink_up_starts_up_follows_attempts_and_forgets_removed_sinks():
    metrics = Metrics(["graylog", "old"], [], [])
    assert 'falco_forwarder_sink_up{sink="graylog"} 1' in metrics.render({"graylog": 0}, 0)

    metrics.set_up("graylog", False)
    text = metrics.render({"graylog": 7}, 0)
    assert 'falco_forwarder_sink_up{sink="graylog"} 0' in text
    assert 'sink="old"} ' not in text.split("# HELP falco_forwarder_sink_up")[1]  # removed
    metrics.set_up("graylog", True)
    assert 'falco_forwarder_sink_up{sink="graylog"} 1' in metrics.render({"graylog": 0}, 0)


def test_parse_delivery_reads_back_what_render_wrote():
    odd = 'we"ird\\sink\n'
    metrics = Metrics(["graylog", "http_output", odd], ["spool_error"], ["http_4xx", "corrupt"])
    metrics.inc(DROPPED, sink="graylog", reason="http_4xx")
    metrics.inc(DROPPED, sink="graylog", reason="http_4xx")
    metrics.inc(DROPPED, sink=odd, reason="corrupt")
    metrics.inc(REJECTED, reason="spool_error")
    metrics.set_up("graylog", False)

    state = parse_delivery(metrics.render({"graylog": 1523, "http_output": 0, odd: 2}, 99))

    assert state.queued == {"graylog": 1523, "http_output": 0, odd: 2}
    assert state.dropped == {"graylog": {"http_4xx": 2}, odd: {"corrupt": 1}}  # zeros left out
    assert state.rejected == {"spool_error": 1}
    assert state.down == {"graylog"}


def test_parse_delivery_ignores_what_it_does_not_know():
    text = '# HELP x y\nsome_other_metric{sink="a"} 5\nfalco_forwarder_sink_up 0\ngarbage\n'

    assert parse_delivery(text) == DeliveryState()
