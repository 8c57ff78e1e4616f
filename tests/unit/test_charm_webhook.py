"""The charm's cluster side in Scenario, with lightkube talking HTTP to a fake API on 127.0.0.1."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest
import yaml
from charm_pod import ACTIVE, falco_container, peers, pod
from fakes.fake_kube_api import FakeApiServer, status
from ops import testing

NS = "audit"
NAME = "falco-k8s-audit-webhook"
SERVICE = f"/api/v1/namespaces/{NS}/services/{NAME}"
CONFIGMAP = f"/api/v1/namespaces/{NS}/configmaps/{NAME}"
SECRET = f"/api/v1/namespaces/{NS}/secrets/{NAME}"
NETWORKPOLICY = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{NAME}"
WRITES = {"PATCH", "POST", "PUT", "DELETE"}


def state(fs, *, leader: bool = True, **config: Any) -> testing.State:
    return testing.State(
        config=config,
        containers=pod(falco_container(fs)),
        relations={peers()},
        leader=leader,
        model=testing.Model(name=NS),
    )


def configure(ctx, fs, *, leader: bool = True, **config: Any) -> testing.State:
    return ctx.run(ctx.on.config_changed(), state(fs, leader=leader, **config))


def kubeconfig_server(text: str) -> str:
    return yaml.safe_load(text)["clusters"][0]["cluster"]["server"]


def secret_kubeconfig(kube_api: FakeApiServer) -> str:
    return base64.b64decode(kube_api.objects[SECRET]["data"]["webhook-config.yaml"]).decode()


def test_leader_applies_service_configmap_and_secret_with_server_side_apply(
    ctx, falco_fs, kube_api
):
    out = configure(ctx, falco_fs)

    assert kube_api.writes() == [("PATCH", SERVICE), ("PATCH", CONFIGMAP), ("PATCH", SECRET)]
    for path in (SERVICE, CONFIGMAP, SECRET):
        request = kube_api.apply_request(path)
        assert request.headers["Content-Type"] == "application/apply-patch+yaml"
        assert dict(request.url.params) == {"fieldManager": "falco-k8s", "force": "true"}
    service = kube_api.applied(SERVICE)
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "falco-k8s"}
    assert service["spec"]["ports"][0]["port"] == 9765
    data = kube_api.objects[CONFIGMAP]["data"]
    assert set(data) == {"audit-policy.yaml"}  # the webhook file holds the token: the Secret
    assert yaml.safe_load(data["audit-policy.yaml"])["kind"] == "Policy"
    kubeconfig = secret_kubeconfig(kube_api)
    assert kubeconfig_server(kubeconfig) == "https://10.152.183.77:9765/k8s-audit"
    assert not (falco_fs / "etc-falco" / "webhook-config.yaml").exists()
    assert out.unit_status == ACTIVE


def test_an_older_configmap_naming_the_webhook_file_loses_it(ctx, falco_fs, kube_api):
    """An upgraded charm's ConfigMap held the kubeconfig; the Secret holds it now."""
    kube_api.objects[CONFIGMAP] = {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": NAME, "namespace": NS},
        "data": {"webhook-config.yaml": "server: http://...", "audit-policy.yaml": "x"},
    }

    configure(ctx, falco_fs)

    assert set(kube_api.applied(CONFIGMAP)["data"]) == {"audit-policy.yaml"}


def test_node_port_service_gives_a_loopback_server(ctx, falco_fs, kube_api):
    out = configure(ctx, falco_fs, webhook_service_type="NodePort", webhook_node_port=30765)

    assert kube_api.applied(SERVICE)["spec"]["ports"][0]["nodePort"] == 30765
    assert kubeconfig_server(secret_kubeconfig(kube_api)) == "https://127.0.0.1:30765/k8s-audit"
    assert out.unit_status == testing.ActiveStatus(
        "webhook https://127.0.0.1:30765/k8s-audit; NodePort needs kube-proxy iptables mode"
    )


