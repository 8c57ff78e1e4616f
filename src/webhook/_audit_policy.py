"""The kube-apiserver audit policy: the charm's recommended one, and checks on an operator's own.

The kube-apiserver refuses to start with a malformed policy file, so a policy supplied through
the ``audit_policy`` option is checked here, before an operator copies it to a control-plane
node, and each problem is reported with where it is. The audit policy evaluates rules in order
and the first match decides the level, which is why the order below matters. Checking 1 MB of
policy costs seconds, so a check's outcome is remembered (by the caller) and reused per text.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from options import InvalidStateError
from peer_memory import recalled_check

AUDIT_API_VERSION = "audit.k8s.io/v1"
AUDIT_KIND = "Policy"
LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")

# Verbs that change an object: only these carry bodies worth RequestResponse. Reads (and above
# all lists and watches) of the same resources would flood the webhook with whole collections.
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")

_POLICY_FIELDS = ("apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields")
_RULE_SELECTORS = ("users", "userGroups", "verbs", "namespaces", "nonResourceURLs")
_RULE_FIELDS = ("level", "resources", "omitStages", "omitManagedFields", *_RULE_SELECTORS)
_GROUP_RESOURCE_FIELDS = ("group", "resources", "resourceNames")

# The charm hands the policy out in a ConfigMap beside the webhook file, and Kubernetes refuses a
# ConfigMap whose values exceed 1 MiB (core.MaxSecretSize, checked by ValidateConfigMap): 16 KiB
# stay for the webhook file (its CA included).
MAX_POLICY_BYTES = 1_048_576 - 16_384
# kube-apiserver reads the file with sigs.k8s.io/yaml v1.6.0, that is go.yaml.in/yaml/v2 v2.4.2,
# which refuses nesting deeper than 10,000 levels (scannerc.go: max_indents, max_flow_level) and
# "excessive aliasing" (decode.go: allowedAliasRatio; 9 anchors of 9 aliases each already fail).
# A Policy's own fields nest 6 levels deep and need no alias, and PyYAML builds nested values
# recursively: the charm refuses every anchor and alias, and nesting beyond MAX_DEPTH, before
# building anything, so no policy it accepts is one the apiserver refuses for either reason.
MAX_DEPTH = 100
# libyaml's parser, where PyYAML has it: about 4 times faster than the pure-Python one.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_OPENERS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSERS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class AuditPolicyError(InvalidStateError):
    """The supplied audit policy would be rejected by the kube-apiserver (or is not a policy)."""


def _resources(group: str, *resources: str) -> dict[str, Any]:
    """A rule's GroupResources entry; the empty group is the core API group."""
    return {"group": group, "resources": list(resources)}


