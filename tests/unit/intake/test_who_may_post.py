"""Only a post with the webhook's token reaches Falco; everything else is a counted refusal.

The intake sits in front of the real k8saudit (read as Falco reads it). A refused post is
followed by a good one: once the good one's events arrived, anything the refused one had let
through would have arrived before them.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest
from intake_helpers import (
    TOKEN,
    FalcoLoop,
    fresh_batch,
    intake_config,
    post,
    recorded_events,
    running_intake,
)
from tls_ca import TestCa

from audit_intake import metrics
from audit_intake.bearer import MISMATCHED, UNAUTHENTICATED, refusal
from audit_intake.config import AcceptedToken, token_sha256
from audit_intake.service import Intake

EVENTS = recorded_events()


def assert_nothing_reached_falco(intake: Intake, falco: FalcoLoop, refused_ids: list[str]) -> None:
    body, ids = fresh_batch(EVENTS, 5)
    assert post(intake.webhook_port, body).status == 200
    assert falco.wait_for(ids)
    assert not any(falco.seen[audit_id] for audit_id in refused_ids)


def test_with_the_token_every_event_of_the_batch_reaches_falco(falco: FalcoLoop, tmp_path: Path):
    body, ids = fresh_batch(EVENTS, len(EVENTS))
    with running_intake(intake_config(tmp_path, falco.port)) as intake:
        reply = post(intake.webhook_port, body)

        assert reply.status == 200
        assert falco.wait_for(ids)
        assert sorted(falco.seen) == sorted(ids)
        assert intake.metrics.value(metrics.EVENTS) == len(EVENTS)


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, UNAUTHENTICATED),
        ("Basic YWRtaW46YWRtaW4=", UNAUTHENTICATED),
        ("Bearer", UNAUTHENTICATED),
        ("Bearer not-the-token", MISMATCHED),
        (f"Bearer {TOKEN}x", MISMATCHED),
        (f"bearer {TOKEN[:-1]}", MISMATCHED),
    ],
)
def test_a_post_without_the_token_gets_401_and_nothing_reaches_falco(
    falco: FalcoLoop, tmp_path: Path, authorization: str | None, reason: str
):
    body, ids = fresh_batch(EVENTS, len(EVENTS))
    headers = {"Authorization": authorization} if authorization else {}
    with running_intake(intake_config(tmp_path, falco.port)) as intake:
        reply = post(intake.webhook_port, body, token=None, headers=headers)

        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        assert intake.metrics.value(metrics.REFUSED, reason=reason) == 1
        assert intake.metrics.value(metrics.BATCHES) == 0
        assert intake.spool.unsettled == (0, 0)  # not even kept
        assert_nothing_reached_falco(intake, falco, ids)


def test_the_token_never_appears_in_answers_logs_or_metrics(
    falco: FalcoLoop, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level("DEBUG")
    body, _ = fresh_batch(EVENTS, 3)
    with running_intake(intake_config(tmp_path, falco.port)) as intake:
        replies = [post(intake.webhook_port, body, token=t) for t in (TOKEN, "guess", TOKEN)]
        page = intake.metrics.render()
        config_text = repr(intake.config)

    shown = [page, caplog.text, config_text, *(r.body.decode() for r in replies)]
    assert [r.status for r in replies] == [200, 401, 200]
    assert not any(TOKEN in text for text in shown)
    assert not any("guess" in text for text in shown)


def test_a_token_past_its_expiry_is_refused(falco: FalcoLoop, tmp_path: Path):
    old, new = "previous-token", "current-token"
    tokens = (
        AcceptedToken(token_sha256(new)),
        AcceptedToken(token_sha256(old), expires=time.time() - 1),
    )
    body, _ = fresh_batch(EVENTS, 2)
    with running_intake(intake_config(tmp_path, falco.port, tokens=tokens)) as intake:
        assert post(intake.webhook_port, body, token=new).status == 200
        assert post(intake.webhook_port, body, token=old).status == 401
        assert intake.metrics.value(metrics.REFUSED, reason=MISMATCHED) == 1


def test_a_previous_token_is_let_in_until_its_expiry():
    accepted = (
        AcceptedToken(token_sha256("new")),
        AcceptedToken(token_sha256("old"), expires=1000.0),
    )

    assert refusal("Bearer old", accepted, now=999.0) == ""
    assert refusal("Bearer old", accepted, now=1000.0) == MISMATCHED
    assert refusal("Bearer new", accepted, now=1e12) == ""
    assert refusal("Bearer  new ", accepted, now=0) == ""


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"path": "/metrics"}, 404, metrics.NOT_FOUND),
        ({"method": "PUT"}, 405, metrics.METHOD_NOT_ALLOWED),
        ({"headers": {"Content-Type": "text/plain"}}, 415, metrics.UNSUPPORTED_MEDIA_TYPE),
        ({"headers": {"Content-Encoding": "gzip"}}, 415, metrics.UNSUPPORTED_MEDIA_TYPE),
    ],
)
def test_an_authenticated_request_k8saudit_would_not_take_is_refused_before_falco(
    falco: FalcoLoop, tmp_path: Path, change: dict[str, object], status: int, reason: str
):
    body, ids = fresh_batch(EVENTS, 4)
    with running_intake(intake_config(tmp_path, falco.port)) as intake:
        reply = post(intake.webhook_port, body, **change)  # type: ignore[arg-type]

        assert reply.status == status
        assert intake.metrics.value(metrics.REFUSED, reason=reason) == 1
        assert_nothing_reached_falco(intake, falco, ids)


def test_a_batch_over_k8saudits_limit_is_refused_with_413_without_reading_it(
    falco: FalcoLoop, tmp_path: Path
):
    body, ids = fresh_batch(EVENTS, 41)
    config = intake_config(tmp_path, falco.port, max_batch_bytes=len(body) - 1)
    with running_intake(config) as intake:
        reply = post(intake.webhook_port, body)

        assert reply.status == 413
        assert intake.metrics.value(metrics.REFUSED, reason=metrics.TOO_LARGE) == 1
        assert_nothing_reached_falco(intake, falco, ids)


def test_a_chunked_body_is_refused_with_411(falco: FalcoLoop, tmp_path: Path):
    with running_intake(intake_config(tmp_path, falco.port)) as intake:
        sock = socket.create_connection(("127.0.0.1", intake.webhook_port))
        with sock:
            sock.sendall(
                b"POST /k8s-audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {TOKEN}\r\n".encode()
                + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
            )
            answer = sock.recv(4096)

        assert answer.startswith(b"HTTP/1.1 411 ")
        assert intake.metrics.value(metrics.REFUSED, reason=metrics.LENGTH_REQUIRED) == 1


def test_a_malformed_request_is_answered_400_and_counted(falco: FalcoLoop, tmp_path: Path):
    with running_intake(intake_config(tmp_path, falco.port)) as intake:
        with socket.create_connection(("127.0.0.1", intake.webhook_port)) as sock:
            sock.sendall(b"POST /k8s-audit HTTP/1.x\r\n\r\n")
            answer = sock.recv(4096)

        assert answer.startswith(b"HTTP/1.1 400 ")
        assert intake.metrics.value(metrics.REFUSED, reason=metrics.BAD_REQUEST) == 1


def test_a_refused_megabyte_is_read_off_so_the_client_gets_its_401_not_a_reset(
    falco: FalcoLoop, tmp_path: Path
):
    body, _ = fresh_batch(EVENTS, 800)
    assert len(body) > 900_000
    with running_intake(intake_config(tmp_path, falco.port)) as intake:
        replies = [post(intake.webhook_port, body, token="wrong").status for _ in range(5)]

    assert replies == [401] * 5


def test_every_answer_closes_its_connection(falco: FalcoLoop, tmp_path: Path):
    """One batch per connection: kube-proxy balances connections, so it balances batches."""
    body, _ = fresh_batch(EVENTS, 3)
    with running_intake(intake_config(tmp_path, falco.port)) as intake:
        taken = post(intake.webhook_port, body)
        refused = post(intake.webhook_port, body, token="wrong")

    for reply in (taken, refused):
        assert reply.headers["Connection"] == "close"
        assert reply.closed


def test_over_tls_the_intake_offers_only_http_1_1_and_lets_the_token_in(
    falco: FalcoLoop, tmp_path: Path, ca: TestCa, webhook_pem: Path
):
    """kube-apiserver's client offers h2 first; HTTP/2 would keep one connection for good."""
    body, ids = fresh_batch(EVENTS, 10)
    client = ssl.create_default_context(cadata=ca.pem)
    client.set_alpn_protocols(["h2", "http/1.1"])
    config = intake_config(tmp_path / "spool", falco.port, tls_pem=webhook_pem)
    with running_intake(config) as intake:
        with (
            socket.create_connection(("127.0.0.1", intake.webhook_port)) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as secured,
        ):
            protocol = secured.selected_alpn_protocol()
        reply = post(intake.webhook_port, body, context=client)
        refused = post(intake.webhook_port, body, context=client, token="wrong")

        assert protocol == "http/1.1"
        assert (reply.status, refused.status) == (200, 401)
        assert reply.closed
        assert falco.wait_for(ids)


def test_a_client_that_does_not_trust_the_certificate_is_counted_as_a_failed_handshake(
    falco: FalcoLoop, tmp_path: Path, webhook_pem: Path
):
    other = ssl.create_default_context(cadata=TestCa("another CA").pem)
    config = intake_config(tmp_path / "spool", falco.port, tls_pem=webhook_pem)
    with running_intake(config) as intake:
        with pytest.raises(ssl.SSLCertVerificationError):
            post(intake.webhook_port, b"{}", context=other)
        deadline = time.monotonic() + 5
        while not intake.metrics.value(metrics.REFUSED, reason=metrics.TLS_HANDSHAKE):
            assert time.monotonic() < deadline
            time.sleep(0.02)
