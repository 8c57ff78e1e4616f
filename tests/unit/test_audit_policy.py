"""The recommended audit policy's levels, judged by a first-match evaluator, and validation."""

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from webhook import _audit_policy
from webhook._audit_policy import (
    LEVELS,
    MAX_POLICY_BYTES,
    AuditPolicyError,
    audit_policy,
    recommended_policy,
    render_audit_policy,
    resolve_audit_policy,
    validate_audit_policy,
)

RECOMMENDED = render_audit_policy(recommended_policy())


@dataclass(frozen=True)
class Request:
    """The request attributes an audit policy rule looks at."""

    verb: str
    resource: str = ""  # "pods" or "pods/exec"; empty for a non-resource request
    group: str = ""
    namespace: str = ""
    user: str = "alice"
    groups: tuple[str, ...] = ("system:authenticated",)
    path: str = ""
    name: str = ""


def _matches_resource(rule: dict[str, Any], request: Request) -> bool:
    if not request.resource:
        return False
    if rule.get("namespaces") and request.namespace not in rule["namespaces"]:
        return False
    if not rule.get("resources"):
        return True
    base, _, sub = request.resource.partition("/")
    for entry in rule["resources"]:
        if entry.get("group", "") != request.group:
            continue
        names = entry.get("resourceNames") or []
        if names and request.name not in names:
            continue
        wanted = entry.get("resources") or []
        if not wanted:
            return True
        accepted = {request.resource, "*"} | ({f"{base}/*", f"*/{sub}"} if sub else set())
        if accepted & set(wanted):
            return True
    return False


def _matches_path(rule: dict[str, Any], request: Request) -> bool:
    if request.resource:
        return False
    return any(
        request.path.startswith(url[:-1]) if url.endswith("*") else request.path == url
        for url in rule["nonResourceURLs"]
    )


def rule_matches(rule: dict[str, Any], request: Request) -> bool:
    """Kubernetes' policy rule semantics: every selector present must match."""
    if rule.get("users") and request.user not in rule["users"]:
        return False
    if rule.get("userGroups") and not set(request.groups) & set(rule["userGroups"]):
        return False
    if rule.get("verbs") and request.verb not in rule["verbs"]:
        return False
    if rule.get("namespaces") or rule.get("resources"):
        return _matches_resource(rule, request)
    if rule.get("nonResourceURLs"):
        return _matches_path(rule, request)
    return True


def level_for(policy: dict[str, Any], request: Request) -> str:
    """The level of the first matching rule, as the apiserver decides it."""
    return next((r["level"] for r in policy["rules"] if rule_matches(r, request)), "None")


POLICY = yaml.safe_load(RECOMMENDED)


@pytest.mark.parametrize(
    ("request_", "level"),
    [
        (Request("get", "secrets", namespace="default"), "Metadata"),
        (Request("create", "secrets", namespace="default"), "Metadata"),
        (Request("list", "secrets", namespace="kube-system"), "Metadata"),
        (Request("create", "serviceaccounts/token", namespace="default"), "Metadata"),
        (Request("create", "tokenreviews", group="authentication.k8s.io"), "Metadata"),
        (Request("create", "pods/exec", namespace="default"), "Metadata"),
        (Request("get", "pods/exec", namespace="default"), "Metadata"),
        (Request("create", "pods/attach", namespace="default"), "Metadata"),
        (Request("create", "pods/portforward", namespace="default"), "Metadata"),
        (Request("create", "pods", namespace="default"), "RequestResponse"),
        (Request("delete", "pods", namespace="kube-system"), "RequestResponse"),
        (Request("list", "pods", namespace="default"), "Metadata"),
        (Request("patch", "deployments", group="apps", namespace="a"), "RequestResponse"),
        (Request("create", "daemonsets", group="apps", namespace="a"), "RequestResponse"),
        (Request("update", "statefulsets", group="apps", namespace="a"), "RequestResponse"),
        (Request("create", "replicasets", group="apps", namespace="a"), "RequestResponse"),
        (Request("patch", "deployments/scale", group="apps", namespace="a"), "Metadata"),
        (
            Request("create", "clusterrolebindings", group="rbac.authorization.k8s.io"),
            "RequestResponse",
        ),
        (
            Request("update", "roles", group="rbac.authorization.k8s.io", namespace="a"),
            "RequestResponse",
        ),
        (Request("create", "configmaps", namespace="default"), "RequestResponse"),
        (Request("create", "services", namespace="default"), "RequestResponse"),
        (Request("patch", "services", namespace="kube-system"), "RequestResponse"),
        (Request("get", "services", namespace="default"), "Metadata"),
        (Request("update", "configmaps", namespace="kube-system"), "RequestResponse"),
        (Request("patch", "pods/ephemeralcontainers", namespace="a"), "RequestResponse"),
        (
            Request("create", "ingresses", group="networking.k8s.io", namespace="a"),
            "RequestResponse",
        ),
        (Request("list", "ingresses", group="networking.k8s.io", namespace="a"), "Metadata"),
        (Request("watch", "endpoints", user="system:kube-proxy"), "None"),
        (
            Request("watch", "endpointslices", group="discovery.k8s.io", user="system:kube-proxy"),
            "None",
        ),
        (Request("list", "endpoints", user="system:kube-proxy"), "Metadata"),
        (
            Request(
                "update",
                "leases",
                group="coordination.k8s.io",
                namespace="kube-system",
                user="system:kube-scheduler",
            ),
            "None",
        ),
        (
            Request(
                "update",
                "leases",
                group="coordination.k8s.io",
                namespace="kube-node-lease",
                user="system:node:n1",
                groups=("system:nodes",),
            ),
            "None",
        ),
        (Request("get", "nodes", user="system:node:n1", groups=("system:nodes",)), "None"),
        (Request("create", "events", namespace="default"), "None"),
        (Request("get", path="/healthz"), "None"),
        (Request("get", path="/readyz/etcd"), "None"),
        (Request("get", path="/version"), "None"),
        (Request("get", path="/metrics"), "Metadata"),
        (Request("delete", "namespaces", name="prod"), "Metadata"),
    ],
)
def test_recommended_levels(request_: Request, level: str):
    assert level_for(POLICY, request_) == level


