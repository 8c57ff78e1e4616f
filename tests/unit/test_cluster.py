"""The lightkube adapter against a fake API server behind lightkube's own HTTP transport hook."""

import base64
import socket
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from fakes.fake_kube_api import ALLOCATED_IP, ALLOCATED_NODE_PORT, FakeApiServer, status
from lightkube import Client, KubeConfig
from lightkube.config.models import Cluster, User

from webhook._apiserver_side import WebhookAddress, WebhookServiceSpec
from webhook._cluster import AuditWebhookCluster, ClusterError, ClusterForbiddenError

APP = "falco"
NS = "falco-model"
NAME = "falco-audit-webhook"
SERVICE = f"/api/v1/namespaces/{NS}/services/{NAME}"
CONFIGMAP = f"/api/v1/namespaces/{NS}/configmaps/{NAME}"
SECRET = f"/api/v1/namespaces/{NS}/secrets/{NAME}"
NETWORKPOLICY = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{NAME}"
LABELS = {
    "app.kubernetes.io/name": APP,
    "app.kubernetes.io/managed-by": APP,
    "app.juju.is/created-by": APP,
}
METADATA = {"name": NAME, "namespace": NS, "labels": LABELS}
POLICY = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
CA_PEM = "-----BEGIN CERTIFICATE-----\nthe webhook CA\n-----END CERTIFICATE-----\n"
TOKEN = "the-webhook-token"


@pytest.fixture
def api() -> FakeApiServer:
    return FakeApiServer()


@pytest.fixture
def cluster(api: FakeApiServer) -> AuditWebhookCluster:
    # No field_manager on the client: the adapter must pass its own on every apply.
    config = KubeConfig.from_one(cluster=Cluster(server="http://k8s.test"), user=User())
    client = Client(config=config, transport=httpx2.MockTransport(api))
    return AuditWebhookCluster(APP, NS, client)


def apply(cluster: AuditWebhookCluster, spec: WebhookServiceSpec, *cidrs: str) -> WebhookAddress:
    return cluster.apply(
        spec, audit_policy=POLICY, allowed_cidrs=cidrs, ca_cert=CA_PEM, token=TOKEN
    )


def secret_kubeconfig(api: FakeApiServer) -> dict[str, Any]:
    data = api.applied(SECRET)["data"]["webhook-config.yaml"]
    return yaml.safe_load(base64.b64decode(data))


def assert_server_side_apply(request: httpx2.Request) -> None:
    assert request.method == "PATCH"
    assert dict(request.url.params) == {"fieldManager": APP, "force": "true"}
    assert request.headers["Content-Type"] == "application/apply-patch+yaml"


def test_apply_cluster_ip_service(api: FakeApiServer, cluster: AuditWebhookCluster):
    address = apply(cluster, WebhookServiceSpec())

    assert address == WebhookAddress("ClusterIP", ALLOCATED_IP, None)
    # Each object is read back first; a policy that does not exist is not deleted.
    assert api.writes() == [("PATCH", SERVICE), ("PATCH", CONFIGMAP), ("PATCH", SECRET)]
    assert_server_side_apply(api.apply_request(SERVICE))
    assert api.applied(SERVICE) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": METADATA,
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": APP},
            "ports": [{"name": "k8s-audit", "port": 9765, "targetPort": 9765, "protocol": "TCP"}],
        },
    }


def test_configmap_carries_the_policy_and_the_secret_the_kubeconfig_of_the_live_service(
    api: FakeApiServer, cluster: AuditWebhookCluster
):
    apply(cluster, WebhookServiceSpec())

    assert_server_side_apply(api.apply_request(CONFIGMAP))
    body = api.applied(CONFIGMAP)
    assert body["apiVersion"] == "v1"
    assert body["kind"] == "ConfigMap"
    assert body["metadata"] == METADATA
    assert body["data"] == {"audit-policy.yaml": POLICY}
    assert_server_side_apply(api.apply_request(SECRET))
    secret = api.applied(SECRET)
    assert (secret["kind"], secret["type"], secret["metadata"]) == ("Secret", "Opaque", METADATA)
    kubeconfig = secret_kubeconfig(api)
    cluster_entry = kubeconfig["clusters"][0]["cluster"]
    assert cluster_entry["server"] == "https://10.152.183.77:9765/k8s-audit"
    assert base64.b64decode(cluster_entry["certificate-authority-data"]).decode() == CA_PEM
    assert kubeconfig["users"][0]["user"] == {"token": TOKEN}