def test_allowed_cidrs_apply_a_network_policy(ctx, falco_fs, kube_api):
    configure(ctx, falco_fs, webhook_allowed_cidrs="10.0.0.5, 192.168.1.0/24")

    policy = kube_api.objects[NETWORKPOLICY]["spec"]
    webhook_rule = next(r for r in policy["ingress"] if r["ports"][0]["port"] == 9765)
    assert [peer["ipBlock"]["cidr"] for peer in webhook_rule["from"]] == [
        "10.0.0.5/32",
        "192.168.1.0/24",
    ]


@pytest.mark.parametrize("cidrs", ["", "10.0.0.0/24"])
def test_update_status_on_a_converged_leader_writes_nothing_to_the_api(
    ctx, falco_fs, kube_api: FakeApiServer, cidrs: str
):
    out = configure(ctx, falco_fs, webhook_allowed_cidrs=cidrs)
    kube_api.requests.clear()

    out = ctx.run(ctx.on.update_status(), out)

    assert kube_api.requests  # it looked
    assert kube_api.writes() == []
    assert out.unit_status == ACTIVE


def test_non_leader_only_reads(ctx, falco_fs, kube_api):
    leader = configure(ctx, falco_fs)  # the leader created the Service and the credentials
    kube_api.requests.clear()

    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(leader, leader=False))

    assert kube_api.sent() == [("GET", SERVICE)]
    assert out.unit_status == ACTIVE


def test_non_leader_waits_for_the_credentials_then_the_service(ctx, falco_fs, kube_api):
    early = configure(ctx, falco_fs, leader=False)
    leader = configure(ctx, falco_fs)
    kube_api.objects.clear()  # as if the leader had only made the credentials yet
    kube_api.requests.clear()
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(leader, leader=False))

    assert not [r for r in kube_api.requests if r.method in WRITES]
    assert early.unit_status == testing.WaitingStatus(
        "waiting for the leader to create the webhook credentials"
    )
    assert out.unit_status == testing.WaitingStatus(
        "waiting for the leader to create the audit webhook Service"
    )


def test_untrusted_blocks_with_the_trust_command_and_falco_keeps_running(
    ctx, falco_fs, kube_api: FakeApiServer
):
    kube_api.failures["PATCH", SERVICE] = status(403, 'services "x" is forbidden')

    out = configure(ctx, falco_fs)

    assert out.unit_status == testing.BlockedStatus(
        "apply Service forbidden: run: juju trust falco-k8s --scope=cluster"
    )
    assert out.get_container("falco").service_statuses["falco"].value == "active"

    del kube_api.failures["PATCH", SERVICE]  # `juju trust` was run
    recovered = ctx.run(ctx.on.update_status(), out)
    assert recovered.unit_status == ACTIVE


def test_api_server_error_waits_and_retries(ctx, falco_fs, kube_api: FakeApiServer):
    kube_api.failures["PATCH", SERVICE] = status(503, "etcd leader changed")

    out = configure(ctx, falco_fs)

    assert out.unit_status == testing.WaitingStatus(
        "apply Service failed: HTTP 503: etcd leader changed; will retry"
    )


def test_conflict_blocks_with_the_api_message(ctx, falco_fs, kube_api: FakeApiServer):
    kube_api.failures["PATCH", SERVICE] = status(422, "provided port is already allocated")

    out = configure(ctx, falco_fs, webhook_service_type="NodePort", webhook_node_port=30765)

    assert out.unit_status == testing.BlockedStatus(
        "apply Service failed: HTTP 422: provided port is already allocated"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"audit_policy": "kind: Policy\n"}, "audit_policy: apiVersion must be audit.k8s.io/v1"),
        (
            {"webhook_allowed_cidrs": "10.0.0.0/8, nope"},
            "webhook_allowed_cidrs: 'nope' is not a CIDR",
        ),
        (
            {"webhook_node_port": 30765},
            "webhook_node_port can only be set with webhook_service_type NodePort",
        ),
    ],
)
def test_bad_webhook_options_block_but_falco_changes_still_apply(
    ctx, falco_fs, kube_api, config, message
):
    out = configure(ctx, falco_fs, minimum_priority="error", **config)

    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(message), out.unit_status.message
    assert not [r for r in kube_api.requests if r.method in WRITES]
    live = yaml.safe_load((falco_fs / "etc-falco" / "falco.yaml").read_text())
    assert live["priority"] == "error"