def could_match_secrets(rule: dict[str, Any]) -> bool:
    """Whether some request on core secrets, by someone, somewhere, could hit the rule."""
    if rule.get("nonResourceURLs"):
        return False
    if not rule.get("resources"):
        return True
    return any(
        entry.get("group", "") in ("", "*")
        and (not entry.get("resources") or {"secrets", "*"} & set(entry["resources"]))
        for entry in rule["resources"]
    )


def test_no_body_level_rule_can_see_secrets_first():
    rules = POLICY["rules"]
    secrets_rule = next(
        i
        for i, rule in enumerate(rules)
        if rule["level"] == "Metadata"
        and could_match_secrets(rule)
        and not any(rule.get(key) for key in ("users", "userGroups", "verbs", "namespaces"))
    )

    core = next(e for e in rules[secrets_rule]["resources"] if e["group"] == "")
    assert "secrets" in core["resources"]
    assert not [
        rule
        for rule in rules[:secrets_rule]
        if could_match_secrets(rule) and rule["level"] in ("Request", "RequestResponse")
    ]


def test_recommended_policy_header_and_catch_all():
    assert POLICY["apiVersion"] == "audit.k8s.io/v1"
    assert POLICY["kind"] == "Policy"
    assert POLICY["omitStages"] == ["RequestReceived"]
    assert POLICY["rules"][-1] == {"level": "Metadata"}


def test_recommended_policy_passes_its_own_validation():
    assert validate_audit_policy(RECOMMENDED) == RECOMMENDED


def test_recommended_policy_is_a_fresh_copy():
    recommended_policy()["rules"].clear()
    assert recommended_policy()["rules"]


def test_resolve_uses_the_recommended_policy_when_unset():
    assert resolve_audit_policy("") == RECOMMENDED
    assert resolve_audit_policy("  \n") == RECOMMENDED


def test_resolve_validates_the_operators_policy():
    custom = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
    assert resolve_audit_policy(custom) == custom
    with pytest.raises(AuditPolicyError):
        resolve_audit_policy("kind: Policy")


def test_validate_returns_canonical_yaml():
    text = """
    {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
     "metadata": {"name": "mine"}, "omitManagedFields": true,
     "rules": [{"level": "None", "nonResourceURLs": ["/healthz*"]},
               {"level": "Request", "omitStages": ["Panic"],
                "resources": [{"group": "", "resources": ["pods"], "resourceNames": ["x"]}]},
               {"level": "Metadata"}]}
    """
    canonical = validate_audit_policy(text)

    assert yaml.safe_load(canonical) == yaml.safe_load(text)
    assert canonical.startswith("apiVersion: audit.k8s.io/v1\nkind: Policy\n")


