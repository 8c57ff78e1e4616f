"""The charm's cluster side in Scenario, its own lightkube client talking to the real apiserver.

KUBECONFIG holds the token of an identity with the RBAC `juju trust` gives (``ctx`` fixture), so
the hooks run the same code, with the same client, as in a pod; the model name is a fresh
namespace. Writes are counted in the apiserver's own audit log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from charm_pod import NO_TLS_NOTE, falco_container, pod
from kube_apiserver import NOBODY, TRUSTED, KubeApiServer, writes
from lightkube.models.core_v1 import ServicePort, ServiceSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Service
from lightkube.resources.networking_v1 import NetworkPolicy
from ops import testing

APP = "falco-k8s"
NAME = f"{APP}-audit-webhook"


def state(fs: Path, namespace: str, *, leader: bool = True, **config: Any) -> testing.State:
    return testing.State(
        config=config,
        containers=pod(falco_container(fs)),
        leader=leader,
        model=testing.Model(name=namespace),
    )


def configure(ctx, fs: Path, namespace: str, *, leader: bool = True, **config: Any):
    return ctx.run(ctx.on.config_changed(), state(fs, namespace, leader=leader, **config))


def active(url: str) -> testing.ActiveStatus:
    return testing.ActiveStatus(f"{NO_TLS_NOTE}; webhook {url}")


def live_ip(server: KubeApiServer, namespace: str) -> str:
    return server.read(Service, NAME, namespace).spec.clusterIP


def kubeconfig_server(text: str) -> str:
    return yaml.safe_load(text)["clusters"][0]["cluster"]["server"]


def test_leader_creates_the_webhook_objects_and_hands_falco_the_live_address(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    out = configure(ctx, falco_fs, namespace)

    url = f"http://{live_ip(kube_apiserver, namespace)}:9765/k8s-audit"
    data = kube_apiserver.read(ConfigMap, NAME, namespace=namespace).data
    assert kubeconfig_server(data["webhook-config.yaml"]) == url
    pushed = (falco_fs / "etc-falco" / "webhook-config.yaml").read_text()
    assert pushed == data["webhook-config.yaml"]
    assert yaml.safe_load(data["audit-policy.yaml"])["kind"] == "Policy"
    assert out.unit_status == active(url)
    assert writes(kube_apiserver.requests_by(TRUSTED, namespace)) == [
        ("patch", "services"),
        ("patch", "configmaps"),
    ]


def test_fixed_node_port(ctx, falco_fs, namespace, kube_apiserver: KubeApiServer):
    out = configure(
        ctx, falco_fs, namespace, webhook_service_type="NodePort", webhook_node_port=30769
    )

    service = kube_apiserver.read(Service, NAME, namespace=namespace)
    assert service.spec.ports[0].nodePort == 30769
    assert out.unit_status == testing.ActiveStatus(
        f"{NO_TLS_NOTE}; webhook http://127.0.0.1:30769/k8s-audit;"
        " NodePort needs kube-proxy iptables mode"
    )


def test_fixed_cluster_ip_inside_the_service_range(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    out = configure(ctx, falco_fs, namespace, webhook_cluster_ip="10.152.183.210")

    assert live_ip(kube_apiserver, namespace) == "10.152.183.210"
    assert out.unit_status == active("http://10.152.183.210:9765/k8s-audit")


def test_fixed_cluster_ip_outside_the_service_range_blocks_with_the_apis_reason(
    ctx, falco_fs, namespace, caplog: pytest.LogCaptureFixture
):
    out = configure(ctx, falco_fs, namespace, webhook_cluster_ip="10.0.0.5")

    assert isinstance(out.unit_status, testing.BlockedStatus)
    message = out.unit_status.message
    assert message.startswith(
        "webhook_cluster_ip 10.0.0.5: use a free address in the cluster's Service IP range;"
        " apply Service failed: HTTP 422: "
    ), message
    assert "failed to allocate IP 10.0.0.5" in caplog.text
    assert out.get_container("falco").service_statuses["falco"].value == "active"


def test_a_node_port_taken_blocks_naming_the_option(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer, caplog: pytest.LogCaptureFixture
):
    kube_apiserver.client().create(
        Service(
            metadata=ObjectMeta(name="holder", namespace=namespace),
            spec=ServiceSpec(type="NodePort", ports=[ServicePort(port=80, nodePort=30771)]),
        )
    )

    out = configure(
        ctx, falco_fs, namespace, webhook_service_type="NodePort", webhook_node_port=30771
    )

    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(
        "webhook_node_port 30771: use a free port in the cluster's node port range;"
    )
    assert "provided port is already allocated" in caplog.text


def test_allowed_cidrs_give_a_network_policy(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    configure(ctx, falco_fs, namespace, webhook_allowed_cidrs="10.0.0.5, 192.168.1.0/24")

    policy = kube_apiserver.read(NetworkPolicy, NAME, namespace=namespace)
    webhook = next(rule for rule in policy.spec.ingress if rule.ports[0].port == 9765)
    assert [peer.ipBlock.cidr for peer in webhook.from_] == ["10.0.0.5/32", "192.168.1.0/24"]


@pytest.mark.parametrize("cidrs", ["", "10.0.0.0/24"])
def test_update_status_on_a_converged_leader_makes_no_write(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer, cidrs: str
):
    out = configure(ctx, falco_fs, namespace, webhook_allowed_cidrs=cidrs)
    before = len(kube_apiserver.requests_by(TRUSTED, namespace))

    after = ctx.run(ctx.on.update_status(), out)

    since = kube_apiserver.requests_by(TRUSTED, namespace)[before:]
    assert since  # it looked
    assert writes(since) == []
    assert after.unit_status == out.unit_status


def test_non_leader_only_reads_the_service(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    configure(ctx, falco_fs, namespace)
    before = len(kube_apiserver.requests_by(TRUSTED, namespace))

    out = configure(ctx, falco_fs, namespace, leader=False)

    assert kube_apiserver.requests_by(TRUSTED, namespace)[before:] == [("get", "services")]
    assert isinstance(out.unit_status, testing.ActiveStatus)


def test_non_leader_waits_for_the_leader(ctx, falco_fs, namespace):
    out = configure(ctx, falco_fs, namespace, leader=False)

    assert out.unit_status == testing.WaitingStatus(
        "waiting for the leader to create the audit webhook Service"
    )


def test_without_rbac_blocks_with_juju_trust_and_falco_is_untouched(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer, as_user: Callable[[str], None]
):
    as_user(NOBODY)

    out = configure(ctx, falco_fs, namespace, minimum_priority="error")

    assert out.unit_status == testing.BlockedStatus(
        "read Service forbidden: run: juju trust falco-k8s --scope=cluster"
    )
    assert out.get_container("falco").service_statuses["falco"].value == "active"
    falco_yaml = yaml.safe_load((falco_fs / "etc-falco" / "falco.yaml").read_text())
    assert falco_yaml["priority"] == "error"
    assert not list(kube_apiserver.client().list(Service, namespace=namespace))

    as_user(TRUSTED)  # `juju trust falco-k8s --scope=cluster`
    recovered = ctx.run(ctx.on.update_status(), out)
    assert isinstance(recovered.unit_status, testing.ActiveStatus)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"audit_policy": "kind: Policy\n"}, "audit_policy: apiVersion must be audit.k8s.io/v1"),
        ({"webhook_allowed_cidrs": "10.0.0.0/8, nope"}, "webhook_allowed_cidrs: 'nope' is not"),
        ({"webhook_node_port": 30765}, "webhook_node_port can only be set with"),
    ],
)
def test_bad_webhook_options_block_without_a_request(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer, config, message
):
    out = configure(ctx, falco_fs, namespace, **config)

    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(message), out.unit_status.message
    assert writes(kube_apiserver.requests_by(TRUSTED, namespace)) == []


def test_remove_deletes_every_object_the_charm_created(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    out = configure(ctx, falco_fs, namespace, webhook_allowed_cidrs="10.0.0.0/8")

    ctx.run(ctx.on.remove(), dataclasses.replace(out, planned_units=0))

    admin = kube_apiserver.client()
    for resource in (Service, ConfigMap, NetworkPolicy):
        assert not list(admin.list(resource, namespace=namespace))


@pytest.mark.parametrize(
    "removing",
    [{"leader": False, "planned_units": 0}, {"leader": True, "planned_units": 2}],
    ids=["non-leader", "leader-on-scale-down"],
)
def test_remove_keeps_the_objects_while_the_application_stays(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer, removing
):
    out = configure(ctx, falco_fs, namespace)
    before = len(kube_apiserver.requests_by(TRUSTED, namespace))

    ctx.run(ctx.on.remove(), dataclasses.replace(out, **removing))

    assert kube_apiserver.requests_by(TRUSTED, namespace)[before:] == []


def test_get_webhook_config_hands_over_the_live_configmap(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    out = configure(ctx, falco_fs, namespace)

    ctx.run(ctx.on.action("get-webhook-config"), out)

    results = ctx.action_results
    assert results is not None
    data = kube_apiserver.read(ConfigMap, NAME, namespace=namespace).data
    assert results["webhook-config"] == data["webhook-config.yaml"]
    assert results["audit-policy"] == data["audit-policy.yaml"]
    assert "--audit-webhook-config-file=" in results["apiserver-flags"]
    assert f"-n {namespace} get configmap {NAME}" in results["kubectl"]


def test_get_webhook_config_fails_before_the_service_exists(ctx, falco_fs, namespace):
    with pytest.raises(testing.ActionFailed, match="does not exist yet"):
        ctx.run(ctx.on.action("get-webhook-config"), state(falco_fs, namespace, leader=False))
