"""The charm's cluster side in Scenario, its own lightkube client talking to the real apiserver.

KUBECONFIG holds the token of an identity with the RBAC `juju trust` gives (``ctx`` fixture), so
the hooks run the same code, with the same client, as in a pod; the model name is a fresh
namespace. Writes are counted in the apiserver's own audit log.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from charm_pod import unit_state
from kube_apiserver import NOBODY, TRUSTED, KubeApiServer, writes
from lightkube.models.core_v1 import ServicePort, ServiceSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Secret, Service
from lightkube.resources.networking_v1 import NetworkPolicy
from ops import testing

from webhook import _audit_policy

APP = "falco-k8s"
NAME = f"{APP}-audit-webhook"


def configure(ctx, fs: Path, namespace: str, *, leader: bool = True, **config: Any):
    return ctx.run(ctx.on.config_changed(), unit_state(fs, namespace, leader=leader, **config))


def active(url: str) -> testing.ActiveStatus:
    return testing.ActiveStatus(f"webhook {url}")


def live_ip(server: KubeApiServer, namespace: str) -> str:
    return server.read(Service, NAME, namespace).spec.clusterIP


def kubeconfig_server(text: str) -> str:
    return yaml.safe_load(text)["clusters"][0]["cluster"]["server"]


def secret_kubeconfig(server: KubeApiServer, namespace: str) -> str:
    """The webhook file as the charm keeps it in the cluster: in its Secret, base64."""
    data = server.read(Secret, NAME, namespace=namespace).data
    return base64.b64decode(data["webhook-config.yaml"]).decode()


def test_leader_creates_the_webhook_objects_with_the_live_address(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    out = configure(ctx, falco_fs, namespace)

    url = f"https://{live_ip(kube_apiserver, namespace)}:9765/k8s-audit"
    data = kube_apiserver.read(ConfigMap, NAME, namespace=namespace).data
    assert set(data) == {"audit-policy.yaml"}  # the webhook file holds the token: the Secret
    assert yaml.safe_load(data["audit-policy.yaml"])["kind"] == "Policy"
    kubeconfig = yaml.safe_load(secret_kubeconfig(kube_apiserver, namespace))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == url
    assert kubeconfig["users"][0]["user"]["token"]
    assert not (falco_fs / "etc-falco" / "webhook-config.yaml").exists()
    assert out.unit_status == active(url)
    assert writes(kube_apiserver.requests_by(TRUSTED, namespace)) == [
        ("patch", "services"),
        ("patch", "configmaps"),
        ("patch", "secrets"),
    ]


def test_an_older_revisions_configmap_loses_the_webhook_file_it_held(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    """The charm's field manager owned both keys: applying the policy alone drops the other."""
    earlier = ConfigMap(
        metadata=ObjectMeta(name=NAME, namespace=namespace),
        data={"webhook-config.yaml": "server: http://10.0.0.1:9765", "audit-policy.yaml": "x"},
    )
    kube_apiserver.client().apply(earlier, field_manager=APP, force=True)

    configure(ctx, falco_fs, namespace)

    data = kube_apiserver.read(ConfigMap, NAME, namespace=namespace).data
    assert set(data) == {"audit-policy.yaml"}


def test_fixed_node_port(ctx, falco_fs, namespace, kube_apiserver: KubeApiServer):
    out = configure(
        ctx, falco_fs, namespace, webhook_service_type="NodePort", webhook_node_port=30769
    )

    service = kube_apiserver.read(Service, NAME, namespace=namespace)
    assert service.spec.ports[0].nodePort == 30769
    assert out.unit_status == testing.ActiveStatus(
        "webhook https://127.0.0.1:30769/k8s-audit; NodePort needs kube-proxy iptables mode"
    )


def test_fixed_cluster_ip_inside_the_service_range(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    out = configure(ctx, falco_fs, namespace, webhook_cluster_ip="10.152.183.210")

    assert live_ip(kube_apiserver, namespace) == "10.152.183.210"
    assert out.unit_status == active("https://10.152.183.210:9765/k8s-audit")


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
    scraped = next(rule for rule in policy.spec.ingress if not rule.from_)
    assert {port.port for port in scraped.ports} == {8765, 9802, 9803}  # Falco, forwarder, intake


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
    leader = configure(ctx, falco_fs, namespace)  # the Service, and the credentials
    before = len(kube_apiserver.requests_by(TRUSTED, namespace))

    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(leader, leader=False))

    assert kube_apiserver.requests_by(TRUSTED, namespace)[before:] == [("get", "services")]
    assert isinstance(out.unit_status, testing.ActiveStatus)


def test_non_leader_waits_for_the_leaders_credentials(ctx, falco_fs, namespace):
    out = configure(ctx, falco_fs, namespace, leader=False)

    assert out.unit_status == testing.WaitingStatus(
        "waiting for the leader to create the webhook credentials"
    )


def test_non_leader_waits_for_the_leaders_service(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    leader = configure(ctx, falco_fs, namespace)
    kube_apiserver.client().delete(Service, NAME, namespace=namespace)

    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(leader, leader=False))

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
    for resource in (Service, ConfigMap, Secret, NetworkPolicy):
        assert not [item for item in admin.list(resource, namespace=namespace) if _ours(item)]


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


