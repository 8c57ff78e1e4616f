"""webhook_tls: SANs, k8saudit's PEM from real certificates, the apiserver file's state."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from tls_ca import TestCa

from webhook._apiserver_side import WebhookAddress
from webhook._tls import (
    CertificateSans,
    WebhookIdentity,
    WebhookTlsError,
    certificate_sans,
    outdated_apiserver_file,
    tls_notes,
    webhook_tls,
)

CLUSTER_IP = WebhookAddress("ClusterIP", "10.152.183.77")
NODE_PORT = WebhookAddress("NodePort", "10.152.183.77", 30765)


def test_cluster_ip_sans_name_the_ip_and_every_service_dns_name():
    sans = certificate_sans(CLUSTER_IP, "falco-k8s", "audit")

    assert sans.ips == ("10.152.183.77",)
    assert sans.dns == (
        "falco-k8s-audit-webhook",
        "falco-k8s-audit-webhook.audit",
        "falco-k8s-audit-webhook.audit.svc",
        "falco-k8s-audit-webhook.audit.svc.cluster.local",
    )
    assert sans.common_name == "falco-k8s-audit-webhook"


def test_node_port_sans_add_the_loopback_address():
    assert certificate_sans(NODE_PORT, "falco-k8s", "audit").ips == ("10.152.183.77", "127.0.0.1")


def test_ipv6_cluster_ip_is_canonical():
    address = WebhookAddress("ClusterIP", "fd00:0:0::004d")

    assert certificate_sans(address, "f", "m").ips == ("fd00::4d",)


def test_a_long_service_name_has_no_common_name():
    sans = certificate_sans(CLUSTER_IP, "a" * 60, "audit")

    assert sans.common_name is None
    assert sans.dns[0] == "a" * 60 + "-audit-webhook"


def test_pem_is_leaf_chain_then_key_and_loads_as_a_tls_server_identity(tmp_path: Path):
    ca = TestCa()
    cert, key = ca.server_pem(("10.152.183.77",))

    tls = webhook_tls(cert, [cert, ca.pem], ca.pem, key)

    text = tls.pem.decode()
    assert text.startswith("-----BEGIN CERTIFICATE-----")
    assert text.count("BEGIN CERTIFICATE") == 2  # leaf once, then the CA
    assert text.rstrip().endswith("-----END PRIVATE KEY-----")
    path = tmp_path / "k8saudit.pem"
    path.write_bytes(tls.pem)
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(path)  # one file, both
    assert tls.ca_cert == ca.pem
    assert tls.ip_sans == {"10.152.183.77"}


def test_a_certificate_for_another_key_is_refused_without_showing_the_key():
    ca = TestCa()
    cert, _ = ca.server_pem()
    _, other_key = ca.server_pem()

    with pytest.raises(WebhookTlsError) as raised:
        webhook_tls(cert, [], ca.pem, other_key)

    assert str(raised.value) == (
        "certificates: the provider's certificate is not for this unit's private key"
    )
    assert "PRIVATE" not in str(raised.value)


@pytest.mark.parametrize(
    ("certificate", "ca", "key", "message"),
    [
        ("junk", "ca", "key", "certificates: the provider's certificate does not parse"),
        ("cert", "junk", "key", "certificates: the provider's CA certificate does not parse"),
        ("cert", "ca", "junk", "certificates: this unit's private key does not parse"),
    ],
)
def test_unparsable_parts_are_named(certificate: str, ca: str, key: str, message: str):
    test_ca = TestCa()
    real_cert, real_key = test_ca.server_pem()
    parts = {"cert": real_cert, "ca": test_ca.pem, "key": real_key, "junk": "not a PEM"}

    with pytest.raises(WebhookTlsError, match=message):
        webhook_tls(parts[certificate], [], parts[ca], parts[key])


def test_repr_never_shows_the_pem():
    ca = TestCa()
    cert, key = ca.server_pem()

    tls = webhook_tls(cert, [], ca.pem, key)

    assert "PRIVATE" not in repr(tls)
    assert "pem=" not in repr(tls)


def test_missing_names_what_the_certificate_does_not_cover():
    ca = TestCa()
    cert, key = ca.server_pem(("10.152.183.77",))
    tls = webhook_tls(cert, [], ca.pem, key)
    sans = CertificateSans(None, ("svc",), ("10.152.183.77", "127.0.0.1"))

    assert tls.missing(sans) == ["127.0.0.1", "svc"]


def _record(url: str, ca: str, at: float) -> str:
    return WebhookIdentity(url, ca).record(at)


HTTP = "http://10.152.183.77:9765/k8s-audit"
HTTPS = "https://10.152.183.77:9765/k8s-audit"


@pytest.mark.parametrize(
    ("held", "served", "reason"),
    [
        # A file from before the audit intake: plain HTTP, no token.
        (
            WebhookIdentity(HTTP),
            WebhookIdentity(HTTPS, "ca1", "t1"),
            "the webhook now needs TLS and a token",
        ),
        # An https file from before the audit intake: the provider's CA, no token.
        (
            WebhookIdentity(HTTPS, "ca1"),
            WebhookIdentity(HTTPS, "ca1", "t1"),
            "the webhook now needs a token",
        ),
        (
            WebhookIdentity(HTTPS, "ca1", "t1"),
            WebhookIdentity(HTTPS, "ca2", "t1"),
            "the TLS CA changed",
        ),
        (
            WebhookIdentity(HTTPS, "ca1", "t1"),
            WebhookIdentity(HTTPS, "ca1", "t2"),
            "the webhook token was rotated",
        ),
        (
            WebhookIdentity(HTTPS, "ca1", "t1"),
            WebhookIdentity(HTTPS.replace("77", "78"), "ca1", "t1"),
            "its address changed",
        ),
    ],
)
def test_outdated_apiserver_file_names_why(
    held: WebhookIdentity, served: WebhookIdentity, reason: str
):
    assert outdated_apiserver_file(served, [held.record(1.0)]) == (
        f"kube-apiserver webhook file must be replaced ({reason}): run get-webhook-config"
    )


def test_a_record_names_the_tokens_fingerprint_never_the_token():
    record = json.loads(WebhookIdentity(HTTPS, "ca1", "f" * 64).record(5.0))

    assert record == {"url": HTTPS, "ca_sha256": "ca1", "token_sha256": "f" * 64, "at": 5.0}


def test_the_latest_record_counts():
    served = WebhookIdentity(HTTPS, "ca2")
    records = [_record(HTTP, "", 1.0), _record(HTTPS, "ca2", 3.0), _record(HTTPS, "ca1", 2.0)]

    assert outdated_apiserver_file(served, records) is None
    assert outdated_apiserver_file(served, records[:1] + records[2:]) is not None


def test_no_or_unreadable_records_ask_for_nothing():
    served = WebhookIdentity(HTTPS, "ca2")

    assert outdated_apiserver_file(served, []) is None
    assert outdated_apiserver_file(served, ["", "{", json.dumps({"url": 1})]) is None
    assert outdated_apiserver_file(served, ["[" * 100_000]) is None  # past the parser's depth


def test_tls_notes():
    ca = TestCa()
    cert, key = ca.server_pem(("10.152.183.77",))
    tls = webhook_tls(cert, [], ca.pem, key)
    sans = CertificateSans(None, (), ("10.152.183.77",))

    assert tls_notes(tls, sans, awaited=False) == []
    assert tls_notes(tls, sans, awaited=True) == [
        "TLS by the charm's CA until the provider's certificate"
    ]
    assert tls_notes(tls, CertificateSans(None, (), ("127.0.0.1",)), awaited=False) == [
        "webhook certificate lacks 127.0.0.1"
    ]
