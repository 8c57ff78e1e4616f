"""The real k8saudit plugin serving https with the charm's PEM, verified as kube-apiserver does.

The charm's own pieces make every input: `webhook_tls` builds the PEM from a certificate a test
CA issued for the charm's SANs, `render_falco_yaml` gives k8saudit's init_config and
open_params, and `webhook_kubeconfig` gives the CA the client trusts.

The listener comes from the ``k8saudit_source`` fixture (tests/unit/plugins/conftest.py): the
real libk8saudit.so, initialised with the charm's init_config and opened on its open_params moved
to a free 127.0.0.1 port.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from tls_ca import TestCa

from constants import FALCO_RULES_D, K8S_AUDIT_RULES
from falco._falco_yaml import FalcoSettings, WebhookPemFile, render_falco_yaml
from webhook._apiserver_side import WebhookAddress, webhook_kubeconfig
from webhook._tls import WebhookTls, certificate_sans, webhook_tls

# A NodePort webhook: the apiserver posts to https://127.0.0.1:<node port>, the address the
# harness's client uses too, so hostname verification is exercised for real.
ADDRESS = WebhookAddress("NodePort", "10.152.183.77", 30765)


@pytest.fixture
def ca() -> TestCa:
    return TestCa("certificates provider CA")


@pytest.fixture
def charm_tls(ca: TestCa) -> WebhookTls:
    """What the charm serves: a certificate for its SANs with its key, as one PEM."""
    sans = certificate_sans(ADDRESS, "falco-k8s", "audit")
    certificate, key = ca.server_pem(sans.ips)
    return webhook_tls(certificate, [certificate, ca.pem], ca.pem, key)


@pytest.fixture
def https_k8saudit(charm_tls: WebhookTls, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """k8saudit's init_config and open_params as the charm renders them, with the PEM on disk."""
    pem = tmp_path / "k8saudit-webhook.pem"
    pem.write_bytes(charm_tls.pem)
    pem.chmod(0o600)
    text = render_falco_yaml(
        FalcoSettings(),
        (K8S_AUDIT_RULES, FALCO_RULES_D),
        WebhookPemFile(str(pem), hashlib.sha256(charm_tls.pem).hexdigest()),
    )
    plugin = next(p for p in yaml.safe_load(text)["plugins"] if p["name"] == "k8saudit")
    return plugin["init_config"], plugin["open_params"]


def _kubeconfig_trust(charm_tls: WebhookTls) -> tuple[ssl.SSLContext, str]:
    """A client context trusting exactly the kubeconfig's CA, and the kubeconfig's URL path."""
    cluster = yaml.safe_load(webhook_kubeconfig(ADDRESS, charm_tls.ca_cert))["clusters"][0]
    ca_pem = base64.b64decode(cluster["cluster"]["certificate-authority-data"]).decode()
    server = cluster["cluster"]["server"]
    assert server.startswith("https://127.0.0.1:")
    return ssl.create_default_context(cadata=ca_pem), "/" + server.split("/", 3)[3]


def _batch(audit_id: str) -> bytes:
    """One audit.k8s.io/v1 EventList as kube-apiserver's webhook backend posts it."""
    event = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/default/configmaps/tls-test",
        "verb": "get",
        "user": {"username": "alice", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.1"],
        "objectRef": {
            "resource": "configmaps",
            "namespace": "default",
            "name": "tls-test",
            "apiVersion": "v1",
        },
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-12-01T10:00:00.000000Z",
        "stageTimestamp": "2026-12-01T10:00:00.001000Z",
    }
    return json.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": [event]}
    ).encode()


def test_charm_renders_https_for_k8saudit(https_k8saudit: tuple[dict[str, Any], str]):
    init_config, open_params = https_k8saudit

    assert open_params.startswith("https://")
    assert Path(init_config["sslCertificate"]).stat().st_mode & 0o777 == 0o600


def test_post_verified_against_the_kubeconfig_ca_is_accepted_and_read_back(
    k8saudit_source: Any, https_k8saudit: tuple[dict[str, Any], str], charm_tls: WebhookTls
):
    context, path = _kubeconfig_trust(charm_tls)
    audit_id = str(uuid.uuid4())

    with k8saudit_source(*https_k8saudit) as source:
        reply = source.post(path, _batch(audit_id), context=context)
        events = source.read_events(1)

        assert reply.status == 200
        assert [source.extract(event, ["ka.auditid"])["ka.auditid"] for event in events] == [
            [audit_id]
        ]


def test_a_client_trusting_another_ca_fails_verification(
    k8saudit_source: Any, https_k8saudit: tuple[dict[str, Any], str], charm_tls: WebhookTls
):
    _, path = _kubeconfig_trust(charm_tls)
    stranger = ssl.create_default_context(cadata=TestCa("another CA").pem)

    with (
        k8saudit_source(*https_k8saudit) as source,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        source.post(path, _batch(str(uuid.uuid4())), context=stranger)


def test_plain_http_is_refused_and_delivers_nothing(
    k8saudit_source: Any, https_k8saudit: tuple[dict[str, Any], str], charm_tls: WebhookTls
):
    context, path = _kubeconfig_trust(charm_tls)
    plain_id, tls_id = str(uuid.uuid4()), str(uuid.uuid4())

    with k8saudit_source(*https_k8saudit) as source:
        # Once the https post is answered, the listener is up for the plain one too.
        assert source.post(path, _batch(tls_id), context=context).status == 200
        plain = http.client.HTTPConnection("127.0.0.1", source.port, timeout=10)
        try:
            plain.request(
                "POST", path, _batch(plain_id), headers={"Content-Type": "application/json"}
            )
            status = plain.getresponse().status
        finally:
            plain.close()
        assert source.post(path, _batch(tls_id), context=context).status == 200
        ids = [
            source.extract(event, ["ka.auditid"])["ka.auditid"] for event in source.read_events(2)
        ]

    assert status == 400  # Go's TLS server: "Client sent an HTTP request to an HTTPS server"
    assert ids == [[tls_id], [tls_id]]