def _ours(item: Any) -> bool:
    """Not the objects the apiserver itself puts in every namespace (kube-root-ca.crt)."""
    return item.metadata.name == NAME


def test_get_webhook_config_hands_over_the_files_the_cluster_keeps(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    out = configure(ctx, falco_fs, namespace)

    ctx.run(ctx.on.action("get-webhook-config"), out)

    results = ctx.action_results
    assert results is not None
    assert results["webhook-config"] == secret_kubeconfig(kube_apiserver, namespace)
    data = kube_apiserver.read(ConfigMap, NAME, namespace=namespace).data
    assert results["audit-policy"] == data["audit-policy.yaml"]
    assert "--audit-webhook-config-file=" in results["apiserver-flags"]
    assert f"-n {namespace} get secret {NAME}" in results["kubectl"]
    assert f"-n {namespace} get configmap {NAME}" in results["kubectl"]


def test_get_webhook_config_fails_before_the_service_exists(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    leader = configure(ctx, falco_fs, namespace)
    kube_apiserver.client().delete(Service, NAME, namespace=namespace)

    with pytest.raises(testing.ActionFailed, match="Service does not exist yet"):
        ctx.run(ctx.on.action("get-webhook-config"), dataclasses.replace(leader, leader=False))


# -- audit_policy: refused as the apiserver would, checked once per text ------------------------

POLICY_HEADER = "apiVersion: audit.k8s.io/v1\nkind: Policy\n"
# In the canonical form the charm publishes.
CUSTOM_POLICY = POLICY_HEADER + "rules:\n- level: Metadata\n  verbs:\n  - create\n- level: None\n"


def live_policy(server: KubeApiServer, namespace: str) -> str:
    return server.read(ConfigMap, NAME, namespace=namespace).data["audit-policy.yaml"]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (POLICY_HEADER + "rules: " + "[" * 900 + "]" * 900, "audit_policy is nested more than"),
        (
            POLICY_HEADER + "metadata:\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(1, 900)),
            "audit_policy is nested more than",
        ),
        (
            POLICY_HEADER + "metadata:\n  a: &a [x, x]\n  b: &b [*a, *a]\n  c: [*b, *b]\n"
            "rules: [{level: None}]\n",
            "audit_policy: YAML anchors and aliases are refused (line 4)",
        ),
    ],
    ids=["deep flow", "deep block", "aliases"],
)
def test_an_audit_policy_the_apiserver_refuses_blocks_and_keeps_the_configmap(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer, policy, message
):
    out = configure(ctx, falco_fs, namespace)
    before = live_policy(kube_apiserver, namespace)

    out = ctx.run(
        ctx.on.config_changed(), dataclasses.replace(out, config={"audit_policy": policy})
    )

    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(message), out.unit_status.message
    assert live_policy(kube_apiserver, namespace) == before


def test_an_unchanged_audit_policy_is_checked_once(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer, monkeypatch: pytest.MonkeyPatch
):
    out = configure(ctx, falco_fs, namespace, audit_policy=CUSTOM_POLICY)
    assert live_policy(kube_apiserver, namespace) == CUSTOM_POLICY
    before = len(kube_apiserver.requests_by(TRUSTED, namespace))
    checks: list[str] = []
    monkeypatch.setattr(_audit_policy, "validate_audit_policy", checks.append)

    for _ in range(2):
        out = ctx.run(ctx.on.update_status(), out)

    assert checks == []
    assert isinstance(out.unit_status, testing.ActiveStatus)
    assert writes(kube_apiserver.requests_by(TRUSTED, namespace)[before:]) == []


def test_an_unchanged_refused_audit_policy_is_not_checked_again(
    ctx, falco_fs, namespace, monkeypatch: pytest.MonkeyPatch
):
    refused = POLICY_HEADER + "rules: [{level: Everything}]\n"
    out = configure(ctx, falco_fs, namespace, audit_policy=refused)
    checks: list[str] = []
    monkeypatch.setattr(_audit_policy, "validate_audit_policy", checks.append)

    out = ctx.run(ctx.on.update_status(), out)

    assert checks == []
    assert out.unit_status.message.startswith("audit_policy rules[0]: level 'Everything'")


def test_a_configmap_edited_by_hand_gets_the_remembered_policy_back(
    ctx, falco_fs, namespace, kube_apiserver: KubeApiServer
):
    out = configure(ctx, falco_fs, namespace, audit_policy=CUSTOM_POLICY)
    kube_apiserver.client().patch(
        ConfigMap,
        NAME,
        {"data": {"audit-policy.yaml": "rules: []\n"}},
        namespace=namespace,
        field_manager="kubectl-edit",
    )

    ctx.run(ctx.on.update_status(), out)

    assert live_policy(kube_apiserver, namespace) == CUSTOM_POLICY


def test_get_webhook_config_hands_out_a_remembered_policy(ctx, falco_fs, namespace):
    out = configure(ctx, falco_fs, namespace, audit_policy=CUSTOM_POLICY)

    ctx.run(ctx.on.action("get-webhook-config"), out)

    assert ctx.action_results is not None
    assert ctx.action_results["audit-policy"] == CUSTOM_POLICY
