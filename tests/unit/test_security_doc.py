"""docs/explanation/security.md against the code: its Role allows every request the charm makes.

The charm's whole life in the cluster (create, converge, a NetworkPolicy added and dropped, a
drifted object, removal) runs against the Kubernetes API stand-in; each request is then
authorised the way RBAC does it against the Role the page tells admins to apply instead of
`juju trust`. A new kind of request in `webhook/_cluster.py` fails here until the page says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from fakes.fake_kube_api import FakeApiServer
from lightkube import Client, KubeConfig
from lightkube.config.models import Cluster, User

from webhook._apiserver_side import WebhookServiceSpec
from webhook._audit_policy import audit_policy
from webhook._cluster import AuditWebhookCluster

DOC = Path(__file__).resolve().parents[2] / "docs" / "explanation" / "security.md"
APP = "falco"
NS = "audit"
_PATH = re.compile(
    r"/apis?/(?:(?P<group>[^/]+)/)?v1/namespaces/(?P<ns>[^/]+)/(?P<res>[^/]+)/(?P<name>[^/]+)"
)


def documented_role() -> dict[str, Any]:
    """The Role of the page's YAML block, with the placeholders filled in."""
    [block] = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    text = block.replace("<app>", APP).replace("<model>", NS)
    return next(doc for doc in yaml.safe_load_all(text) if doc["kind"] == "Role")


def allowed(role: dict[str, Any], group: str, resource: str, name: str, verb: str) -> bool:
    """RBAC's decision for a request on a named object, from the Role's rules."""
    return any(
        group in rule["apiGroups"]
        and resource in rule["resources"]
        and name in rule.get("resourceNames", [name])
        and verb in rule["verbs"]
        for rule in role["rules"]
    )


def requests_of_a_whole_life() -> list[tuple[str, str, str, str, bool]]:
    """(method, group, resource, name, existed) of every request, through the charm's life."""
    api = FakeApiServer()
    seen: list[tuple[str, str, str, str, bool]] = []

    def recording(request: httpx2.Request) -> httpx2.Response:
        match = _PATH.fullmatch(request.url.path)
        assert match, request.url.path
        assert match["ns"] == NS
        existed = request.url.path in api.objects
        seen.append((request.method, match["group"] or "", match["res"], match["name"], existed))
        return api(request)

    config = KubeConfig.from_one(cluster=Cluster(server="http://k8s.test"), user=User())
    cluster = AuditWebhookCluster(
        APP, NS, Client(config=config, transport=httpx2.MockTransport(recording))
    )
    policy = audit_policy("")
    cluster.apply(WebhookServiceSpec(), audit_policy=policy, allowed_cidrs=("10.0.0.0/8",))
    cluster.apply(WebhookServiceSpec(), audit_policy=policy, allowed_cidrs=("10.0.0.0/8",))
    api.objects[next(p for p in api.objects if "/configmaps/" in p)]["data"] = {}
    cluster.apply(WebhookServiceSpec("NodePort"), audit_policy=policy, allowed_cidrs=())
    assert cluster.read_address() is not None
    cluster.remove()
    return seen


def test_the_documented_role_allows_every_request_the_charm_makes():
    role = documented_role()
    verbs = {"GET": "get", "PATCH": "patch", "DELETE": "delete"}

    requests = requests_of_a_whole_life()

    assert {method for method, *_ in requests} == set(verbs)
    for method, group, resource, name, existed in requests:
        assert allowed(role, group, resource, name, verbs[method]), (method, resource)
        if method == "PATCH" and not existed:  # apply creates it: authorised as create too
            assert allowed(role, group, resource, name, "create"), (method, resource)


@pytest.mark.parametrize("name", ["falco-other", "kube-dns"])
def test_the_documented_role_allows_no_other_object(name: str):
    role = documented_role()

    assert not any(
        allowed(role, group, resource, name, verb)
        for group, resource in (("", "services"), ("", "configmaps"), ("", "secrets"))
        for verb in ("get", "patch", "create", "delete", "list")
    )
