"""The forwarder's endpoint: health and metrics only; no alert comes in over HTTP."""

import pytest
from forwarder_helpers import LOOPBACK, ForwarderFactory, request, sink_dict

from falco_forwarder.forwarder import Forwarder
from falco_forwarder.metrics import DROP_REASONS


@pytest.fixture
def forwarder(make_forwarder: ForwarderFactory) -> Forwarder:
    return make_forwarder([sink_dict("s", f"http://{LOOPBACK}:9/")])


def test_healthz_answers_ok(forwarder: Forwarder):
    assert request(forwarder.port, "GET", "/healthz")[:2] == (200, b"ok\n")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/", 404),  # once the alert intake: any path was taken as an alert
        ("POST", "/alerts", 404),
        ("POST", "/healthz", 405),
        ("POST", "/metrics", 405),
        ("PUT", "/metrics", 405),
        ("DELETE", "/metrics", 405),
        ("PATCH", "/healthz", 405),
        ("OPTIONS", "/metrics", 405),
        ("GET", "/", 404),
    ],
)
def test_nothing_but_health_and_metrics_is_served(
    forwarder: Forwarder, method: str, path: str, status: int
):
    answer, _, headers = request(forwarder.port, method, path, b"{}")
    assert answer == status
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers.get("Allow") == ("GET, HEAD" if status == 405 else None)
    assert not forwarder.log.file.exists()  # nothing posted became an alert


def test_head_answers_as_get_without_a_body(forwarder: Forwarder):
    status, body, headers = request(forwarder.port, "HEAD", "/healthz")

    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == "3"


def test_metrics_exposition(forwarder: Forwarder):
    status, body, headers = request(forwarder.port, "GET", "/metrics")

    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    for name, kind in [
        ("falco_forwarder_delivered_total", "counter"),
        ("falco_forwarder_retried_total", "counter"),
        ("falco_forwarder_dropped_total", "counter"),
        ("falco_forwarder_backlog_bytes", "gauge"),
        ("falco_forwarder_sink_up", "gauge"),
        ("falco_forwarder_alert_log_bytes", "gauge"),
    ]:
        assert f"\n# TYPE {name} {kind}\n" in f"\n{text}"
        assert f"# HELP {name} " in text
    for reason in DROP_REASONS:
        assert f'falco_forwarder_dropped_total{{reason="{reason}",sink="s"}} 0\n' in text
    assert 'falco_forwarder_backlog_bytes{sink="s"} 0\n' in text
