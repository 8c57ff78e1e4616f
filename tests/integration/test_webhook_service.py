"""The cluster objects the leader owns: NetworkPolicy, NodePort, fixed cluster IP, and cleanup."""

from __future__ import annotations

import ipaddress

import jubilant
import pytest
from deployment import (
    APP,
    WEBHOOK_OBJECTS,
    fast_update_status,
    kube,
    until,
    wait_for,
    webhook_addresses,
)
from inside_pod import webhook_server
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import ConfigMap, Service
from lightkube.resources.networking_v1 import NetworkPolicy

pytestmark = pytest.mark.integration

UNIT = f"{APP}/0"
CIDRS = ("10.0.0.0/8", "192.168.0.0/16")


def namespace_of(juju: jubilant.Juju) -> str:
    assert juju.model is not None
    return juju.model


def policy_cidrs(client: Client, namespace: str) -> set[str] | None:
    """The CIDRs the webhook's NetworkPolicy admits, or None when there is no policy."""
    try:
        policy = client.get(NetworkPolicy, WEBHOOK_OBJECTS, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    assert policy.spec is not None
    return {
        peer.ipBlock.cidr
        for rule in policy.spec.ingress or []
        for peer in rule.from_ or []
        if peer.ipBlock is not None
    }


def exists(
    client: Client, resource: type[Service | ConfigMap | NetworkPolicy], namespace: str
) -> bool:
    try:
        client.get(resource, WEBHOOK_OBJECTS, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise
    return True


def test_allowed_cidrs_create_the_network_policy_and_clearing_removes_it(
    deployed: jubilant.Juju,
):
    namespace = namespace_of(deployed)
    deployed.config(APP, {"webhook_allowed_cidrs": ",".join(CIDRS)})
    with kube() as client:
        until(lambda: policy_cidrs(client, namespace) == set(CIDRS), "the NetworkPolicy")
        wait_for(deployed, "active", "webhook https://")

        deployed.config(APP, reset="webhook_allowed_cidrs")
        until(lambda: policy_cidrs(client, namespace) is None, "the NetworkPolicy to go")
        wait_for(deployed, "active", "webhook https://")


def free_node_port(client: Client, first: int = 31765) -> int:
    """A node port no Service of the cluster uses."""
    used = {
        port.nodePort
        for service in client.list(Service, namespace="*")
        for port in (service.spec.ports or [] if service.spec else [])
    }
    return next(port for port in range(first, 32768) if port not in used)


def test_node_port_with_a_fixed_port(deployed: jubilant.Juju):
    namespace = namespace_of(deployed)
    with kube() as client:
        port = free_node_port(client)
    deployed.config(APP, {"webhook_service_type": "NodePort", "webhook_node_port": port})
    url = f"https://127.0.0.1:{port}/k8s-audit"
    wait_for(deployed, "active", f"webhook {url}")

    with kube() as client:
        spec = client.get(Service, WEBHOOK_OBJECTS, namespace=namespace).spec
    assert spec is not None
    assert spec.type == "NodePort"
    assert [p.nodePort for p in spec.ports or []] == [port]
    assert webhook_server(deployed, UNIT) == url

    deployed.config(APP, reset=["webhook_service_type", "webhook_node_port"])
    wait_for(deployed, "active", f"webhook https://{spec.clusterIP}:9765/")


def free_cluster_ip(client: Client) -> str:
    """An unused address near the `kubernetes` Service's, which is the service range's first."""
    used = {
        service.spec.clusterIP
        for service in client.list(Service, namespace="*")
        if service.spec is not None
    }
    kubernetes = client.get(Service, "kubernetes", namespace="default").spec
    assert kubernetes is not None
    assert kubernetes.clusterIP
    first = ipaddress.ip_address(kubernetes.clusterIP)
    return next(str(first + n) for n in range(200, 250) if str(first + n) not in used)


def test_a_fixed_cluster_ip_replaces_the_service_the_operator_deletes(deployed: jubilant.Juju):
    namespace = namespace_of(deployed)
    with kube() as client:
        wanted = free_cluster_ip(client)
    deployed.config(APP, {"webhook_cluster_ip": wanted})
    # Kubernetes cannot move a Service's cluster IP: the charm says how to let it recreate it.
    hint = f"run: kubectl -n {namespace} delete service {WEBHOOK_OBJECTS}"
    wait_for(deployed, "blocked", hint)

    with fast_update_status(deployed), kube() as client:
        client.delete(Service, WEBHOOK_OBJECTS, namespace=namespace)
        url = f"https://{wanted}:9765/k8s-audit"
        status = wait_for(deployed, "active", f"webhook {url}")
        spec = client.get(Service, WEBHOOK_OBJECTS, namespace=namespace).spec
    assert spec is not None
    assert spec.clusterIP == wanted
    assert webhook_addresses(status) == {UNIT: url}
    assert webhook_server(deployed, UNIT) == url


def test_remove_application_deletes_the_service_configmap_and_policy(deployed: jubilant.Juju):
    namespace = namespace_of(deployed)
    deployed.config(APP, {"webhook_allowed_cidrs": CIDRS[0]})
    with kube() as client:
        until(lambda: policy_cidrs(client, namespace) == {CIDRS[0]}, "the NetworkPolicy")

        deployed.remove_application(APP, destroy_storage=True)
        deployed.wait(lambda status: APP not in status.apps, error=jubilant.any_error)

        for resource in (Service, ConfigMap, NetworkPolicy):
            assert not exists(client, resource, namespace), resource.__name__
