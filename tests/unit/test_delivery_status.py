"""Delivery health in the unit status: read from a real forwarder's /metrics on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from charm_pod import active, falco_container, peers, pod
from loopback_http import QuietHandler, serving
from ops import testing

from falco_forwarder.config import ForwarderConfig
from falco_forwarder.forwarder import Forwarder
from falco_forwarder.metrics import DeliveryState
from sinks import _alert_sinks as alert_sinks
from sinks import _delivery_status as delivery_status
from sinks._delivery_status import delivery_notes, read_delivery
from sinks._drop_history import DROP_NOTE_HOLD_SECONDS


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def forwarder(tmp_path: Path) -> Iterator[Forwarder]:
    """A real forwarder whose only sink, http_output, refuses connections."""
    with running_forwarder(tmp_path, f"http://127.0.0.1:{closed_port()}/") as forwarder:
        yield forwarder


class Refuses(QuietHandler):
    """A sink that answers every alert 400: the forwarder drops each one (http_4xx)."""

    def do_POST(self) -> None:  # noqa: N802 - http.server names it
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(400)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def refused(tmp_path: Path) -> Iterator[Forwarder]:
    """A real forwarder whose only sink, http_output, refuses every alert."""
    with serving(Refuses) as port, running_forwarder(tmp_path, f"http://127.0.0.1:{port}/") as fw:
        yield fw


@contextmanager
def running_forwarder(tmp_path: Path, url: str) -> Iterator[Forwarder]:
    forwarder = Forwarder(
        ForwarderConfig.from_dict(
            {
                "listen": {"host": "127.0.0.1", "port": 0},
                "alert_log": {
                    "file": str(tmp_path / "log" / "falco.log"),
                    "state_dir": str(tmp_path / "state"),
                    "retention_bytes": 1 << 20,
                    "segment_bytes": 1 << 16,
                },
                "juju": {
                    "model": "m",
                    "model_uuid": "u",
                    "application": "falco-k8s",
                    "unit": "falco-k8s/0",
                },
                "retry": {"initial_seconds": 0.05, "max_seconds": 0.2, "timeout_seconds": 2},
                "sinks": [{"name": "http_output", "format": "falco-json", "url": url}],
            }
        )
    )
    forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.close()


def write_alerts(forwarder: Forwarder, count: int) -> int:
    """Append ``count`` alerts to the forwarder's log as Falco does; return the bytes written."""
    forwarder.log.file.parent.mkdir(exist_ok=True)
    written = 0
    for i in range(count):
        line = json.dumps({"rule": "Create Privileged Pod", "output": f"alert {i}"}) + "\n"
        fd = os.open(forwarder.log.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        written += os.write(fd, line.encode())
        os.close(fd)
    return written


def wait_until_down(port: int) -> DeliveryState:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = read_delivery(port)
        if state is not None and state.down:
            return state
        time.sleep(0.02)
    raise AssertionError("the sink never showed as failing")


def test_read_delivery_from_a_forwarder_with_a_failing_sink(forwarder: Forwarder):
    written = write_alerts(forwarder, 3)

    state = wait_until_down(forwarder.port)

    assert state.down == {"http_output"}
    assert state.backlog == {"http_output": written}
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
        (DeliveryState(backlog={"graylog": 0}), []),
        (DeliveryState(backlog={"graylog": 4}), []),  # in flight, not failing
        (
            DeliveryState(backlog={"graylog": 1523 * 600, "http_output": 0}, down={"graylog"}),
            ["graylog failing, 892.4 KiB queued"],
        ),
        # Its last attempt failed, but that alert was dropped since: nothing waits.
        (DeliveryState(backlog={"graylog": 0}, down={"graylog"}), []),
        # A sink removed by a reload: its counters linger in the forwarder, not in the status.
        (DeliveryState(backlog={}, down={"old"}, dropped={"old": {"http_4xx": 3}}), []),
        (
            DeliveryState(
                backlog={"graylog": 9 << 20, "falcosidekick": 0, "http_output": 512},
                down={"graylog", "http_output"},
                dropped={
                    "graylog": {"retention": 40, "malformed": 2},
                    "falcosidekick": {"http_4xx": 1},
                },
            ),
            [
                "falcosidekick 1 dropped (http_4xx 1)",
                "graylog failing, 9.0 MiB queued, 42 dropped (malformed 2, retention 40)",
                "http_output failing, 512 B queued",
            ],
        ),
        (
            DeliveryState(backlog={"graylog": 0}, unsaved={"graylog"}),
            ["graylog checkpoint not saved"],
        ),
    ],
    ids=[
        "idle",
        "in-flight",
        "failing",
        "failed-then-dropped",
        "removed",
        "failing-and-lossy",
        "checkpoint-unsaved",
    ],
)
def test_delivery_notes(state: DeliveryState, notes: list[str]):
    assert delivery_notes(state, SINKS, state.dropped) == notes