def test_without_a_ca_or_token_yet_no_secret_is_written(
    api: FakeApiServer, cluster: AuditWebhookCluster
):
    cluster.apply(WebhookServiceSpec(), audit_policy=POLICY, allowed_cidrs=())

    assert api.writes() == [("PATCH", SERVICE), ("PATCH", CONFIGMAP)]


def test_apply_node_port_allocated(api: FakeApiServer, cluster: AuditWebhookCluster):
    address = apply(cluster, WebhookServiceSpec(service_type="NodePort"))

    assert address == WebhookAddress("NodePort", ALLOCATED_IP, ALLOCATED_NODE_PORT)
    spec = api.applied(SERVICE)["spec"]
    assert spec["type"] == "NodePort"
    assert "nodePort" not in spec["ports"][0]
    assert "clusterIP" not in spec
    kubeconfig = secret_kubeconfig(api)
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:30765/k8s-audit"


def test_apply_fixed_node_port_and_cluster_ip(api: FakeApiServer, cluster: AuditWebhookCluster):
    spec = WebhookServiceSpec(service_type="NodePort", node_port=30999, cluster_ip="10.152.183.5")

    address = apply(cluster, spec)

    assert address == WebhookAddress("NodePort", "10.152.183.5", 30999)
    # A fixed cluster IP is checked against the live Service before applying.
    assert api.sent()[:2] == [("GET", SERVICE), ("PATCH", SERVICE)]
    body = api.body(1)["spec"]
    assert body["clusterIP"] == "10.152.183.5"
    assert body["ports"] == [
        {
            "name": "k8s-audit",
            "port": 9765,
            "targetPort": 9765,
            "protocol": "TCP",
            "nodePort": 30999,
        }
    ]


def test_switch_node_port_back_to_cluster_ip(api: FakeApiServer, cluster: AuditWebhookCluster):
    apply(cluster, WebhookServiceSpec(service_type="NodePort", node_port=30999))
    api.requests.clear()

    address = apply(cluster, WebhookServiceSpec())

    assert address == WebhookAddress("ClusterIP", ALLOCATED_IP, None)
    spec = api.applied(SERVICE)["spec"]
    assert spec["type"] == "ClusterIP"
    assert "nodePort" not in spec["ports"][0]


def test_unchanged_fixed_cluster_ip_is_accepted(api: FakeApiServer, cluster: AuditWebhookCluster):
    apply(cluster, WebhookServiceSpec(cluster_ip="fd00::4d"))
    api.requests.clear()

    # The same address spelt differently is the same address: not refused, nothing to write.
    address = apply(cluster, WebhookServiceSpec(cluster_ip="fd00:0::004d"))

    assert api.writes() == []
    assert address.url == "https://[fd00::4d]:9765/k8s-audit"


def test_changed_fixed_cluster_ip_is_refused(api: FakeApiServer, cluster: AuditWebhookCluster):
    apply(cluster, WebhookServiceSpec())
    api.requests.clear()

    with pytest.raises(ClusterError) as excinfo:
        apply(cluster, WebhookServiceSpec(cluster_ip="10.152.183.200"))

    assert api.sent() == [("GET", SERVICE)]
    message = str(excinfo.value)
    assert "10.152.183.77" in message
    assert "10.152.183.200" in message
    assert f"kubectl -n {NS} delete service {NAME}" in message


