"""The intake on the charm's own files, posted to as the charm's kubeconfig tells an apiserver.

The charm's pieces make every input: the credentials (the token and the charm's own CA, or a
provider's certificate through `webhook_tls`), the intake's config (`intake_config`, moved to
free loopback ports and a temporary spool), and the kubeconfig `get-webhook-config` hands out.
The client trusts exactly the kubeconfig's CA, sends exactly its token, to exactly its URL.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from intake_helpers import FalcoLoop, fresh_batch, post, recorded_events, running_intake
from tls_ca import TestCa

from audit_intake import metrics
from audit_intake.service import Intake
from webhook._apiserver_side import WebhookAddress, webhook_kubeconfig
from webhook._credentials import Credentials
from webhook._intake_service import intake_config
from webhook._own_ca import new_ca
from webhook._tls import WebhookTls, certificate_sans, webhook_tls

EVENTS = recorded_events()


@dataclasses.dataclass(frozen=True)
class Client:
    """What an apiserver takes from the kubeconfig: where, whom to trust, what to send."""

    port: int
    path: str
    context: ssl.SSLContext
    token: str

    @classmethod
    def from_kubeconfig(cls, text: str) -> Client:
        document = yaml.safe_load(text)
        cluster = document["clusters"][0]["cluster"]
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        url = urlsplit(cluster["server"])
        assert url.scheme == "https"
        assert url.port is not None
        token = document["users"][0]["user"]["token"]
        return cls(url.port, url.path, ssl.create_default_context(cadata=ca), token)


def own_credentials(address: WebhookAddress) -> Credentials:
    """The leader's credentials with a serving certificate for ``address`` (no provider)."""
    credentials = Credentials(token="the-charms-token", ca=new_ca("falco-k8s audit webhook CA"))
    return credentials.with_serving(certificate_sans(address, "falco-k8s", "audit"))


@contextmanager
def charm_intake(
    tmp_path: Path, falco: FalcoLoop, tls: WebhookTls, credentials: Credentials
) -> Iterator[Intake]:
    pem = tmp_path / "webhook.pem"
    pem.write_bytes(tls.pem)
    pem.chmod(0o600)
    config = dataclasses.replace(
        intake_config(credentials.accepted()),
        webhook_host="127.0.0.1",
        webhook_port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        tls_pem=pem,
        spool_dir=tmp_path / "spool",
        k8saudit_url=f"http://127.0.0.1:{falco.port}/k8s-audit",
    )
    with running_intake(config) as intake:
        yield intake


def test_the_handed_out_kubeconfig_gets_batches_through_the_charms_own_ca(
    falco: FalcoLoop, tmp_path: Path
):
    address = WebhookAddress("NodePort", "10.152.183.77", 30765)
    credentials = own_credentials(address)
    tls = credentials.serving_tls()
    assert tls is not None
    with charm_intake(tmp_path, falco, tls, credentials) as intake:
        at_intake = dataclasses.replace(address, node_port=intake.webhook_port)
        client = Client.from_kubeconfig(
            webhook_kubeconfig(at_intake, tls.ca_cert, credentials.token)
        )
        body, ids = fresh_batch(EVENTS, len(EVENTS))
        reply = post(client.port, body, token=client.token, context=client.context)

        assert reply.status == 200
        assert falco.wait_for(ids)


def test_with_a_providers_certificate_a_wrong_token_is_refused(falco: FalcoLoop, tmp_path: Path):
    address = WebhookAddress("NodePort", "10.152.183.77", 30765)
    provider = TestCa("certificates provider CA")
    certificate, key = provider.server_pem(certificate_sans(address, "falco-k8s", "audit").ips)
    tls = webhook_tls(certificate, [certificate, provider.pem], provider.pem, key)
    credentials = own_credentials(address)
    with charm_intake(tmp_path, falco, tls, credentials) as intake:
        at_intake = dataclasses.replace(address, node_port=intake.webhook_port)
        client = Client.from_kubeconfig(
            webhook_kubeconfig(at_intake, tls.ca_cert, credentials.token)
        )
        body, ids = fresh_batch(EVENTS, 5)
        refused = post(client.port, body, token="an-old-token", context=client.context)
        taken = post(
            client.port, fresh_batch(EVENTS, 5)[0], token=client.token, context=client.context
        )

        assert (refused.status, taken.status) == (401, 200)
        assert not any(falco.seen[audit_id] for audit_id in ids)


def test_a_client_trusting_another_ca_or_speaking_plain_http_gets_nowhere(
    falco: FalcoLoop, tmp_path: Path
):
    address = WebhookAddress("NodePort", "10.152.183.77", 30765)
    credentials = own_credentials(address)
    tls = credentials.serving_tls()
    assert tls is not None
    stranger = ssl.create_default_context(cadata=TestCa("another CA").pem)
    with charm_intake(tmp_path, falco, tls, credentials) as intake:
        with pytest.raises(ssl.SSLCertVerificationError):
            post(intake.webhook_port, b"{}", token=credentials.token, context=stranger)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            post(intake.webhook_port, b"{}", token=credentials.token)

        assert intake.metrics.value(metrics.BATCHES) == 0
