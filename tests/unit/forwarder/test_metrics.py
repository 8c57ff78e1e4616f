"""The Prometheus exposition of the forwarder's counters and gauges."""

import pytest

from falco_forwarder.metrics import (
    DELIVERED,
    DROP_REASONS,
    DROPPED,
    RETENTION,
    DeliveryState,
    Gauges,
    Metrics,
    parse_delivery,
)


def gauges(backlog: dict[str, int], log_bytes: int = 0, **extra: object) -> Gauges:
    """The alert log's gauges: ``backlog`` per sink, every checkpoint saved unless told."""
    values: dict[str, object] = {
        "checkpoint_errors": dict.fromkeys(backlog, ""),
        "volume_free": 0,
        "volume_size": 0,
        **extra,
    }
    return Gauges(backlog=backlog, log_bytes=log_bytes, **values)  # type: ignore[arg-type]


def test_renders_counters_and_gauges():
    metrics = Metrics(["gelf"])
    metrics.inc(DELIVERED, sink="gelf")
    metrics.inc(DELIVERED, sink="gelf")
    metrics.drop("gelf", RETENTION, 40)

    text = metrics.render(gauges({"gelf": 3}, 1234))

    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[:3] == [
        "# HELP falco_forwarder_delivered_total Alerts a sink acknowledged with a 2xx status.",
        "# TYPE falco_forwarder_delivered_total counter",
        'falco_forwarder_delivered_total{sink="gelf"} 2',
    ]
    assert 'falco_forwarder_dropped_total{reason="retention",sink="gelf"} 40' in lines
    for reason in set(DROP_REASONS) - {RETENTION}:  # every reason exported from the start
        assert f'falco_forwarder_dropped_total{{reason="{reason}",sink="gelf"}} 0' in lines
    assert "# TYPE falco_forwarder_backlog_bytes gauge" in lines
    assert 'falco_forwarder_backlog_bytes{sink="gelf"} 3' in lines
    assert "falco_forwarder_alert_log_bytes 1234" in lines
    assert metrics.value(DROPPED, reason=RETENTION, sink="gelf") == 40  # label order irrelevant


def test_a_drop_with_a_reason_not_in_the_list_is_refused():
    metrics = Metrics(["gelf"])

    with pytest.raises(ValueError, match="unknown drop reason 'timeout'"):
        metrics.drop("gelf", "timeout")

    assert metrics.value(DROPPED, sink="gelf", reason="timeout") == 0


def test_escapes_label_values():
    metrics = Metrics(['a"b\\c\nd'])

    assert 'falco_forwarder_delivered_total{sink="a\\"b\\\\c\\nd"} 0' in metrics.render(gauges({}))


def test_sink_up_starts_up_follows_attempts_and_forgets_removed_sinks():
    metrics = Metrics(["graylog", "old"])
    assert 'falco_forwarder_sink_up{sink="graylog"} 1' in metrics.render(gauges({"graylog": 0}))

    metrics.set_up("graylog", False)
    text = metrics.render(gauges({"graylog": 7}))
    assert 'falco_forwarder_sink_up{sink="graylog"} 0' in text
    assert 'sink="old"} ' not in text.split("# HELP falco_forwarder_sink_up")[1]  # removed
    metrics.set_up("graylog", True)
    assert 'falco_forwarder_sink_up{sink="graylog"} 1' in metrics.render(gauges({"graylog": 0}))


def test_parse_delivery_reads_back_what_render_wrote():
    odd = 'we"ird\\sink\n'
    metrics = Metrics(["graylog", "http_output", odd])
    metrics.inc(DROPPED, sink="graylog", reason="http_4xx")
    metrics.inc(DROPPED, sink="graylog", reason="http_4xx")
    metrics.inc(DROPPED, sink=odd, reason="malformed")
    metrics.set_up("graylog", False)

    state = parse_delivery(
        metrics.render(
            gauges(
                {"graylog": 1523, "http_output": 0, odd: 2},
                99,
                checkpoint_errors={"graylog": "", "http_output": "Read-only file system"},
            )
        )
    )

    assert state.backlog == {"graylog": 1523, "http_output": 0, odd: 2}
    assert state.dropped == {"graylog": {"http_4xx": 2}, odd: {"malformed": 1}}  # zeros left out
    assert state.down == {"graylog"}
    assert state.unsaved == {"http_output"}


def test_renders_the_volume_and_whether_each_checkpoint_is_saved():
    metrics = Metrics(["a", "b"])

    text = metrics.render(
        gauges(
            {"a": 0, "b": 0},
            checkpoint_errors={"a": "", "b": "No space left on device"},
            volume_free=1024,
            volume_size=4096,
        )
    )

    assert "falco_forwarder_alert_log_volume_free_bytes 1024\n" in text
    assert "falco_forwarder_alert_log_volume_size_bytes 4096\n" in text
    assert 'falco_forwarder_checkpoint_saved{sink="a"} 1\n' in text
    assert 'falco_forwarder_checkpoint_saved{sink="b"} 0\n' in text


def test_parse_delivery_ignores_what_it_does_not_know():
    text = '# HELP x y\nsome_other_metric{sink="a"} 5\nfalco_forwarder_sink_up 0\ngarbage\n'

    assert parse_delivery(text) == DeliveryState()