def test_network_policy_applied_for_cidrs(api: FakeApiServer, cluster: AuditWebhookCluster):
    apply(cluster, WebhookServiceSpec(), "10.0.0.0/24", "fd00::/64")

    assert api.writes() == [
        ("PATCH", SERVICE),
        ("PATCH", CONFIGMAP),
        ("PATCH", SECRET),
        ("PATCH", NETWORKPOLICY),
    ]
    assert_server_side_apply(api.apply_request(NETWORKPOLICY))
    assert api.applied(NETWORKPOLICY) == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": METADATA,
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": APP}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"ipBlock": {"cidr": "10.0.0.0/24"}},
                        {"ipBlock": {"cidr": "fd00::/64"}},
                    ],
                    "ports": [{"port": 9765, "protocol": "TCP"}],
                },
                {
                    "ports": [
                        {"port": 8765, "protocol": "TCP"},
                        {"port": 9802, "protocol": "TCP"},  # scraped over metrics-endpoint
                        {"port": 9803, "protocol": "TCP"},
                    ]
                },
            ],
        },
    }


def test_network_policy_deleted_when_cidrs_cleared(
    api: FakeApiServer, cluster: AuditWebhookCluster
):
    apply(cluster, WebhookServiceSpec(), "10.0.0.0/24")
    assert NETWORKPOLICY in api.objects

    apply(cluster, WebhookServiceSpec())

    assert api.sent()[-1] == ("DELETE", NETWORKPOLICY)
    assert NETWORKPOLICY not in api.objects


@pytest.mark.parametrize(
    ("spec", "cidrs"),
    [
        (WebhookServiceSpec(), ()),
        (WebhookServiceSpec(service_type="NodePort"), ("10.0.0.0/24",)),
        (WebhookServiceSpec(service_type="NodePort", node_port=30999, cluster_ip="10.1.2.3"), ()),
    ],
)
def test_converged_objects_are_read_and_not_written(
    api: FakeApiServer, cluster: AuditWebhookCluster, spec: WebhookServiceSpec, cidrs: tuple[str]
):
    first = apply(cluster, spec, *cidrs)
    api.requests.clear()

    again = apply(cluster, spec, *cidrs)

    assert again == first
    assert api.writes() == []
    assert {path for _, path in api.sent()} == {SERVICE, CONFIGMAP, SECRET, NETWORKPOLICY}


def test_an_object_edited_or_deleted_by_someone_else_is_applied_again(
    api: FakeApiServer, cluster: AuditWebhookCluster
):
    apply(cluster, WebhookServiceSpec(), "10.0.0.0/24")
    api.objects[CONFIGMAP]["data"]["audit-policy.yaml"] = "edited by hand"
    del api.objects[NETWORKPOLICY]
    api.requests.clear()

    apply(cluster, WebhookServiceSpec(), "10.0.0.0/24")

    assert api.writes() == [("PATCH", CONFIGMAP), ("PATCH", NETWORKPOLICY)]
    assert api.objects[CONFIGMAP]["data"]["audit-policy.yaml"] == POLICY


def test_a_changed_option_is_applied(api: FakeApiServer, cluster: AuditWebhookCluster):
    apply(cluster, WebhookServiceSpec(service_type="NodePort"))
    api.requests.clear()

    apply(cluster, WebhookServiceSpec(service_type="NodePort", node_port=30999))

    # The Service and the kubeconfig naming its port: the policy did not change.
    assert api.writes() == [("PATCH", SERVICE), ("PATCH", SECRET)]
    assert api.applied(SERVICE)["spec"]["ports"][0]["nodePort"] == 30999


