"""The charm's cluster module (`AuditWebhookCluster`) against the real kube-apiserver.

Driven as the charm drives it: built from the application and model names, its lightkube client
loaded from KUBECONFIG (the trusted service account's token unless a test says otherwise).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kube_apiserver import NOBODY, SERVICE_CIDR, TRUSTED, UNTRUSTED, KubeApiServer, writes
from lightkube.models.core_v1 import ServicePort, ServiceSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Secret, Service
from lightkube.resources.networking_v1 import NetworkPolicy

from webhook._apiserver_side import WebhookAddress, WebhookServiceSpec
from webhook._audit_policy import audit_policy
from webhook._cluster import AuditWebhookCluster, ClusterError, ClusterForbiddenError

APP = "falco-k8s"
NAME = f"{APP}-audit-webhook"
POLICY = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
CA_PEM = "-----BEGIN CERTIFICATE-----\nthe webhook CA\n-----END CERTIFICATE-----\n"
TOKEN = "the-webhook-token"

pytestmark = pytest.mark.usefixtures("trusted")


def apply(namespace: str, spec: WebhookServiceSpec, *cidrs: str) -> WebhookAddress:
    return AuditWebhookCluster(APP, namespace).apply(
        spec, audit_policy=audit_policy(POLICY), allowed_cidrs=cidrs, ca_cert=CA_PEM, token=TOKEN
    )


def live(server: KubeApiServer, resource: Any, namespace: str) -> Any:
    return server.read(resource, NAME, namespace)


def counting(server: KubeApiServer, namespace: str) -> Callable[[], list[tuple[str, str]]]:
    """The trusted identity's requests in ``namespace`` from now on."""
    before = len(server.requests_by(TRUSTED, namespace))
    return lambda: server.requests_by(TRUSTED, namespace)[before:]


def test_cluster_ip_service_configmap_and_secret_are_created_by_server_side_apply(
    kube_apiserver: KubeApiServer, namespace: str
):
    requests = counting(kube_apiserver, namespace)

    address = apply(namespace, WebhookServiceSpec())

    service = live(kube_apiserver, Service, namespace)
    assert address == WebhookAddress("ClusterIP", service.spec.clusterIP, None)
    assert ipaddress.ip_address(address.cluster_ip) in ipaddress.ip_network(SERVICE_CIDR)
    assert service.spec.selector == {"app.kubernetes.io/name": APP}
    [port] = service.spec.ports
    assert (port.name, port.port, port.targetPort, port.protocol) == (
        "k8s-audit",
        9765,
        9765,
        "TCP",
    )
    assert {(f.manager, f.operation) for f in service.metadata.managedFields} == {(APP, "Apply")}
    assert live(kube_apiserver, ConfigMap, namespace).data == {"audit-policy.yaml": POLICY}
    secret = live(kube_apiserver, Secret, namespace)
    assert secret.type == "Opaque"
    kubeconfig = yaml.safe_load(base64.b64decode(secret.data["webhook-config.yaml"]))
    cluster = kubeconfig["clusters"][0]["cluster"]
    assert cluster["server"] == f"https://{address.cluster_ip}:9765/k8s-audit"
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == CA_PEM
    assert kubeconfig["users"][0]["user"] == {"token": TOKEN}
    assert writes(requests()) == [
        ("patch", "services"),
        ("patch", "configmaps"),
        ("patch", "secrets"),
    ]


def test_node_port_fixed(kube_apiserver: KubeApiServer, namespace: str):
    address = apply(namespace, WebhookServiceSpec(service_type="NodePort", node_port=30765))

    service = live(kube_apiserver, Service, namespace)
    assert service.spec.type == "NodePort"
    assert service.spec.ports[0].nodePort == 30765
    assert address.url == "https://127.0.0.1:30765/k8s-audit"


def test_node_port_allocated_is_kept_by_the_next_apply(
    kube_apiserver: KubeApiServer, namespace: str
):
    first = apply(namespace, WebhookServiceSpec(service_type="NodePort"))
    requests = counting(kube_apiserver, namespace)

    again = apply(namespace, WebhookServiceSpec(service_type="NodePort"))

    assert first.node_port is not None
    assert 30000 <= first.node_port <= 32767
    assert again == first
    assert writes(requests()) == []


def test_node_port_back_to_cluster_ip_drops_the_node_port(
    kube_apiserver: KubeApiServer, namespace: str
):
    apply(namespace, WebhookServiceSpec(service_type="NodePort", node_port=30766))

    address = apply(namespace, WebhookServiceSpec())

    service = live(kube_apiserver, Service, namespace)
    assert (service.spec.type, service.spec.ports[0].nodePort) == ("ClusterIP", None)
    assert address.node_port is None


