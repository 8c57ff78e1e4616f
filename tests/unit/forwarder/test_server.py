"""The receiver: what it accepts, what it refuses, and how it stops."""

import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from forwarder_helpers import (
    LOOPBACK,
    ForwarderFactory,
    encode,
    falco_alert,
    metric,
    post_alert,
    read_reply,
    request,
    sink_dict,
    wait_for,
)

from falco_forwarder.forwarder import Forwarder
from falco_forwarder.metrics import Metrics
from falco_forwarder.server import REJECT_REASONS, AlertServer
from falco_forwarder.spool import Spool

MAX_BODY = 64 * 1024  # the test configuration's max_body_bytes


def exchange(port: int, data: bytes, half_close: bool = False) -> bytes:
    """Send raw bytes on a new connection; return everything the server sends back."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as client:
        client.sendall(data)
        if half_close:
            client.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def post_head(length: int | str | None, content_type: str = "application/json") -> bytes:
    lines = ["POST / HTTP/1.1", "Host: localhost", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
def forwarder(make_forwarder: ForwarderFactory) -> Forwarder:
    # The sink is unreachable: whatever is accepted stays in its queue.
    return make_forwarder([sink_dict("s", f"http://{LOOPBACK}:9/")])


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        pytest.param(post_head(9) + b'{"rule": ', 400, "malformed_json", id="truncated"),
        pytest.param(post_head(3) + b"[1]", 400, "not_object", id="array"),
        pytest.param(post_head(10) + b'{"x": NaN}', 400, "malformed_json", id="nan"),
        pytest.param(post_head(9) + b'{"a":"\xff"}', 400, "malformed_json", id="not-utf8"),
        pytest.param(post_head(5000) + b"[" * 5000, 400, "malformed_json", id="deep"),
        pytest.param(post_head(2, "text/plain") + b"{}", 400, "content_type", id="text"),
        pytest.param(post_head(MAX_BODY + 1) + b" " * (MAX_BODY + 1), 413, "too_large", id="big"),
        pytest.param(post_head(None), 411, "length_required", id="no-length"),
        pytest.param(post_head("-1"), 400, "bad_length", id="bad-length"),
        pytest.param(
            post_head(None)[:-2] + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            411,
            "length_required",
            id="chunked",
        ),
    ],
)
def test_refuses_bad_requests_and_keeps_serving(
    forwarder: Forwarder, data: bytes, status: int, reason: str
):
    reply = exchange(forwarder.port, data)

    assert reply.startswith(f"HTTP/1.1 {status} ".encode())
    assert reply.endswith(f"{reason}\n".encode())
    assert b"Connection: close" in reply
    assert metric(forwarder.port, "falco_forwarder_rejected_total", reason=reason) == 1
    assert metric(forwarder.port, "falco_forwarder_received_total") == 0
    assert metric(forwarder.port, "falco_forwarder_queue_depth", sink="s") == 0
    assert request(forwarder.port, "GET", "/healthz")[:2] == (200, b"ok\n")


def test_logs_refusals_once_per_burst(forwarder: Forwarder, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="falco_forwarder")
    for _ in range(3):
        exchange(forwarder.port, post_head(3) + b"[1]")
    assert post_alert(forwarder.port, encode(falco_alert())) == 200

    messages = [r.getMessage() for r in caplog.records if r.name == "falco_forwarder.server"]
    assert messages == [
        "refused an alert from 127.0.0.1: 400 not_object",
        "receiving valid alerts again (2 more occurrences not logged)",
    ]


def test_counts_a_body_cut_short(forwarder: Forwarder):
    reply = exchange(forwarder.port, post_head(100) + b'{"rule": "x"', half_close=True)

    assert reply.startswith(b"HTTP/1.1 400 ")
    assert metric(forwarder.port, "falco_forwarder_rejected_total", reason="incomplete_body") == 1


def test_accepts_alerts_on_one_kept_alive_connection(forwarder: Forwarder):
    body = encode(falco_alert())
    head = post_head(len(body), "application/json; charset=utf-8").replace(
        b"POST / ", b"POST /alerts "
    )
    with socket.create_connection((LOOPBACK, forwarder.port), timeout=10) as client:
        for _ in range(2):
            client.sendall(head + body)
            reply = read_reply(client)
            assert reply.startswith(b"HTTP/1.1 200 ")
            assert b"Connection: close" not in reply
    assert metric(forwarder.port, "falco_forwarder_received_total") == 2
    assert metric(forwarder.port, "falco_forwarder_queue_depth", sink="s") == 2


def test_answers_expect_100_continue_like_libcurl_needs(forwarder: Forwarder):
    body = encode(falco_alert())
    head = post_head(len(body))[:-2] + b"Expect: 100-continue\r\n\r\n"
    with socket.create_connection((LOOPBACK, forwarder.port), timeout=10) as client:
        client.sendall(head)
        assert client.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.sendall(body)
        assert read_reply(client).startswith(b"HTTP/1.1 200 ")
    assert metric(forwarder.port, "falco_forwarder_queue_depth", sink="s") == 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/healthz", 405), ("POST", "/metrics", 405), ("GET", "/", 404)],
)
def test_other_routes(forwarder: Forwarder, method: str, path: str, status: int):
    assert request(forwarder.port, method, path, b"{}")[0] == status
    assert metric(forwarder.port, "falco_forwarder_received_total") == 0


def test_metrics_exposition(forwarder: Forwarder):
    status, body, headers = request(forwarder.port, "GET", "/metrics")

    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    for name, kind in [
        ("falco_forwarder_received_total", "counter"),
        ("falco_forwarder_rejected_total", "counter"),
        ("falco_forwarder_delivered_total", "counter"),
        ("falco_forwarder_retried_total", "counter"),
        ("falco_forwarder_dropped_total", "counter"),
        ("falco_forwarder_queue_depth", "gauge"),
        ("falco_forwarder_spool_bytes", "gauge"),
    ]:
        assert f"\n# TYPE {name} {kind}\n" in f"\n{text}"
        assert f"# HELP {name} " in text
    for reason in REJECT_REASONS:
        assert f'falco_forwarder_rejected_total{{reason="{reason}"}} 0\n' in text
    assert 'falco_forwarder_dropped_total{reason="spool_full",sink="s"} 0\n' in text


def test_answers_503_when_the_spool_cannot_be_written(
    forwarder: Forwarder, spool_dir: Path, caplog: pytest.LogCaptureFixture
):
    shutil.rmtree(spool_dir / "s")
    (spool_dir / "s").write_text("not a directory")

    assert post_alert(forwarder.port, encode(falco_alert())) == 503
    assert metric(forwarder.port, "falco_forwarder_rejected_total", reason="spool_error") == 1
    assert "503 spool_error ([Errno 20] Not a directory" in caplog.text

    (spool_dir / "s").unlink()
    (spool_dir / "s").mkdir()
    assert post_alert(forwarder.port, encode(falco_alert())) == 200
    assert metric(forwarder.port, "falco_forwarder_queue_depth", sink="s") == 1


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[AlertServer]:
    spool = Spool(tmp_path, 1 << 20, on_drop=lambda entry, reason: None)
    spool.add_sinks(["s"])
    server = AlertServer((LOOPBACK, 0), spool, Metrics(["s"], REJECT_REASONS, []), MAX_BODY)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,))
    thread.start()
    yield server
    server.stop()
    thread.join()


def test_stop_finishes_the_request_in_flight(receiver: AlertServer):
    port = receiver.server_address[1]
    body = encode(falco_alert())
    with socket.create_connection((LOOPBACK, port), timeout=10) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_reply(client).startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: receiver._idle, what="the connection to wait for a request")
        client.sendall(post_head(len(body)) + body[:10])
        wait_for(lambda: not receiver._idle, what="the request to be read")
        stopper = threading.Thread(target=receiver.stop)
        stopper.start()
        wait_for(lambda: refused(port), what="the listener to close")
        client.sendall(body[10:])
        reply = read_reply(client)
        stopper.join(timeout=10)
    assert not stopper.is_alive()
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in reply
    assert receiver.spool.depths() == {"s": 1}


def test_stop_closes_idle_kept_alive_connections(receiver: AlertServer):
    with socket.create_connection((LOOPBACK, receiver.server_address[1]), timeout=10) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_reply(client).startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: receiver._idle, what="the connection to wait for a request")
        started = time.monotonic()
        receiver.stop()
        assert time.monotonic() - started < 2
        assert client.recv(4096) == b""


def refused(port: int) -> bool:
    """Whether the port no longer accepts connections (a probe caught in the backlog is reset)."""
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False
