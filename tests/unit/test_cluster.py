"""The lightkube adapter against faults the real kube-apiserver cannot produce on demand.

Everything the real API can show (server-side apply, allocation, validation, RBAC, removal) is
tested against it in tests/unit/apiserver/test_real_cluster.py. Here, behind lightkube's own
transport hook, the stand-in (kube_api.py) answers what a healthy test apiserver never does:
a conflict, throttling, 5xx with or without a Status body, and transport failures.
"""

import socket
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from fakes.fake_kube_api import FakeApiServer, status
from lightkube import Client, KubeConfig
from lightkube.config.models import Cluster, User

from webhook._apiserver_side import WebhookAddress, WebhookServiceSpec
from webhook._audit_policy import audit_policy
from webhook._cluster import AuditWebhookCluster, ClusterError

APP = "falco"
NS = "falco-model"
NAME = "falco-audit-webhook"
SERVICE = f"/api/v1/namespaces/{NS}/services/{NAME}"
CONFIGMAP = f"/api/v1/namespaces/{NS}/configmaps/{NAME}"
POLICY = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"


@pytest.fixture
def api() -> FakeApiServer:
    return FakeApiServer()


@pytest.fixture
def cluster(api: FakeApiServer) -> AuditWebhookCluster:
    config = KubeConfig.from_one(cluster=Cluster(server="http://k8s.test"), user=User())
    client = Client(config=config, transport=httpx2.MockTransport(api))
    return AuditWebhookCluster(APP, NS, client)


def apply(cluster: AuditWebhookCluster, spec: WebhookServiceSpec, *cidrs: str) -> WebhookAddress:
    return cluster.apply(spec, audit_policy=audit_policy(POLICY), allowed_cidrs=cidrs)


@pytest.mark.parametrize(
    ("code", "message", "retryable"),
    [
        (409, "Operation cannot be fulfilled on services: the object has been modified", False),
        (429, "too many requests, please try again later", True),
        (500, "etcdserver: request timed out", True),
    ],
)
def test_api_errors_become_cluster_errors(
    api: FakeApiServer, cluster: AuditWebhookCluster, code: int, message: str, retryable: bool
):
    api.failures["PATCH", SERVICE] = status(code, message)

    with pytest.raises(ClusterError) as excinfo:
        # A fixed node port is named only when the API finds the Service invalid (422).
        apply(cluster, WebhookServiceSpec(service_type="NodePort", node_port=30765))

    assert type(excinfo.value) is ClusterError
    assert str(excinfo.value) == f"apply Service failed: HTTP {code}: {message}"
    assert excinfo.value.retryable is retryable
    assert isinstance(excinfo.value.__cause__, httpx2.HTTPStatusError)


def test_error_without_status_body(api: FakeApiServer, cluster: AuditWebhookCluster):
    api.failures["PATCH", SERVICE] = httpx2.Response(503, text="upstream connect error")

    with pytest.raises(
        ClusterError, match=r"^apply Service failed: HTTP 503: Service Unavailable$"
    ):
        apply(cluster, WebhookServiceSpec())


def test_transport_error():
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    cluster = AuditWebhookCluster(
        APP,
        NS,
        Client(
            config=KubeConfig.from_one(cluster=Cluster(server="http://k8s.test"), user=User()),
            transport=httpx2.MockTransport(refuse),
        ),
    )

    with pytest.raises(ClusterError, match="unreachable: ConnectError: connection refused") as exc:
        apply(cluster, WebhookServiceSpec())
    assert exc.value.retryable


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_default_client_from_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    kubeconfig = tmp_path / "config"
    server = f"http://127.0.0.1:{closed_port()}"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))

    with pytest.raises(ClusterError, match="read Service failed: Kubernetes API unreachable"):
        AuditWebhookCluster(APP, NS).read_address()


def test_missing_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))

    with pytest.raises(ClusterError, match="cannot load Kubernetes credentials"):
        AuditWebhookCluster(APP, NS).remove()


def test_remove_reports_other_failures(api: FakeApiServer, cluster: AuditWebhookCluster):
    api.failures["DELETE", CONFIGMAP] = status(500, "boom")

    with pytest.raises(ClusterError, match=r"^delete ConfigMap failed: HTTP 500: boom$"):
        cluster.remove()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"service_type": "LoadBalancer"}, "service_type must be ClusterIP or NodePort"),
        ({"node_port": 30765}, "node_port can only be set with webhook_service_type NodePort"),
        ({"service_type": "NodePort", "node_port": 8080}, "node_port 8080 is outside"),
        ({"service_type": "NodePort", "node_port": 32768}, "outside 30000-32767"),
        ({"cluster_ip": "falco.svc"}, "cluster_ip 'falco.svc' is not an IP address"),
    ],
)
def test_service_spec_validation(kwargs: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message):
        WebhookServiceSpec(**kwargs)


def test_service_spec_bounds():
    assert WebhookServiceSpec(service_type="NodePort", node_port=30000).node_port == 30000
    assert WebhookServiceSpec(service_type="NodePort", node_port=32767).node_port == 32767