def recommended_policy() -> dict[str, Any]:
    """The charm's default policy: bodies for workload and RBAC changes, metadata elsewhere.

    Order of the rules (docs/reference/audit-policy-fit.md shows what each stock rule gets):

    1. ``None`` for the control plane's own high-rate polling and for health probes and events,
       which would otherwise dominate the stream without saying anything about intent.
    2. ``Metadata`` for credentials (secrets, service-account tokens, token reviews), placed
       before any body-level rule so that no secret value ever leaves the apiserver.
    3. ``Metadata`` for exec, attach and port-forward, at the stage the session starts only: the
       apiserver logs these long-running requests at ResponseStarted and again at
       ResponseComplete, and the stock port-forward rule would alert on both.
    4. ``RequestResponse`` for changes to pods (and their ephemeral containers, a subresource a
       ``pods`` entry does not match), Services, ConfigMaps in every namespace, workload
       controllers, RBAC and Ingresses, whose bodies the k8s_audit rules inspect.
    5. ``Metadata`` for everything else.
    """
    rules: list[dict[str, Any]] = [
        {
            "level": "None",
            "users": ["system:kube-proxy"],
            "verbs": ["watch"],
            "resources": [
                _resources("", "endpoints", "services", "services/status"),
                _resources("discovery.k8s.io", "endpointslices"),
            ],
        },
        {
            "level": "None",
            "users": ["system:kube-scheduler", "system:kube-controller-manager"],
            "verbs": ["get", "update"],
            "namespaces": ["kube-system"],
            "resources": [
                _resources("", "endpoints"),
                _resources("coordination.k8s.io", "leases"),
            ],
        },
        {
            "level": "None",
            "userGroups": ["system:nodes"],
            "verbs": ["get"],
            "resources": [_resources("", "nodes", "nodes/status")],
        },
        {
            "level": "None",
            "userGroups": ["system:nodes"],
            "verbs": ["get", "update"],
            "namespaces": ["kube-node-lease"],
            "resources": [_resources("coordination.k8s.io", "leases")],
        },
        {"level": "None", "nonResourceURLs": ["/healthz*", "/livez*", "/readyz*", "/version"]},
        {
            "level": "None",
            "resources": [_resources("", "events"), _resources("events.k8s.io", "events")],
        },
        {
            "level": "Metadata",
            "resources": [
                _resources("", "secrets", "serviceaccounts/token"),
                _resources("authentication.k8s.io", "tokenreviews"),
            ],
        },
        {
            "level": "Metadata",
            "omitStages": ["ResponseComplete"],
            "resources": [_resources("", "pods/exec", "pods/attach", "pods/portforward")],
        },
        {
            "level": "RequestResponse",
            "verbs": list(WRITE_VERBS),
            "resources": [
                # Services: "Create NodePort Service" reads the requested type.
                _resources("", "pods", "pods/ephemeralcontainers", "configmaps", "services"),
                _resources("apps", "deployments", "daemonsets", "statefulsets", "replicasets"),
                _resources(
                    "rbac.authorization.k8s.io",
                    "roles",
                    "rolebindings",
                    "clusterroles",
                    "clusterrolebindings",
                ),
                # "Ingress Object without TLS Certificate Created" reads spec.tls.
                _resources("networking.k8s.io", "ingresses"),
            ],
        },
        {"level": "Metadata"},
    ]
    return {
        "apiVersion": AUDIT_API_VERSION,
        "kind": AUDIT_KIND,
        "omitStages": ["RequestReceived"],
        "rules": rules,
    }


def render_audit_policy(policy: Mapping[str, Any]) -> str:
    """Serialise a policy, keeping its key order so the file reads like the rules above."""
    return yaml.dump(dict(policy), Dumper=_DUMPER, sort_keys=False)


@dataclass(frozen=True)
class PolicyCheck:
    """What checking one ``audit_policy`` text found, for the caller to remember."""

    key: str
    """Fingerprint of the text and of the checking code (`_check_key`)."""
    sha256: str = ""
    """The digest of the policy to publish, when the text is valid."""
    error: str = ""
    """Why the text is refused, otherwise."""

    def to_json(self) -> str:
        """The check as text, for the unit's peer data."""
        return json.dumps({"key": self.key, "sha256": self.sha256, "error": self.error})

    @classmethod
    def recall(cls, remembered: str, key: str) -> PolicyCheck | None:
        """The remembered check if it is for ``key``; None when there is none or it is stale."""
        fields = recalled_check(remembered, key) or {}
        sha256, error = fields.get("sha256"), fields.get("error")
        if not isinstance(sha256, str) or not isinstance(error, str):
            return None
        return cls(key, sha256, error) if bool(sha256) != bool(error) else None


