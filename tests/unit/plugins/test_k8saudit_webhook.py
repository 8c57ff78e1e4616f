"""kube-apiserver's webhook batches through the real k8saudit listener, read back and extracted.

The listener is opened with the charm's rendered init_config and open_params, moved to a free
127.0.0.1 port (the path stays the rendered one); posts go to the path of the charm's kubeconfig.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from falco_plugin_api import Event, Plugin, PluginState
from k8saudit_listener import (
    K8sAuditListener,
    Reply,
    audit_event,
    event_list,
    loopback_params,
    open_k8saudit,
)

from webhook._audit_policy import recommended_policy

PRIVILEGED_POD = {
    "kind": "Pod",
    "apiVersion": "v1",
    "metadata": {"name": "privtest", "namespace": "default"},
    "spec": {
        "containers": [
            {
                "name": "privtest",
                "image": "busybox",
                "args": ["sleep", "1"],
                "securityContext": {"privileged": True},
            }
        ]
    },
}


@pytest.fixture
def listener(
    k8saudit: Plugin, rendered_plugins: dict[str, dict[str, Any]]
) -> Iterator[K8sAuditListener]:
    entry = rendered_plugins["k8saudit"]
    params, _ = loopback_params(entry["open_params"])
    with open_k8saudit(k8saudit, entry["init_config"], params) as opened:
        yield opened


@pytest.fixture
def json_state(json_plugin: Plugin) -> Iterator[PluginState]:
    with json_plugin.initialized("") as state:
        yield state


def policy_level(*, verb: str, resource: str, namespace: str, group: str = "") -> str:
    """The level the charm's recommended policy logs a request at, for user alice.

    A model of kube-apiserver's policy evaluation (first matching rule wins) for the selectors
    the recommended policy uses, with exact resource names: k8s.io/apiserver
    pkg/audit/policy/checker.go.
    """
    for rule in recommended_policy()["rules"]:
        if "users" in rule or "userGroups" in rule or "nonResourceURLs" in rule:
            continue  # system users and URLs: alice's resource requests never match
        if verb not in rule.get("verbs", [verb]) or namespace not in rule.get(
            "namespaces", [namespace]
        ):
            continue
        if any(
            entry["group"] == group and resource in entry["resources"]
            for entry in rule.get("resources", [{"group": group, "resources": [resource]}])
        ):
            return rule["level"]
    return "None"


def extract(
    listener: K8sAuditListener, json_state: PluginState, event: Event, fields: Sequence[str]
) -> dict[str, list[Any]]:
    """Each field's values, from k8saudit (ka.*) or json (jevt.*), as Falco's rules see them."""
    k8s_fields = [name for name in fields if name.startswith("ka.")]
    json_fields = [name for name in fields if not name.startswith("ka.")]
    values = listener.state.extract(event, k8s_fields, "k8s_audit")
    return values | json_state.extract(event, json_fields, "k8s_audit")


def post_and_read(listener: K8sAuditListener, path: str, *events: dict[str, Any]) -> list[Event]:
    reply = listener.post(path, event_list(*events))
    assert reply.status == 200, reply
    return listener.read_events(len(events))


def audit_ids(events: list[Event]) -> list[str]:
    return [json.loads(event.data)["auditID"] for event in events]


def read_back(
    listener: K8sAuditListener,
    json_state: PluginState,
    path: str,
    sent: dict[str, Any],
    fields: Sequence[str],
) -> tuple[Event, dict[str, list[Any]]]:
    """Post ``sent`` alone, read it back, and extract ``fields`` from it."""
    [event] = post_and_read(listener, path, sent)
    assert audit_ids([event]) == [sent["auditID"]]
    return event, extract(listener, json_state, event, fields)


def marker() -> dict[str, Any]:
    """An ordinary event posted after a refused request: the next one read must be it."""
    return audit_event(level="Metadata", verb="get", resource="pods", namespace="n", name="p")


def post_then_marker(
    listener: K8sAuditListener, path: str, body: bytes, *, at: str = "", **kwargs: Any
) -> Reply:
    """Post ``body`` (to ``at`` if given), then a marker to ``path``, which must come next."""
    reply = listener.post(at or path, body, **kwargs)
    good = marker()
    assert audit_ids(post_and_read(listener, path, good)) == [good["auditID"]]
    return reply


def test_privileged_pod_create_at_request_response(listener, json_state, webhook_path):
    level = policy_level(verb="create", resource="pods", namespace="default")
    sent = audit_event(
        level=level,
        verb="create",
        resource="pods",
        namespace="default",
        name="privtest",
        code=201,
        body=PRIVILEGED_POD,
    )
    expected = {
        "jevt.value[/stage]": ["ResponseComplete"],
        "ka.verb": ["create"],
        "ka.target.resource": ["pods"],
        "ka.target.subresource": [],
        "ka.target.namespace": ["default"],
        "ka.user.name": ["alice"],
        "ka.req.pod.containers.privileged": ["true"],
        "ka.req.pod.containers.image.repository": ["busybox"],
        "ka.resp.name": ["privtest"],
    }

    _, values = read_back(listener, json_state, webhook_path, sent, list(expected))

    assert level == "RequestResponse"
    assert values == expected


def test_secret_get_at_metadata_carries_no_secret(listener, json_state, webhook_path):
    level = policy_level(verb="get", resource="secrets", namespace="default")
    sent = audit_event(
        level=level,
        verb="get",
        resource="secrets",
        namespace="default",
        name="db-password",
        body={"kind": "Secret", "data": {"password": "aHVudGVyMg=="}},
    )
    expected = {
        "ka.verb": ["get"],
        "ka.target.resource": ["secrets"],
        "ka.target.name": ["db-password"],
        "ka.response.code": ["200"],
        "ka.auth.decision": ["allow"],
        "jevt.value[/requestObject]": [],
    }

    event, values = read_back(listener, json_state, webhook_path, sent, list(expected))

    assert level == "Metadata"
    assert b"aHVudGVyMg" not in event.data
    assert values == expected


def test_pods_exec_create_names_the_subresource_and_command(listener, json_state, webhook_path):
    level = policy_level(verb="create", resource="pods/exec", namespace="default")
    sent = audit_event(
        level=level,
        verb="create",
        resource="pods",
        subresource="exec",
        namespace="default",
        name="web-0",
        uri_query="command=id&container=web&stdin=true&stdout=true",
        stage="ResponseStarted",
        code=101,
    )
    expected = {
        "jevt.value[/stage]": ["ResponseStarted"],
        "ka.verb": ["create"],
        "ka.target.resource": ["pods"],
        "ka.target.subresource": ["exec"],
        "ka.target.name": ["web-0"],
        "ka.uri.param[command]": ["id"],
    }

    _, values = read_back(listener, json_state, webhook_path, sent, list(expected))

    assert level == "Metadata"
    assert values == expected


def padded_batch(size: int, event: dict[str, Any]) -> bytes:
    """A valid EventList of exactly ``size`` bytes, padded with JSON whitespace."""
    body = event_list(event)
    return body[:-1] + b" " * (size - len(body)) + body[-1:]


def test_a_batch_over_webhook_max_batch_size_is_refused(listener, rendered_plugins, webhook_path):
    limit = rendered_plugins["k8saudit"]["init_config"]["webhookMaxBatchSize"]
    over, at_limit = marker(), marker()

    refused = listener.post(webhook_path, padded_batch(limit + 1, over))
    accepted = listener.post(webhook_path, padded_batch(limit, at_limit))
    events = listener.read_events(1)

    assert (refused.status, accepted.status) == (400, 200)
    assert "request body too large" in refused.body
    assert audit_ids(events) == [at_limit["auditID"]]


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"kind":"EventList","items":[}', b'{"kind":"EventList","items":[{"kind":'],
)
def test_malformed_json_is_dropped_and_logged(listener, webhook_path, capfd, body):
    reply = post_then_marker(listener, webhook_path, body)

    # The listener answers before it parses: the batch is dropped with a log line, not an error.
    assert reply.status == 200
    assert "[k8saudit]" in capfd.readouterr().err


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_a_request_other_than_post_is_refused(listener, webhook_path, method):
    reply = post_then_marker(listener, webhook_path, event_list(marker()), method=method)

    assert (reply.status, reply.body.strip()) == (405, f"{method} method not allowed")


def test_a_body_that_is_not_json_typed_is_refused(listener, webhook_path):
    body = event_list(marker())

    reply = post_then_marker(listener, webhook_path, body, content_type="text/plain")

    assert (reply.status, reply.body.strip()) == (400, "wrong Content Type")


def test_another_path_than_the_kubeconfigs_is_not_served(listener, webhook_path):
    other = webhook_path + "-other"

    reply = post_then_marker(listener, webhook_path, event_list(marker()), at=other)

    assert reply.status == 404