def test_remove_deletes_what_the_charm_created(ctx, falco_fs, kube_api):
    out = configure(ctx, falco_fs, webhook_allowed_cidrs="10.0.0.0/8")
    kube_api.requests.clear()

    ctx.run(ctx.on.remove(), dataclasses.replace(out, planned_units=0))

    assert sorted(kube_api.sent()) == sorted(
        [("DELETE", NETWORKPOLICY), ("DELETE", SECRET), ("DELETE", CONFIGMAP), ("DELETE", SERVICE)]
    )
    assert not kube_api.objects


def test_a_failed_deletion_on_remove_is_logged_not_raised(ctx, falco_fs, kube_api, caplog):
    out = configure(ctx, falco_fs, webhook_allowed_cidrs="10.0.0.0/8")
    kube_api.failures["DELETE", CONFIGMAP] = status(503, "etcd leader changed")

    # The remove hook is the unit's last: it must end cleanly for the unit to go away.
    ctx.run(ctx.on.remove(), dataclasses.replace(out, planned_units=0))

    assert "could not delete the audit webhook objects" in caplog.text
    assert "etcd leader changed" in caplog.text


@pytest.mark.parametrize(
    "removing",
    [{"leader": False, "planned_units": 0}, {"leader": True, "planned_units": 2}],
    ids=["non-leader", "leader-on-scale-down"],
)
def test_remove_keeps_the_objects_while_the_application_stays(ctx, falco_fs, kube_api, removing):
    out = configure(ctx, falco_fs)
    kube_api.requests.clear()

    ctx.run(ctx.on.remove(), dataclasses.replace(out, **removing))

    assert kube_api.requests == []


def test_get_webhook_config_hands_over_the_apiserver_side(ctx, falco_fs, kube_api):
    out = configure(ctx, falco_fs)

    ctx.run(ctx.on.action("get-webhook-config"), out)

    results = ctx.action_results
    assert results is not None
    assert results["webhook-config"] == secret_kubeconfig(kube_api)
    kubeconfig = yaml.safe_load(results["webhook-config"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://10.152.183.77:9765/k8s-audit"
    assert kubeconfig["users"][0]["user"]["token"] == credentials(out)["token"]
    assert yaml.safe_load(results["audit-policy"])["apiVersion"] == "audit.k8s.io/v1"
    assert "--audit-webhook-config-file=" in results["apiserver-flags"]
    assert "/var/snap/microk8s/current/args/kube-apiserver" in results["microk8s"]
    assert f"-n {NS} get secret {NAME}" in results["kubectl"]
    assert f"-n {NS} get configmap {NAME}" in results["kubectl"]
    assert all(isinstance(value, str) for value in results.values())


def credentials(state: testing.State) -> dict[str, str]:
    [secret] = [s for s in state.secrets if s.label == "webhook-credentials"]
    assert secret.tracked_content is not None
    return dict(secret.tracked_content)


def test_get_webhook_config_fails_before_the_credentials_or_the_service_exist(
    ctx, falco_fs, kube_api
):
    with pytest.raises(testing.ActionFailed, match="credentials do not exist yet"):
        ctx.run(ctx.on.action("get-webhook-config"), state(falco_fs, leader=False))
    leader = configure(ctx, falco_fs)
    kube_api.objects.clear()
    with pytest.raises(testing.ActionFailed, match="Service does not exist yet"):
        ctx.run(ctx.on.action("get-webhook-config"), dataclasses.replace(leader, leader=False))