@dataclass(frozen=True)
class AuditPolicy:
    """The ``audit_policy`` option, checked: the policy to publish, known by its digest.

    A remembered check carries no text: the policy is rendered only when a hook needs it (the
    ConfigMap lacks it, or the admin asks for it), so an unchanged 1 MB policy costs no parse.
    """

    option: str = dataclasses.field(repr=False)
    check: PolicyCheck
    rendered: str | None = dataclasses.field(default=None, repr=False, compare=False)

    def text(self, live: str | None = None) -> str:
        """The policy to publish; ``live`` (what the cluster holds) when it is that already.

        Raises:
            AuditPolicyError: the option's text is refused.
        """
        if self.check.error:
            raise AuditPolicyError(self.check.error)
        if live is not None and _sha256(live) == self.check.sha256:
            return live
        return self.rendered if self.rendered is not None else resolve_audit_policy(self.option)


def audit_policy(option: str, remembered: str = "") -> AuditPolicy:
    """The ``audit_policy`` option checked, or its remembered check when it is for this text.

    ``remembered`` is an earlier ``AuditPolicy.check.to_json()``; a refused text keeps its
    refusal, so neither a valid nor an invalid 1 MB policy is parsed on every hook.
    """
    key = _check_key(option)
    check = PolicyCheck.recall(remembered, key)
    if check is not None:
        return AuditPolicy(option, check)
    try:
        rendered = resolve_audit_policy(option)
    except AuditPolicyError as exc:
        return AuditPolicy(option, PolicyCheck(key, error=str(exc)))
    return AuditPolicy(option, PolicyCheck(key, sha256=_sha256(rendered)), rendered)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _check_key(option: str) -> str:
    """Fingerprint of the option's text and of this module, so an upgrade checks it again."""
    return hashlib.sha256(_code_digest() + option.encode("utf-8", "surrogatepass")).hexdigest()


@functools.cache
def _code_digest() -> bytes:
    return hashlib.sha256(Path(__file__).read_bytes()).digest()


def resolve_audit_policy(text: str) -> str:
    """The policy to publish: the operator's (checked) when the option is set, else the default.

    Raises:
        AuditPolicyError: the operator's policy is invalid.
    """
    if text.strip():
        return validate_audit_policy(text)
    return render_audit_policy(recommended_policy())