@pytest.mark.parametrize(
    ("spec", "reason", "hint"),
    [
        (
            WebhookServiceSpec(service_type="NodePort", node_port=30767),
            "provided port is already allocated",
            "webhook_node_port 30767: use a free port in the cluster's node port range",
        ),
        (
            WebhookServiceSpec(cluster_ip="10.0.0.5"),
            "failed to allocate IP 10.0.0.5: the provided network does not match",
            "webhook_cluster_ip 10.0.0.5: use a free address in the cluster's Service IP range",
        ),
    ],
    ids=["node-port-taken", "cluster-ip-outside-the-range"],
)
def test_a_fixed_address_the_api_refuses_names_its_option(
    kube_apiserver: KubeApiServer, namespace: str, spec: WebhookServiceSpec, reason: str, hint: str
):
    kube_apiserver.client().create(  # another Service holds node port 30767
        Service(
            metadata=ObjectMeta(name="holder", namespace=namespace),
            spec=ServiceSpec(type="NodePort", ports=[ServicePort(port=80, nodePort=30767)]),
        )
    )

    with pytest.raises(ClusterError) as excinfo:
        apply(namespace, spec)

    message = str(excinfo.value)
    assert message.startswith(f"{hint}; apply Service failed: HTTP 422: ")
    assert reason in message
    assert not excinfo.value.retryable


def test_fixed_cluster_ip_inside_the_service_range(kube_apiserver: KubeApiServer, namespace: str):
    address = apply(namespace, WebhookServiceSpec(cluster_ip="10.152.183.201"))

    assert live(kube_apiserver, Service, namespace).spec.clusterIP == "10.152.183.201"
    assert address.cluster_ip == "10.152.183.201"


def test_a_fixed_ipv6_cluster_ip_spelt_another_way_is_the_same_address(
    kube_apiserver: KubeApiServer, namespace: str
):
    first = apply(namespace, WebhookServiceSpec(cluster_ip="fd00:10:152:183::4d"))
    requests = counting(kube_apiserver, namespace)

    again = apply(namespace, WebhookServiceSpec(cluster_ip="fd00:10:152:183:0::004d"))

    assert live(kube_apiserver, Service, namespace).spec.ipFamilies == ["IPv6"]
    assert again == first
    assert again.url == "https://[fd00:10:152:183::4d]:9765/k8s-audit"
    assert writes(requests()) == []


def test_a_changed_node_port_is_applied(kube_apiserver: KubeApiServer, namespace: str):
    apply(namespace, WebhookServiceSpec(service_type="NodePort"))
    requests = counting(kube_apiserver, namespace)

    address = apply(namespace, WebhookServiceSpec(service_type="NodePort", node_port=30770))

    assert live(kube_apiserver, Service, namespace).spec.ports[0].nodePort == 30770
    assert address.node_port == 30770
    # The Service, and the webhook file naming its new port; the policy did not change.
    assert writes(requests()) == [("patch", "services"), ("patch", "secrets")]


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (
            ServiceSpec(clusterIP="None", ports=[ServicePort(name="k8s-audit", port=9765)]),
            "has no cluster IP",
        ),
        (
            ServiceSpec(type="NodePort", ports=[ServicePort(name="web", port=80)]),
            "has no node port for k8s-audit",
        ),
    ],
    ids=["headless", "node-port-without-the-webhook-port"],
)
def test_a_service_of_that_name_made_by_someone_else_is_reported(
    kube_apiserver: KubeApiServer, namespace: str, spec: ServiceSpec, reason: str
):
    kube_apiserver.client().create(
        Service(metadata=ObjectMeta(name=NAME, namespace=namespace), spec=spec)
    )

    with pytest.raises(ClusterError, match=f"Service {NAME} {reason}"):
        AuditWebhookCluster(APP, namespace).read_address()


def test_a_changed_fixed_cluster_ip_is_refused_before_the_api_is_asked(
    kube_apiserver: KubeApiServer, namespace: str
):
    apply(namespace, WebhookServiceSpec(cluster_ip="10.152.183.202"))
    requests = counting(kube_apiserver, namespace)

    with pytest.raises(ClusterError, match=f"kubectl -n {namespace} delete service {NAME}") as exc:
        apply(namespace, WebhookServiceSpec(cluster_ip="10.152.183.203"))

    # The option comes first, so a status cut to its length still says what to change.
    assert str(exc.value).startswith("webhook_cluster_ip 10.152.183.203: ")
    assert "10.152.183.202" in str(exc.value)

    assert requests() == [("get", "services")]
    assert live(kube_apiserver, Service, namespace).spec.clusterIP == "10.152.183.202"


def test_a_field_another_manager_changed_is_taken_back_and_its_own_fields_kept(
    kube_apiserver: KubeApiServer, namespace: str
):
    apply(namespace, WebhookServiceSpec())
    operator = kube_apiserver.client()
    operator.patch(
        ConfigMap,
        NAME,
        {"metadata": {"labels": {"team": "security"}}, "data": {"audit-policy.yaml": "edited"}},
        namespace=namespace,
        field_manager="kubectl-edit",
    )
    requests = counting(kube_apiserver, namespace)

    apply(namespace, WebhookServiceSpec())

    configmap = live(kube_apiserver, ConfigMap, namespace)
    assert configmap.data["audit-policy.yaml"] == POLICY
    assert configmap.metadata.labels["team"] == "security"
    assert writes(requests()) == [("patch", "configmaps")]
    owners = {f.manager: f.fieldsV1 for f in configmap.metadata.managedFields}
    assert "f:audit-policy.yaml" in str(owners[APP])
    assert "f:audit-policy.yaml" not in str(owners.get("kubectl-edit", {}))


