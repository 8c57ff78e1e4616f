"""docs/explanation/security-model.md against the real kube-apiserver: its Role is all it takes.

The page tells admins to apply a Role instead of `juju trust`. Here that Role, as written, is
bound to the identity that has only Juju's untrusted defaults, and the charm's whole life in the
cluster runs as it: create, converge, a NetworkPolicy added and dropped, a deleted object,
`get-webhook-config`, removal. RBAC is the apiserver's own: a request the charm starts making
that the page does not grant fails here.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from charm_pod import unit_state
from kube_apiserver import UNTRUSTED, KubeApiServer
from lightkube import ApiError, codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Secret, Service
from lightkube.resources.networking_v1 import NetworkPolicy
from ops import testing

DOC = Path(__file__).resolve().parents[3] / "docs" / "explanation" / "security-model.md"
APP = "falco-k8s"
NAME = f"{APP}-audit-webhook"
_NOT_FOUND = 404
_FORBIDDEN = 403


def documented_rbac(namespace: str) -> list[Any]:
    """The page's Role and RoleBinding, bound to the untrusted identity (the app's account)."""
    [block] = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    documents = list(yaml.safe_load_all(block.replace("<app>", APP).replace("<model>", namespace)))
    assert [doc["kind"] for doc in documents] == ["Role", "RoleBinding"]
    assert documents[1]["subjects"] == [
        {"kind": "ServiceAccount", "name": APP, "namespace": namespace}
    ]
    # The static-token identity stands for the application's service account.
    documents[1]["subjects"] = [
        {"kind": "User", "name": UNTRUSTED, "apiGroup": "rbac.authorization.k8s.io"}
    ]
    return [codecs.from_dict(doc) for doc in documents]


def wait_until_granted(server: KubeApiServer, namespace: str) -> None:
    """RBAC follows an informer: wait until the Role answers for the untrusted identity."""
    deadline = time.monotonic() + 30
    while True:
        try:
            server.client(UNTRUSTED).get(ConfigMap, NAME, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == _NOT_FOUND:
                return
            if exc.status.code != _FORBIDDEN or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


@pytest.fixture
def untrusted(
    kube_apiserver: KubeApiServer, namespace: str, as_user: Callable[[str], None]
) -> None:
    """The charm as an application deployed without `juju trust`."""
    kube_apiserver.grant_untrusted(namespace)
    as_user(UNTRUSTED)


def test_juju_untrusted_grant_alone_is_not_enough(ctx, falco_fs, namespace, untrusted):
    out = ctx.run(ctx.on.config_changed(), unit_state(falco_fs, namespace))

    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert "forbidden: run: juju trust falco-k8s --scope=cluster" in out.unit_status.message


def test_the_documented_role_is_all_the_charm_needs_in_its_whole_life(
    ctx, falco_fs, namespace, untrusted, kube_apiserver: KubeApiServer
):
    admin = kube_apiserver.client()
    for obj in documented_rbac(namespace):
        admin.create(obj)
    wait_until_granted(kube_apiserver, namespace)

    out = ctx.run(
        ctx.on.config_changed(),
        unit_state(falco_fs, namespace, webhook_allowed_cidrs="10.0.0.0/8"),
    )
    assert isinstance(out.unit_status, testing.ActiveStatus), out.unit_status
    out = ctx.run(ctx.on.update_status(), out)
    admin.delete(ConfigMap, NAME, namespace=namespace)  # drift: someone deleted it
    out = ctx.run(
        ctx.on.config_changed(),
        dataclasses.replace(out, config={"webhook_service_type": "NodePort"}),
    )
    # The new address asks for a new file: the value's effect, not a refusal.
    assert out.unit_status == testing.BlockedStatus(
        "kube-apiserver webhook file must be replaced (its address changed):"
        " run get-webhook-config"
    )
    assert kube_apiserver.read(Service, NAME, namespace).spec.type == "NodePort"
    assert kube_apiserver.read(ConfigMap, NAME, namespace).data["audit-policy.yaml"]
    ctx.run(ctx.on.action("get-webhook-config"), out)
    assert ctx.action_results is not None
    ctx.run(ctx.on.remove(), dataclasses.replace(out, planned_units=0))

    for resource in (Service, ConfigMap, Secret, NetworkPolicy):
        with pytest.raises(ApiError, match="not found"):
            admin.get(resource, NAME, namespace=namespace)
    made = set(kube_apiserver.requests_by(UNTRUSTED, namespace))
    # The life above made every kind of request the page lists, so the Role was put to the test.
    for resource in ("services", "configmaps", "secrets", "networkpolicies"):
        assert {(verb, resource) for verb in ("get", "patch", "delete")} <= made, resource


@pytest.mark.parametrize("resource", [ConfigMap, Secret])
def test_the_documented_role_grants_no_other_object(
    namespace, untrusted, kube_apiserver: KubeApiServer, resource: Any
):
    admin = kube_apiserver.client()
    for obj in documented_rbac(namespace):
        admin.create(obj)
    wait_until_granted(kube_apiserver, namespace)
    client = kube_apiserver.client(UNTRUSTED)

    for request in (
        lambda: client.create(resource(metadata=ObjectMeta(name="other", namespace=namespace))),
        lambda: client.get(resource, "kube-root-ca.crt", namespace=namespace),
        lambda: list(client.list(resource, namespace=namespace)),
    ):
        with pytest.raises(ApiError) as exc:
            request()
        assert exc.value.status.code == _FORBIDDEN