@pytest.mark.parametrize(
    ("code", "message", "retryable"),
    [
        (409, "Operation cannot be fulfilled on services: the object has been modified", False),
        (
            422,
            'Service "falco-audit-webhook" is invalid: provided port is already allocated',
            False,
        ),
        (429, "too many requests, please try again later", True),
        (500, "etcdserver: request timed out", True),
    ],
)
def test_api_errors_become_cluster_errors(
    api: FakeApiServer, cluster: AuditWebhookCluster, code: int, message: str, retryable: bool
):
    api.failures["PATCH", SERVICE] = status(code, message)

    with pytest.raises(ClusterError) as excinfo:
        apply(cluster, WebhookServiceSpec(service_type="NodePort", node_port=30765))

    assert type(excinfo.value) is ClusterError
    assert str(excinfo.value) == f"apply Service failed: HTTP {code}: {message}"
    assert excinfo.value.retryable is retryable
    assert isinstance(excinfo.value.__cause__, httpx2.HTTPStatusError)


@pytest.mark.parametrize(
    ("method", "path"),
    [("PATCH", SERVICE), ("PATCH", CONFIGMAP), ("PATCH", NETWORKPOLICY)],
)
def test_forbidden_asks_for_trust(
    api: FakeApiServer, cluster: AuditWebhookCluster, method: str, path: str
):
    api.failures[method, path] = status(403, "services is forbidden: User cannot patch")

    with pytest.raises(ClusterForbiddenError, match=r"run: juju trust falco --scope=cluster$"):
        apply(cluster, WebhookServiceSpec(), "10.0.0.0/8")


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


def test_remove_deletes_all_four(api: FakeApiServer, cluster: AuditWebhookCluster):
    apply(cluster, WebhookServiceSpec(), "10.0.0.0/8")
    api.requests.clear()

    cluster.remove()

    assert sorted(api.sent()) == sorted(
        [("DELETE", SERVICE), ("DELETE", CONFIGMAP), ("DELETE", SECRET), ("DELETE", NETWORKPOLICY)]
    )
    assert api.objects == {}


def test_remove_tolerates_absent_objects(api: FakeApiServer, cluster: AuditWebhookCluster):
    cluster.remove()

    assert len(api.sent()) == 4
    assert {method for method, _ in api.sent()} == {"DELETE"}


def test_remove_reports_other_failures(api: FakeApiServer, cluster: AuditWebhookCluster):
    api.failures["DELETE", CONFIGMAP] = status(500, "boom")

    with pytest.raises(ClusterError, match=r"^delete ConfigMap failed: HTTP 500: boom$"):
        cluster.remove()


def test_read_address_before_apply(api: FakeApiServer, cluster: AuditWebhookCluster):
    assert cluster.read_address() is None
    assert api.sent() == [("GET", SERVICE)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (WebhookServiceSpec(), WebhookAddress("ClusterIP", ALLOCATED_IP, None)),
        (
            WebhookServiceSpec(service_type="NodePort"),
            WebhookAddress("NodePort", ALLOCATED_IP, ALLOCATED_NODE_PORT),
        ),
    ],
)
def test_read_address_only_reads(
    api: FakeApiServer,
    cluster: AuditWebhookCluster,
    spec: WebhookServiceSpec,
    expected: WebhookAddress,
):
    apply(cluster, spec)
    api.requests.clear()

    assert cluster.read_address() == expected
    assert api.sent() == [("GET", SERVICE)]


@pytest.mark.parametrize(
    ("live_spec", "reason"),
    [
        ({"type": "ClusterIP", "ports": []}, "has no cluster IP"),
        (
            {"type": "NodePort", "clusterIP": ALLOCATED_IP, "ports": [{"name": "x", "port": 1}]},
            "has no node port for k8s-audit",
        ),
    ],
)
def test_read_address_of_an_incomplete_service(
    api: FakeApiServer, cluster: AuditWebhookCluster, live_spec: dict[str, Any], reason: str
):
    api.objects[SERVICE] = {"apiVersion": "v1", "kind": "Service", "spec": live_spec}

    with pytest.raises(ClusterError, match=reason):
        cluster.read_address()


def test_read_address_forbidden(api: FakeApiServer, cluster: AuditWebhookCluster):
    api.failures["GET", SERVICE] = status(403, "forbidden")

    with pytest.raises(ClusterForbiddenError, match="read Service forbidden"):
        cluster.read_address()


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
