"""Delivery health in the unit status: read from a real forwarder's /metrics on 127.0.0.1."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from charm_pod import ACTIVE, falco_container, pod
from ops import testing

import charm
from delivery_status import delivery_notes, read_delivery
from falco_forwarder.config import config_from_dict
from falco_forwarder.forwarder import Forwarder
from falco_forwarder.metrics import DeliveryState


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def forwarder(tmp_path: Path) -> Iterator[Forwarder]:
    """A real forwarder whose only sink, http_output, refuses connections."""
    forwarder = Forwarder(
        config_from_dict(
            {
                "listen": {"host": "127.0.0.1", "port": 0},
                "max_body_bytes": 65536,
                "spool": {"dir": str(tmp_path / "spool"), "max_bytes": 1 << 20},
                "juju": {
                    "model": "m",
                    "model_uuid": "u",
                    "application": "falco-k8s",
                    "unit": "falco-k8s/0",
                },
                "retry": {"initial_seconds": 0.05, "max_seconds": 0.2, "timeout_seconds": 2},
                "sinks": [
                    {
                        "name": "http_output",
                        "format": "falco-json",
                        "url": f"http://127.0.0.1:{closed_port()}/",
                    }
                ],
            }
        )
    )
    forwarder.start()
    yield forwarder
    forwarder.close()


def post_alerts(port: int, count: int) -> None:
    for i in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        body = json.dumps({"rule": "Create Privileged Pod", "output": f"alert {i}"})
        connection.request("POST", "/", body, {"Content-Type": "application/json"})
        assert connection.getresponse().status == 200
        connection.close()


def wait_until_down(port: int) -> DeliveryState:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = read_delivery(port)
        if state is not None and state.down:
            return state
        time.sleep(0.02)
    raise AssertionError("the sink never showed as failing")


def test_read_delivery_from_a_forwarder_with_a_failing_sink(forwarder: Forwarder):
    post_alerts(forwarder.port, 3)

    state = wait_until_down(forwarder.port)

    assert state.down == {"http_output"}
    assert state.queued == {"http_output": 3}
    assert state.dropped == {}


def test_read_delivery_is_none_when_nothing_answers():
    assert read_delivery(closed_port()) is None


def test_read_delivery_is_none_on_an_error_answer():
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), http.server.BaseHTTPRequestHandler
    )  # answers every GET with 501
    thread = threading.Thread(target=server.serve_forever, args=(0.02,))
    thread.start()
    try:
        assert read_delivery(server.server_address[1]) is None
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


SINKS = ("graylog", "http_output", "falcosidekick")


@pytest.mark.parametrize(
    ("state", "notes"),
    [
        (DeliveryState(queued={"graylog": 0}), []),
        (DeliveryState(queued={"graylog": 4}), []),  # in flight, not failing
        (
            DeliveryState(queued={"graylog": 1523, "http_output": 0}, down={"graylog"}),
            ["graylog failing, 1523 queued"],
        ),
        # Its last attempt failed, but that alert was dropped since: nothing waits.
        (DeliveryState(queued={"graylog": 0}, down={"graylog"}), []),
        # A sink removed by a reload: its counters linger in the forwarder, not in the status.
        (DeliveryState(queued={}, down={"old"}, dropped={"old": {"http_4xx": 3}}), []),
        (
            DeliveryState(
                queued={"graylog": 9, "falcosidekick": 0},
                down={"graylog"},
                dropped={
                    "graylog": {"spool_full": 40, "disk_full": 2},
                    "falcosidekick": {"http_4xx": 1},
                },
                rejected={"too_large": 1},
            ),
            [
                "falcosidekick 1 dropped (http_4xx 1)",
                "graylog failing, 9 queued; 42 dropped (disk_full 2, spool_full 40)",
                "1 refused (too_large 1)",
            ],
        ),
    ],
    ids=["idle", "in-flight", "failing", "failed-then-dropped", "removed", "failing-and-lossy"],
)
def test_delivery_notes(state: DeliveryState, notes: list[str]):
    assert delivery_notes(state, SINKS) == notes


def test_a_failing_sink_shows_in_the_unit_status(
    ctx, falco_fs, forwarder: Forwarder, monkeypatch: pytest.MonkeyPatch
):
    post_alerts(forwarder.port, 2)
    wait_until_down(forwarder.port)
    monkeypatch.setattr(charm, "FORWARDER_PORT", forwarder.port)
    container = falco_container(falco_fs)
    state = testing.State(
        config={"http_output": "https://siem.example.com/falco"},
        containers=pod(container),
        leader=True,
    )
    deployed = ctx.run(ctx.on.pebble_ready(container), state)  # starts the forwarder service

    out = ctx.run(ctx.on.update_status(), deployed)

    assert out.unit_status == testing.ActiveStatus(
        f"{ACTIVE.message}; http_output failing, 2 queued; alerts to http_output"
    )


def test_a_forwarder_that_does_not_answer_is_noted(ctx, falco_fs):
    container = falco_container(falco_fs)
    state = testing.State(
        config={"http_output": "https://siem.example.com/falco"},
        containers=pod(container),
        leader=True,
    )
    deployed = ctx.run(ctx.on.pebble_ready(container), state)
    assert deployed.unit_status == testing.ActiveStatus(
        f"{ACTIVE.message}; alerts to http_output"  # just started: nothing to ask yet
    )

    out = ctx.run(ctx.on.update_status(), deployed)  # nothing listens on the metrics port

    assert out.unit_status == testing.ActiveStatus(
        f"{ACTIVE.message}; forwarder not answering; alerts to http_output"
    )