def test_a_failing_sink_shows_in_the_unit_status(
    ctx, falco_fs, forwarder: Forwarder, monkeypatch: pytest.MonkeyPatch
):
    written = write_alerts(forwarder, 2)
    wait_until_down(forwarder.port)
    monkeypatch.setattr(alert_sinks, "METRICS_PORT", forwarder.port)
    container = falco_container(falco_fs)
    state = testing.State(
        config={"http_output": "https://siem.example.com/falco"},
        containers=pod(container),
        relations={peers()},
        leader=True,
    )
    deployed = ctx.run(ctx.on.pebble_ready(container), state)  # starts the forwarder service

    out = ctx.run(ctx.on.update_status(), deployed)

    assert out.unit_status == active(
        f"http_output failing, {written} B queued", alerts_to="http_output"
    )


def test_a_forwarder_that_does_not_answer_is_noted(ctx, falco_fs):
    container = falco_container(falco_fs)
    state = testing.State(
        config={"http_output": "https://siem.example.com/falco"},
        containers=pod(container),
        relations={peers()},
        leader=True,
    )
    deployed = ctx.run(ctx.on.pebble_ready(container), state)
    assert deployed.unit_status == active(
        alerts_to="http_output"
    )  # just started: nothing to ask yet

    out = ctx.run(ctx.on.update_status(), deployed)  # nothing listens on the metrics port

    assert out.unit_status == active("forwarder not answering", alerts_to="http_output")


def wait_until_dropped(port: int, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = read_delivery(port)
        if state is not None and state.dropped.get("http_output", {}).get("http_4xx") == count:
            return
        time.sleep(0.02)
    raise AssertionError(f"the forwarder never counted {count} drops")


def test_lost_alerts_leave_the_status_an_hour_after_the_last_loss(
    ctx, falco_fs, refused: Forwarder, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(alert_sinks, "METRICS_PORT", refused.port)
    now = [1_750_000_000.0]
    monkeypatch.setattr(delivery_status, "clock", lambda: now[0])
    container = falco_container(falco_fs)
    state = testing.State(
        config={"http_output": "https://siem.example.com/falco"},
        containers=pod(container),
        relations={testing.PeerRelation("falco-peers")},
        leader=True,
    )
    state = ctx.run(ctx.on.pebble_ready(container), state)
    write_alerts(refused, 2)
    wait_until_dropped(refused.port, 2)

    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == active(
        "http_output 2 dropped (http_4xx 2)", alerts_to="http_output"
    )

    now[0] += DROP_NOTE_HOLD_SECONDS - 60
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == active(
        "http_output 2 dropped (http_4xx 2)", alerts_to="http_output"
    )

    now[0] += 60  # an hour without a new loss: the forwarder still counts 2, the status is clean
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == active(alerts_to="http_output")

    write_alerts(refused, 1)
    wait_until_dropped(refused.port, 3)
    now[0] += 300
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == active(
        "http_output 1 dropped (http_4xx 1)", alerts_to="http_output"
    )