def validate_audit_policy(text: str) -> str:
    """Check an operator-supplied policy and return it as canonical YAML.

    Raises:
        AuditPolicyError: with a reason an operator can act on, naming the offending rule.
    """
    _check_size(text)
    try:
        _check_structure(text)
        document = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, C or Python
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = f"{exc.context}: {exc.problem}" if exc.context else exc.problem
        raise AuditPolicyError(f"audit_policy is not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise AuditPolicyError(f"audit_policy is not valid YAML: {exc}") from None
    policy = _mapping(document, "audit_policy", _POLICY_FIELDS)
    for field, wanted in (("apiVersion", AUDIT_API_VERSION), ("kind", AUDIT_KIND)):
        if policy.get(field) != wanted:
            raise AuditPolicyError(
                f"audit_policy: {field} must be {wanted}, got {policy.get(field)!r}"
            )
    _check_shared_fields(policy, "audit_policy")
    if "metadata" in policy:
        _mapping(policy["metadata"], "audit_policy.metadata")
    rules = policy.get("rules")
    if not isinstance(rules, list) or not rules:
        raise AuditPolicyError("audit_policy: rules must be a non-empty list")
    for index, rule in enumerate(cast("list[object]", rules)):
        _check_rule(rule, f"audit_policy rules[{index}]")
    rendered = render_audit_policy(policy)
    _check_size(rendered)
    return rendered


def _check_size(text: str) -> None:
    """Refuse a policy the ConfigMap cannot carry, or that is not text."""
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise AuditPolicyError(
            "audit_policy is not text: it holds an unpaired surrogate"
        ) from None
    if size > MAX_POLICY_BYTES:
        raise AuditPolicyError(
            f"audit_policy is {size} bytes (as published); the ConfigMap that carries it holds"
            f" {MAX_POLICY_BYTES}"
        )


def _check_structure(text: str) -> None:
    """Refuse anchors, aliases and deep nesting from the parser's events, building nothing.

    Raises:
        yaml.YAMLError: the text is not YAML.
        AuditPolicyError: an anchor, an alias, or nesting beyond MAX_DEPTH.
    """
    depth = 0
    events = cast("Iterator[yaml.Event]", yaml.parse(text, Loader=_LOADER))  # pyright: ignore[reportUnknownMemberType]
    for event in events:
        line: int = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or (
            isinstance(event, yaml.NodeEvent) and event.anchor is not None
        ):
            raise AuditPolicyError(
                f"audit_policy: YAML anchors and aliases are refused (line {line}): write the"
                " value out (the apiserver refuses excessive aliasing)"
            )
        if isinstance(event, _OPENERS):
            depth += 1
            if depth > MAX_DEPTH:
                raise AuditPolicyError(
                    f"audit_policy is nested more than {MAX_DEPTH} levels deep (line {line});"
                    " a Policy needs 6"
                )
        elif isinstance(event, _CLOSERS):
            depth -= 1


def _mapping(value: object, where: str, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Narrow to a mapping with string keys, rejecting keys outside ``fields`` when given.

    Unknown keys are refused because a misspelt selector (``resource:`` for ``resources:``) would
    otherwise silently widen a rule to every request.
    """
    if not isinstance(value, dict):
        raise AuditPolicyError(f"{where} must be a mapping, got {type(value).__name__}")
    mapping = cast("dict[object, Any]", value)
    for key in mapping:
        if fields is not None and key not in fields:
            raise AuditPolicyError(
                f"{where}: unknown field {key!r} (expected one of {', '.join(fields)})"
            )
    return cast("dict[str, Any]", mapping)


def _string_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(item, str) for item in cast("list[object]", value)
    ):
        raise AuditPolicyError(f"{where} must be a list of strings")
    return cast("list[str]", value)


def _check_shared_fields(section: dict[str, Any], where: str) -> None:
    """Fields allowed both on the policy and on a rule: omitStages and omitManagedFields."""
    if "omitStages" in section:
        for stage in _string_list(section["omitStages"], f"{where}.omitStages"):
            if stage not in STAGES:
                raise AuditPolicyError(
                    f"{where}.omitStages: {stage!r} is not one of {', '.join(STAGES)}"
                )
    if "omitManagedFields" in section and not isinstance(section["omitManagedFields"], bool):
        raise AuditPolicyError(f"{where}.omitManagedFields must be true or false")


def _check_rule(value: object, where: str) -> None:
    rule = _mapping(value, where, _RULE_FIELDS)
    level = rule.get("level")
    if level not in LEVELS:
        raise AuditPolicyError(f"{where}: level {level!r} is not one of {', '.join(LEVELS)}")
    for field in _RULE_SELECTORS:
        if field in rule:
            _string_list(rule[field], f"{where}.{field}")
    _check_shared_fields(rule, where)
    urls: list[str] = rule.get("nonResourceURLs", [])
    if urls and (rule.get("resources") or rule.get("namespaces")):
        raise AuditPolicyError(
            f"{where}: nonResourceURLs cannot be combined with resources or namespaces"
        )
    for url in urls:
        if not url.startswith("/"):
            raise AuditPolicyError(f"{where}.nonResourceURLs: {url!r} must start with '/'")
    if "resources" in rule:
        _check_group_resources(rule["resources"], f"{where}.resources")


def _check_group_resources(value: object, where: str) -> None:
    if not isinstance(value, list):
        raise AuditPolicyError(f"{where} must be a list")
    for index, entry in enumerate(cast("list[object]", value)):
        group_resources = _mapping(entry, f"{where}[{index}]", _GROUP_RESOURCE_FIELDS)
        if not isinstance(group_resources.get("group", ""), str):
            raise AuditPolicyError(f"{where}[{index}].group must be a string")
        for field in ("resources", "resourceNames"):
            if field in group_resources:
                _string_list(group_resources[field], f"{where}[{index}].{field}")
