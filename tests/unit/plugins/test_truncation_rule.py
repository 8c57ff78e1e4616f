"""The charm's rule for audit events kube-apiserver truncated, on the real plugins.

Falco's rule engine cannot run here: the events go through the real k8saudit listener, the
fields the rule's condition reads are extracted by the real k8saudit and json plugins, and the
condition's logic is evaluated on those values in Python (`fires`). The test holds that model
to the shipped condition: the condition, with the macros it uses expanded, must be the one
`fires` models.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

import pytest
from falco_plugin_api import Event, Plugin, PluginState
from k8saudit_listener import K8sAuditListener, audit_event, event_list
from rule_fields import fields_used_by, owner

RULE = "K8s Audit Event Truncated"
INSPECTED = "falco_k8s_body_inspected_resources"
TRUNCATED = "jevt.value[/annotations/audit.k8s.io~1truncated]"
CONDITION = (
    "(jevt.value[/stage] in (k8s_audit_stages)) and (ka.verb in (create,update,patch))"
    f" and ka.target.resource in ({INSPECTED})"
    f' and ({TRUNCATED}="true")'
)
OUTPUT_NAMES = {
    "user": "ka.user.name",
    "verb": "ka.verb",
    "resource": "ka.target.resource",
    "ns": "ka.target.namespace",
    "name": "ka.target.name",
}

# A real event from kube-apiserver 1.34.4's truncating webhook backend (the charm's flags): a
# 150 KiB configmap created at RequestResponse level, over the 240 KiB event limit with both
# bodies, so both were dropped and the annotation added (../shared/real-e2e batch-0017.json).
RECORDED_TRUNCATED = {
    "level": "RequestResponse",
    "auditID": "6a3ac90f-202e-4a57-a4e0-19ec408cf9a6",
    "stage": "ResponseComplete",
    "requestURI": (
        "/api/v1/namespaces/e2e-test/configmaps?fieldManager=kubectl-create&fieldValidation=Strict"
    ),
    "verb": "create",
    "user": {
        "username": "admin",
        "uid": "1000",
        "groups": ["system:masters", "system:authenticated"],
    },
    "sourceIPs": ["127.0.0.1"],
    "userAgent": "kubectl/v0.0.0 (linux/amd64) kubernetes/$Format",
    "objectRef": {
        "resource": "configmaps",
        "namespace": "e2e-test",
        "name": "big-creds",
        "apiVersion": "v1",
    },
    "responseStatus": {"metadata": {}, "code": 201},
    "requestReceivedTimestamp": "2026-12-06T03:20:52.068203Z",
    "stageTimestamp": "2026-12-06T03:20:52.076545Z",
    "annotations": {
        "audit.k8s.io/truncated": "true",
        "authorization.k8s.io/decision": "allow",
        "authorization.k8s.io/reason": "",
    },
}
BIG_CONFIGMAP = {
    "kind": "ConfigMap",
    "apiVersion": "v1",
    "metadata": {"name": "big-creds", "namespace": "e2e-test"},
    "data": {"padding": "x" * 1024, "aws_access_key_id": "AKIAEXAMPLEEXAMPLE00"},
}


def untruncated(event: dict[str, Any]) -> dict[str, Any]:
    """The same request under the size limit: bodies kept, no truncation annotation."""
    whole = copy.deepcopy(event)
    del whole["annotations"]["audit.k8s.io/truncated"]
    whole["requestObject"] = whole["responseObject"] = BIG_CONFIGMAP
    return whole


def truncated(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as the truncating backend passes one over its size limit on."""
    cut = {key: value for key, value in event.items() if not key.endswith("Object")}
    cut["annotations"] = {**event["annotations"], "audit.k8s.io/truncated": "true"}
    return cut


def change(verb: str, resource: str, *, stage: str = "ResponseComplete") -> dict[str, Any]:
    """A change logged with its bodies, as the recommended policy logs pods, RBAC, workloads."""
    body = {"kind": "Pod", "spec": {"containers": [{"securityContext": {"privileged": True}}]}}
    return audit_event(
        level="RequestResponse",
        verb=verb,
        resource=resource,
        namespace="default",
        name="padded",
        stage=stage,
        body=body,
    )