HEADER = "apiVersion: audit.k8s.io/v1\nkind: Policy\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", "not valid YAML"),
        ("---\na: 1\n---\nb: 2\n", "not valid YAML"),
        ("", "audit_policy must be a mapping, got NoneType"),
        ("- level: None", "audit_policy must be a mapping, got list"),
        ("kind: Policy\nrules: [{level: None}]", "apiVersion must be audit.k8s.io/v1, got None"),
        (
            "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]",
            "apiVersion must be audit.k8s.io/v1, got 'audit.k8s.io/v1beta1'",
        ),
        ("apiVersion: audit.k8s.io/v1\nkind: Config", "kind must be Policy, got 'Config'"),
        (HEADER, "rules must be a non-empty list"),
        (HEADER + "rules: []", "rules must be a non-empty list"),
        (HEADER + "rules: {level: None}", "rules must be a non-empty list"),
        (HEADER + "rule: []", "unknown field 'rule'"),
        (
            HEADER + "metadata: x\nrules: [{level: None}]",
            "audit_policy.metadata must be a mapping",
        ),
        (
            HEADER + "rules:\n- level: None\n- Metadata\n",
            "rules[1] must be a mapping, got str",
        ),
        (
            HEADER + "rules:\n- level: None\n- level: Everything\n",
            "rules[1]: level 'Everything' is not one of None, Metadata, Request, RequestResponse",
        ),
        (HEADER + "rules:\n- verbs: [get]\n", "rules[0]: level None is not one of"),
        (
            HEADER + "rules:\n- level: None\n  resource: [secrets]\n",
            "rules[0]: unknown field 'resource'",
        ),
        (
            HEADER + "rules:\n- level: None\n  verbs: get\n",
            "rules[0].verbs must be a list of strings",
        ),
        (
            HEADER + "rules:\n- level: None\n  users: [1]\n",
            "rules[0].users must be a list of strings",
        ),
        (
            HEADER + "omitStages: [RequestRecieved]\nrules: [{level: None}]",
            "audit_policy.omitStages: 'RequestRecieved' is not one of RequestReceived,",
        ),
        (
            HEADER + "rules:\n- level: None\n  omitStages: [Done]\n",
            "rules[0].omitStages: 'Done' is not one of",
        ),
        (
            HEADER + "omitManagedFields: 'yes please'\nrules: [{level: None}]",
            "audit_policy.omitManagedFields must be true or false",
        ),
        (
            HEADER + "rules:\n- level: None\n  nonResourceURLs: [/healthz]\n  namespaces: [a]\n",
            "rules[0]: nonResourceURLs cannot be combined with resources or namespaces",
        ),
        (
            HEADER + "rules:\n- level: None\n  nonResourceURLs: [healthz]\n",
            "rules[0].nonResourceURLs: 'healthz' must start with '/'",
        ),
        (
            HEADER + "rules:\n- level: None\n  resources: secrets\n",
            "rules[0].resources must be a list",
        ),
        (
            HEADER + "rules:\n- level: None\n  resources: [secrets]\n",
            "rules[0].resources[0] must be a mapping, got str",
        ),
        (
            HEADER + "rules:\n- level: None\n  resources: [{groups: [apps]}]\n",
            "rules[0].resources[0]: unknown field 'groups'",
        ),
        (
            HEADER + "rules:\n- level: None\n  resources: [{group: [apps]}]\n",
            "rules[0].resources[0].group must be a string",
        ),
        (
            HEADER + "rules:\n- level: None\n  resources: [{resourceNames: x}]\n",
            "rules[0].resources[0].resourceNames must be a list of strings",
        ),
    ],
)
def test_validate_rejects(text: str, message: str):
    with pytest.raises(AuditPolicyError) as excinfo:
        validate_audit_policy(text)

    assert message in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_every_level_is_accepted():
    rules = "".join(f"- level: {level}\n" for level in LEVELS)
    assert yaml.safe_load(validate_audit_policy(HEADER + "rules:\n" + rules))["rules"] == [
        {"level": level} for level in LEVELS
    ]


# -- what kube-apiserver's YAML reader refuses, and what the charm cannot build -----------------

# The "billion laughs" shape: 9 anchors of 9 aliases each, under metadata (1,134 bytes).
LAUGHS = (
    HEADER
    + "metadata:\n  a0: &a0 [lol]\n"
    + "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
    + "  a9: ["
    + ", ".join(["*a8"] * 9)
    + "]\n"
    + "rules: [{level: None}]\n"
)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (HEADER + "rules: " + "[" * 900 + "]" * 900, 3),
        (HEADER + "metadata:\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(1, 900)), 103),
        (HEADER + "rules:\n" + "- " * 3000 + "x\n", 4),
    ],
    ids=["flow", "block mappings", "block sequences"],
)
def test_deep_nesting_is_refused_not_a_recursion_error(text: str, line: int):
    with pytest.raises(AuditPolicyError) as excinfo:
        validate_audit_policy(text)

    assert str(excinfo.value) == (
        f"audit_policy is nested more than 100 levels deep (line {line}); a Policy needs 6"
    )


