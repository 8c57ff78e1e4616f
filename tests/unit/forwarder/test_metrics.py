"""The Prometheus exposition of the forwarder's counters and gauges."""

from falco_forwarder.metrics import DROPPED, RECEIVED, REJECTED, Metrics


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