def rule(rules: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(item for item in rules if item.get("rule") == name)


def expanded(condition: str, macros: Mapping[str, str]) -> str:
    """``condition`` with each macro name replaced by its own (expanded) condition text."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(0)
        return expanded(macros[name], macros) if name in macros else name

    text = re.sub(r"(?<![\w.\[/~])[a-z_][a-z0-9_]*(?![\w.\]])", replace, condition)
    return " ".join(text.split())


def fires(values: Mapping[str, list[Any]], lists: Mapping[str, list[str]]) -> bool:
    """The condition `CONDITION` spells, on the values the plugins extracted.

    Falco's `in` and `=` on a single string field; a field without a value matches neither.
    """

    def value(field: str) -> str | None:
        return values[field][0] if values[field] else None

    return (
        value("jevt.value[/stage]") in lists["k8s_audit_stages"]
        and value("ka.verb") in ("create", "update", "patch")
        and value("ka.target.resource") in lists[INSPECTED]
        and value(TRUNCATED) == "true"
    )


@pytest.fixture
def all_rules(
    stock_rules: list[dict[str, Any]], charm_rules: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The stock rules, then the charm's, as Falco loads them."""
    return stock_rules + charm_rules


@pytest.fixture
def json_state(
    json_plugin: Plugin, rendered_plugins: dict[str, dict[str, Any]]
) -> Iterator[PluginState]:
    with json_plugin.initialized(json.dumps(rendered_plugins["json"]["init_config"])) as state:
        yield state


@pytest.fixture
def extract(
    k8saudit: Plugin,
    json_plugin: Plugin,
    json_state: PluginState,
    rendered_plugins: dict[str, dict[str, Any]],
    k8saudit_source: Callable[[dict[str, Any], str], AbstractContextManager[K8sAuditListener]],
    webhook_path: str,
) -> Iterator[Callable[[list[dict[str, Any]], list[str]], list[dict[str, list[Any]]]]]:
    """Post audit events through the real listener and extract fields from what it emits."""
    entry = rendered_plugins["k8saudit"]
    with k8saudit_source(entry["init_config"], entry["open_params"]) as listener:

        def run(events: list[dict[str, Any]], fields: list[str]) -> list[dict[str, list[Any]]]:
            assert listener.post(webhook_path, event_list(*events)).status == 200
            emitted: list[Event] = listener.read_events(len(events))
            assert len(emitted) == len(events)
            results: list[dict[str, list[Any]]] = []
            for event in emitted:
                values: dict[str, list[Any]] = {}
                for field in fields:
                    plugin = owner(field, k8saudit, json_plugin)
                    state = listener.state if plugin is k8saudit else json_state
                    values |= state.extract(event, [field], "k8s_audit")
                results.append(values)
            return results

        yield run


def test_the_rule_alerts_at_warning_or_higher_naming_who_did_what_to_which_object(charm_rules):
    truncation = rule(charm_rules, RULE)

    assert truncation["priority"].lower() in ("warning", "error", "critical", "alert", "emergency")
    assert truncation["source"] == "k8s_audit"
    for label, field in OUTPUT_NAMES.items():
        assert f"{label}=%{field}" in truncation["output"]


def test_the_rule_covers_every_kind_whose_body_a_stock_rule_reads(all_rules, stock_rules):
    macros = {item["macro"]: item["condition"] for item in all_rules if "macro" in item}
    conditions = [expanded(item["condition"], macros) for item in stock_rules if "rule" in item]
    # The resources a stock rule names in a condition that reads a request body.
    read = {
        resource
        for condition in conditions
        if re.search(r"ka\.req\.|/requestObject", condition)
        for resource in re.findall(r"ka\.target\.resource=(\w+)", condition)
    }
    listed = set(next(i["items"] for i in all_rules if i.get("list") == INSPECTED))

    assert read >= {"pods", "services", "configmaps", "clusterrolebindings", "ingresses"}
    assert read <= listed
    # Workload controllers carry the same pod spec, in their template.
    assert {"deployments", "daemonsets", "statefulsets", "jobs", "cronjobs"} <= listed


def test_the_shipped_condition_is_the_one_the_test_evaluates(all_rules):
    macros = {item["macro"]: item["condition"] for item in all_rules if "macro" in item}

    assert expanded(rule(all_rules, RULE)["condition"], macros) == CONDITION


def test_every_field_the_rule_reads_exists_in_the_plugins(k8saudit, json_plugin, charm_rules):
    used = fields_used_by(charm_rules)

    assert TRUNCATED.partition("[")[0] in used
    for name in used:
        assert owner(name, k8saudit, json_plugin).field(name) is not None, name


def test_a_truncated_change_fires_and_the_same_change_whole_does_not(all_rules, extract):
    lists = {item["list"]: item["items"] for item in all_rules if "list" in item}
    condition_fields = sorted(
        name + arg
        for name, args in fields_used_by([{"macro": "m", "condition": CONDITION}]).items()
        for arg in args
    )
    output_fields = sorted(OUTPUT_NAMES.values())
    cases = [  # (event, whether the rule fires)
        (RECORDED_TRUNCATED, True),
        (untruncated(RECORDED_TRUNCATED), False),
        (truncated(change("create", "pods")), True),
        (change("create", "pods"), False),
        (truncated(change("patch", "clusterroles")), True),
        (truncated(change("update", "deployments")), True),
        (truncated(change("update", "secrets")), False),  # no rule reads a secret's body
        (truncated(change("get", "pods")), False),  # a read: no body to hide
        (truncated(change("create", "pods", stage="ResponseStarted")), False),  # not kevt
    ]
    events = [event for event, _ in cases]

    results = extract(events, condition_fields + output_fields)

    assert [fires(values, lists) for values in results] == [fired for _, fired in cases]
    recorded, whole = results[0], results[1]
    assert recorded[TRUNCATED] == ["true"]
    assert whole[TRUNCATED] == []  # no such annotation: the field has no value
    assert {label: recorded[field] for label, field in OUTPUT_NAMES.items()} == {
        "user": ["admin"],
        "verb": ["create"],
        "resource": ["configmaps"],
        "ns": ["e2e-test"],
        "name": ["big-creds"],
    }