def test_nesting_libyaml_refuses_is_refused_too():
    with pytest.raises(AuditPolicyError, match="nesting depth"):
        validate_audit_policy(HEADER + "rules: " + "[" * 20000)


@pytest.mark.parametrize(
    "text",
    [
        LAUGHS,
        HEADER
        + "rules:\n- level: None\n  users: &ops [alice]\n- level: Metadata\n  users: *ops\n",
        HEADER + "rules:\n- &rule {level: None}\n",
    ],
    ids=["billion laughs", "an alias", "an unused anchor"],
)
def test_anchors_and_aliases_are_refused(text: str):
    with pytest.raises(AuditPolicyError, match=r"anchors and aliases are refused \(line \d+\)"):
        validate_audit_policy(text)


def test_the_billion_laughs_are_refused_without_expanding_them():
    assert LAUGHS.count("&") == 9
    assert LAUGHS.count("*") == 81
    with pytest.raises(AuditPolicyError, match="line 4"):
        validate_audit_policy(LAUGHS)


def test_a_policy_the_configmap_cannot_carry_is_refused():
    rule = "- level: None\n  users: [" + "x" * 1000 + "]\n"
    text = HEADER + "rules:\n" + rule * (MAX_POLICY_BYTES // len(rule) + 1)

    with pytest.raises(
        AuditPolicyError, match=rf"bytes \(as published\); .* holds {MAX_POLICY_BYTES}"
    ):
        validate_audit_policy(text)


def test_a_policy_that_grows_past_the_limit_when_published_is_refused():
    """Flow style is shorter than the block style the policy is published in."""
    rule = "{level: None, users: [" + "x" * 100 + "]}, "
    text = HEADER + "rules: [" + rule * (MAX_POLICY_BYTES // len(rule) - 10) + "]\n"
    assert len(text) < MAX_POLICY_BYTES

    with pytest.raises(AuditPolicyError, match=r"bytes \(as published\)"):
        validate_audit_policy(text)


def test_a_yaml_error_names_the_line_and_column():
    with pytest.raises(AuditPolicyError) as excinfo:
        validate_audit_policy(HEADER + "rules: [\n")

    assert str(excinfo.value) == (
        "audit_policy is not valid YAML at line 4, column 1: while parsing a flow node:"
        " did not find expected node content"
    )


# -- checked once per text ----------------------------------------------------------------------


def test_a_remembered_check_is_reused_without_parsing(monkeypatch: pytest.MonkeyPatch):
    custom = HEADER + "rules:\n- level: Metadata\n"
    first = audit_policy(custom)
    monkeypatch.setattr(_audit_policy, "validate_audit_policy", _must_not_run)

    again = audit_policy(custom, first.check.to_json())

    assert again.check == first.check
    assert again.text(live=custom) == custom


def test_a_remembered_refusal_is_reused_without_parsing(monkeypatch: pytest.MonkeyPatch):
    first = audit_policy(LAUGHS)
    monkeypatch.setattr(_audit_policy, "validate_audit_policy", _must_not_run)

    again = audit_policy(LAUGHS, first.check.to_json())

    assert again.check.error == first.check.error
    assert "anchors and aliases" in again.check.error


@pytest.mark.parametrize(
    "remembered",
    [
        "",
        "not json",
        "[]",
        "[" * 100_000,
        '{"key": "other", "sha256": "x", "error": ""}',
        '{"key": 1}',
    ],
)
def test_a_check_for_another_text_or_unreadable_is_done_again(remembered: str):
    custom = HEADER + "rules:\n- level: Metadata\n"
    if remembered.startswith('{"key": "other"'):
        remembered = audit_policy(HEADER + "rules:\n- level: None\n").check.to_json()

    policy = audit_policy(custom, remembered)

    assert policy.text() == custom
    assert policy.check.sha256 == hashlib.sha256(custom.encode()).hexdigest()


def test_text_renders_when_the_cluster_holds_another_policy():
    custom = HEADER + "rules:\n- level: Metadata\n"
    remembered = audit_policy(custom).check.to_json()

    assert audit_policy(custom, remembered).text(live=RECOMMENDED) == custom


def _must_not_run(text: str) -> str:
    raise AssertionError("the policy was checked again")