def test_an_object_deleted_by_someone_else_is_recreated(
    kube_apiserver: KubeApiServer, namespace: str
):
    apply(namespace, WebhookServiceSpec(), "10.0.0.0/24")
    kube_apiserver.client().delete(NetworkPolicy, NAME, namespace=namespace)
    requests = counting(kube_apiserver, namespace)

    apply(namespace, WebhookServiceSpec(), "10.0.0.0/24")

    assert writes(requests()) == [("patch", "networkpolicies")]
    assert live(kube_apiserver, NetworkPolicy, namespace) is not None


def test_network_policy_from_allowed_cidrs_is_accepted_by_the_api(
    kube_apiserver: KubeApiServer, namespace: str
):
    apply(namespace, WebhookServiceSpec(), "10.1.2.0/24", "192.168.7.4/32", "fd00::/64")

    spec = live(kube_apiserver, NetworkPolicy, namespace).spec
    assert spec.podSelector.matchLabels == {"app.kubernetes.io/name": APP}
    assert spec.policyTypes == ["Ingress"]
    webhook, metrics = spec.ingress
    assert [peer.ipBlock.cidr for peer in webhook.from_] == [
        "10.1.2.0/24",
        "192.168.7.4/32",
        "fd00::/64",
    ]
    assert [(p.port, p.protocol) for p in webhook.ports] == [(9765, "TCP")]
    assert metrics.from_ is None
    assert [p.port for p in metrics.ports] == [8765, 9802, 9803]


def test_network_policy_is_deleted_when_the_cidrs_are_cleared(
    kube_apiserver: KubeApiServer, namespace: str
):
    apply(namespace, WebhookServiceSpec(), "10.0.0.0/8")
    requests = counting(kube_apiserver, namespace)

    apply(namespace, WebhookServiceSpec())

    assert writes(requests()) == [("delete", "networkpolicies")]
    assert not list(kube_apiserver.client().list(NetworkPolicy, namespace=namespace))


@pytest.mark.parametrize(
    ("spec", "cidrs"),
    [
        (WebhookServiceSpec(), ()),
        (WebhookServiceSpec(service_type="NodePort"), ("10.0.0.0/24", "fd00::/64")),
        (
            WebhookServiceSpec(
                service_type="NodePort", node_port=30768, cluster_ip="10.152.183.9"
            ),
            (),
        ),
    ],
)
def test_a_converged_apply_only_reads(
    kube_apiserver: KubeApiServer, namespace: str, spec: WebhookServiceSpec, cidrs: tuple[str]
):
    first = apply(namespace, spec, *cidrs)
    requests = counting(kube_apiserver, namespace)

    again = apply(namespace, spec, *cidrs)

    assert again == first
    assert sorted(requests()) == [
        ("get", "configmaps"),
        ("get", "networkpolicies"),
        ("get", "secrets"),
        ("get", "services"),
    ]


def test_read_address_before_and_after_apply(namespace: str):
    cluster = AuditWebhookCluster(APP, namespace)
    assert cluster.read_address() is None

    address = apply(namespace, WebhookServiceSpec(service_type="NodePort"))

    assert cluster.read_address() == address


def test_remove_deletes_every_object_and_tolerates_their_absence(
    kube_apiserver: KubeApiServer, namespace: str
):
    apply(namespace, WebhookServiceSpec(service_type="NodePort"), "10.0.0.0/8")
    cluster = AuditWebhookCluster(APP, namespace)

    cluster.remove()
    cluster.remove()

    admin = kube_apiserver.client()
    selector = {"app.juju.is/created-by": APP}
    for resource in (Service, ConfigMap, NetworkPolicy):
        listed = admin.list(resource, namespace=namespace, labels=selector)  # pyright: ignore[reportArgumentType]
        assert not list(listed)


def test_untrusted_application_is_told_to_run_juju_trust(
    kube_apiserver: KubeApiServer, namespace: str, as_user: Callable[[str], None]
):
    # Juju's default RBAC for an untrusted application lets it read and patch Services, but a
    # server-side apply that creates one needs create too.
    kube_apiserver.grant_untrusted(namespace)
    as_user(UNTRUSTED)

    with pytest.raises(ClusterForbiddenError) as excinfo:
        apply(namespace, WebhookServiceSpec())

    assert (
        str(excinfo.value) == "apply Service forbidden: run: juju trust falco-k8s --scope=cluster"
    )
    assert 'cannot create resource "services"' in str(excinfo.value.__cause__)


def test_identity_without_rbac_is_told_to_run_juju_trust(
    namespace: str, as_user: Callable[[str], None]
):
    as_user(NOBODY)

    with pytest.raises(ClusterForbiddenError) as excinfo:
        AuditWebhookCluster(APP, namespace).read_address()

    assert (
        str(excinfo.value) == "read Service forbidden: run: juju trust falco-k8s --scope=cluster"
    )
