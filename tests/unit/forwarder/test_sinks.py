"""One POST to a real sink: classification, connection reuse, authentication, TLS errors."""

import base64
import socket
from email.utils import formatdate
from typing import Any

import pytest
from forwarder_helpers import LOOPBACK, Reply, SinkFactory

from falco_forwarder.config import SinkConfig
from falco_forwarder.sinks import HttpSender, Outcome, retry_after_seconds


def sender(url: str, timeout: float = 5.0, **kwargs: Any) -> HttpSender:
    return HttpSender(SinkConfig("s", "falco-json", url, **kwargs), timeout)


@pytest.mark.parametrize(
    ("reply", "outcome", "drop_reason", "retry_after"),
    [
        (Reply(204), Outcome.DELIVERED, "", None),
        (Reply(500), Outcome.RETRY, "", None),
        (Reply(503, {"Retry-After": "7"}), Outcome.RETRY, "", 7.0),
        (Reply(429, {"Retry-After": "2"}), Outcome.RETRY, "", 2.0),
        (Reply(404), Outcome.DROP, "http_4xx", None),
        (Reply(301, {"Location": "/elsewhere"}), Outcome.DROP, "http_other", None),
    ],
)
def test_classifies_statuses(
    make_sink: SinkFactory,
    reply: Reply,
    outcome: Outcome,
    drop_reason: str,
    retry_after: float | None,
):
    sink = make_sink(script=[reply])
    http = sender(sink.url())
    try:
        attempt = http.post(b"{}")
    finally:
        http.close()

    assert attempt.outcome is outcome
    assert attempt.drop_reason == drop_reason
    assert attempt.retry_after == retry_after
    assert attempt.detail.startswith(f"HTTP {reply.status} ")


def test_reuses_the_connection(make_sink: SinkFactory):
    sink = make_sink()
    http = sender(sink.url())
    try:
        assert [http.post(b"{}").outcome for _ in range(3)] == [Outcome.DELIVERED] * 3
    finally:
        http.close()
    assert len({r.peer for r in sink.received}) == 1


@pytest.mark.parametrize(
    "sink_kwargs",
    [
        pytest.param({"close_after_reply": True}, id="closed-by-sink"),
        pytest.param({"script": [Reply(200, body=b"x" * 100_000)] * 3}, id="long-reply"),
    ],
)
def test_reconnects_when_the_connection_cannot_be_reused(
    make_sink: SinkFactory, sink_kwargs: dict[str, Any]
):
    sink = make_sink(**sink_kwargs)
    http = sender(sink.url())
    try:
        assert [http.post(b"{}").outcome for _ in range(3)] == [Outcome.DELIVERED] * 3
    finally:
        http.close()
    assert len(sink.received) == 3  # no request lost or repeated
    assert len({r.peer for r in sink.received}) == 3


def test_sends_userinfo_as_basic_auth(make_sink: SinkFactory):
    sink = make_sink()
    http = sender(f"http://us%40er:p%3Ass@{LOOPBACK}:{sink.port}/")
    try:
        http.post(b"{}")
    finally:
        http.close()
    token = base64.b64encode(b"us@er:p:ss").decode()
    assert sink.received[0].headers["Authorization"] == f"Basic {token}"
    assert sink.received[0].headers["User-Agent"] == "falco-forwarder/1"


def test_configured_authorization_wins_over_userinfo(make_sink: SinkFactory):
    sink = make_sink()
    http = sender(f"http://u:p@{LOOPBACK}:{sink.port}/", headers={"authorization": "Bearer t"})
    try:
        http.post(b"{}")
    finally:
        http.close()
    assert sink.received[0].headers["authorization"] == "Bearer t"


def test_connection_refused_is_retried():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    attempt = sender(f"http://{LOOPBACK}:{port}/").post(b"{}")

    assert attempt.outcome is Outcome.RETRY
    assert "refused" in attempt.detail.lower()


def test_a_silent_sink_times_out():
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        http = sender(f"http://{LOOPBACK}:{listener.getsockname()[1]}/", timeout=0.2)
        attempt = http.post(b"{}")

    assert attempt.outcome is Outcome.RETRY
    assert "timed out" in attempt.detail


def test_untrusted_certificate_is_reported(make_sink: SinkFactory, tls_server: tuple[Any, str]):
    context, _ = tls_server
    sink = make_sink(tls=context)
    attempt = sender(sink.url("https")).post(b"{}")

    assert attempt.outcome is Outcome.RETRY
    assert attempt.detail.startswith("certificate verification failed: ")
    assert sink.received == []


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        (formatdate(1_000_030, usegmt=True), 30.0),
        (formatdate(999_000, usegmt=True), 0.0),
    ],
)
def test_retry_after_parsing(value: str | None, seconds: float | None):
    assert retry_after_seconds(value, now=lambda: 1_000_000.0) == seconds
